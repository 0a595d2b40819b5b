"""Parties with their own data files: node config, split, parity with the
simulation, linkage, unlabelled parties, saved models, the waiting server."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from flwr.app import Context, RecordDict

from clients.app import build_client_app
from clients.node import agent_for_node
from otm_flower.anchors import simulation_secret
from otm_flower.config import ConfigError, RunConfig, parse_run_config
from otm_flower.linkage import LinkageError, link_ids, read_link_secret
from otm_flower.metrics import clustering_accuracy
from otm_flower.node_config import (
    NODE_CONFIG_KEYS,
    NodeConfigError,
    parse_node_config,
)
from otm_flower.party_data import read_party_file
from otm_flower.party_model import load_party_model
from otm_flower.results import format_summary
from otm_flower.run_data import data_label, server_holds_data
from simulations.inprocess import InProcessGrid
from simulations.run_support import expected_agents, wait_for_agents
from simulations.server_app import run_method
from simulations.split import main as split_main
from tests.synthetic import clustered_views_npz


@pytest.fixture(scope="module")
def data_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return clustered_views_npz(
        tmp_path_factory.mktemp("data") / "three.npz",
        n=240,
        k=4,
        dims=(6, 9, 5),
        spread=2.0,
        seed=3,
        name="three",
    )


def _split(data: Path, out: Path, fmt: str = "csv", rate: float = 0.0) -> Path:
    args = ["--dataset", str(data), "--out", str(out), "--format", fmt]
    args += ["--link-rate", str(rate), "--test-fraction", "0.25", "--seed", "0"]
    assert split_main(args) == 0
    return out


def _config(data: Path, **kw: Any) -> Any:
    values = {
        "dataset": str(data), "num-server-rounds": 2, "local-epochs": 1,
        "hidden-dim": 16, "latent-dim": 4, "mix-batch-size": 60,
        "test-fraction": 0.25, "output-dir": "", "diagnostics-dir": "",
    }  # fmt: skip
    values.update(kw)
    return parse_run_config(values)


def _party(folder: Path, i: int, fmt: str = "csv", **kw: str) -> dict[str, Any]:
    party = folder / f"party-{i}"
    return {
        "data-path": str(party / f"train.{fmt}"),
        "test-path": str(party / f"test.{fmt}"),
        **kw,
    }


def _run(config: Any, node_configs: list[dict[str, Any]] | None, n: int) -> Any:
    """Run in process; node ``i`` gets ``node_configs[i]`` added (files)."""
    grid = InProcessGrid(
        build_client_app(config), n, config.to_dict(), run_id=7, seed=config.seed
    )
    for pid, context in enumerate(grid.contexts.values()):
        if node_configs is not None:
            context.node_config.update(node_configs[pid])
    return run_method(grid, config)


def _scores(result: dict[str, Any]) -> list[tuple[Any, ...]]:
    keys = ("id", "modality", "n_train", "n_test", "acc", "nmi", "ari", "silhouette")
    return [tuple(row[k] for k in keys) for row in result["agents"]]


# ---------------------------------------------------------------- node config
def test_node_config_keys_are_one_table_and_unknown_keys_are_refused() -> None:
    names = [k.name for k in NODE_CONFIG_KEYS]
    assert {"data-path", "test-path", "label-column", "key-column", "view"} <= set(
        names
    )
    assert {"model-dir", "link-secret-file", "partition-id", "num-partitions"} <= set(
        names
    )
    assert all(k.meaning and k.default for k in NODE_CONFIG_KEYS)
    with pytest.raises(NodeConfigError, match="unknown node-config key.*data-pth"):
        parse_node_config({"data-pth": "x.csv"})
    with pytest.raises(NodeConfigError, match="valid keys: data-path, test-path"):
        parse_node_config({"data-pth": "x.csv"})
    with pytest.raises(NodeConfigError, match="label-column without data-path"):
        parse_node_config({"label-column": "y", "partition-id": 0})
    with pytest.raises(NodeConfigError, match="link-secret-file without key-column"):
        parse_node_config({"data-path": "a.csv", "link-secret-file": "s"})
    with pytest.raises(NodeConfigError, match="view='two'"):
        parse_node_config({"data-path": "a.mat", "view": "two"})
    node = parse_node_config({"partition-id": 2, "num-partitions": 3})
    assert node.partition_id == 2 and not node.is_party


# ---------------------------------------------------------------------- split
@pytest.mark.parametrize("fmt", ["csv", "parquet", "npz"])
def test_split_writes_one_file_pair_per_view(
    data_path: Path, tmp_path: Path, fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = _split(data_path, tmp_path / "parties", fmt, rate=0.3)
    printed = capsys.readouterr().out
    assert printed.count("flower-supernode") == 3 and "num-agents=3" in printed
    assert 'key-column="record_key"' in printed and "link-secret-file=" in printed
    secret = read_link_secret(out / "link-secret.txt")
    assert len(secret) == 64
    tables = [
        read_party_file(
            out / f"party-{i}" / f"train.{fmt}",
            label_column="label",
            key_column="record_key",
        )
        for i in range(3)
    ]
    assert [t.n_features for t in tables] == [6, 9, 5]
    assert all(t.n_rows == 180 for t in tables)
    keys = [set(t.keys.tolist()) for t in tables]
    shared = keys[0] & keys[1] & keys[2]
    assert 0.15 < len(shared) / 180 < 0.45  # about the link rate
    assert not (keys[0] - shared) & keys[1]  # others are party-unique
    # Rows are shuffled independently: shared keys sit in different rows.
    rows0 = {k: r for r, k in enumerate(tables[0].keys)}
    rows1 = {k: r for r, k in enumerate(tables[1].keys)}
    assert sum(rows0[k] == rows1[k] for k in shared) < len(shared) / 4


def test_split_refuses_a_bad_link_rate(data_path: Path, tmp_path: Path) -> None:
    argv = ["--dataset", str(data_path), "--out", str(tmp_path), "--link-rate", "2"]
    assert split_main(argv) == 2


# -------------------------------------------------------------------- parity
def test_file_parties_give_the_simulations_metrics(
    data_path: Path, tmp_path: Path
) -> None:
    """The split's files, one party per node (in process), and the simulation
    of the multi-view file give identical per-agent metrics for the seed."""
    out = _split(data_path, tmp_path / "parties", "csv")
    config = _config(data_path)
    simulated = _run(config, None, 3)
    parties = [_party(out, i, **{"label-column": "label"}) for i in range(3)]
    files = _run(config, parties, 3)
    assert _scores(files) == _scores(simulated)
    assert all(row["acc"] is not None for row in files["agents"])


def test_linked_file_parties_give_the_simulations_metrics(
    data_path: Path, tmp_path: Path
) -> None:
    """With 5% linked records, the split's files (record keys, a secret) and
    the simulation at anchor-rate 0.05 upload the same rows, pin the same
    shared ids and give identical per-agent metrics and byte counts."""
    out = _split(data_path, tmp_path / "parties", "csv", rate=0.05)
    secret = out / "link-secret.txt"
    secret.write_bytes(simulation_secret(0) + b"\n")  # the simulation's secret
    config = _config(data_path, **{"anchor-rate": 0.05})
    simulated = _run(config, None, 3)
    link = {"label-column": "label", "key-column": "record_key"}
    parties = [
        _party(out, i, **link, **{"link-secret-file": str(secret)}) for i in range(3)
    ]
    files = _run(config, parties, 3)
    assert _scores(files) == _scores(simulated)
    assert files["bytes_up"] == simulated["bytes_up"]
    assert files["bytes_down"] == simulated["bytes_down"]
    tables = [
        read_party_file(out / f"party-{i}" / "train.csv", key_column="record_key")
        for i in range(3)
    ]
    shared = set.intersection(*(set(t.keys.tolist()) for t in tables))
    assert 0 < len(shared) < 0.15 * tables[0].n_rows  # about 5% are linked


def test_parquet_parties_match_too(data_path: Path, tmp_path: Path) -> None:
    out = _split(data_path, tmp_path / "parties", "parquet")
    config = _config(data_path, **{"num-server-rounds": 1})
    simulated = _run(config, None, 3)
    files = _run(
        config,
        [_party(out, i, "parquet", **{"label-column": "label"}) for i in range(3)],
        3,
    )
    assert _scores(files) == _scores(simulated)


# ------------------------------------------------------------ models, labels
def test_each_party_writes_a_model_that_reproduces_its_scores(
    data_path: Path, tmp_path: Path
) -> None:
    out = _split(data_path, tmp_path / "parties", "csv")
    parties = [
        _party(out, i, **{"label-column": "label", "model-dir": str(out / f"m{i}")})
        for i in range(3)
    ]
    # The server holds no data set: it waits for num-agents parties.
    config = _config(Path("/nowhere/no-data.npz"), **{"num-agents": 3})
    result = _run(config, parties, 3)
    assert format_summary(result).startswith("otm on 3 parties' own files (")
    for i, row in enumerate(result["agents"]):
        model = load_party_model(out / f"m{i}")
        assert model.task == "clustering"
        test = read_party_file(
            out / f"party-{i}" / "test.csv",
            label_column="label",
            key_column="record_key",
        )
        assert model.feature_names == test.feature_names
        codes = model.embed(test)
        assert codes.shape == (test.n_rows, 4) and codes.dtype == np.float32
        predicted = model.predict(test.features)
        acc = clustering_accuracy(test.labels, predicted)
        assert acc == pytest.approx(row["acc"], abs=1e-12)


def test_classification_model_reproduces_the_reported_accuracy(
    data_path: Path, tmp_path: Path
) -> None:
    out = _split(data_path, tmp_path / "parties", "npz")
    parties = [
        _party(
            out, i, "npz", **{"label-column": "label", "model-dir": str(out / f"m{i}")}
        )
        for i in range(3)
    ]
    config = _config(data_path, task="classification", **{"num-server-rounds": 1})
    result = _run(config, parties, 3)
    for i, row in enumerate(result["agents"]):
        model = load_party_model(out / f"m{i}")
        test = read_party_file(out / f"party-{i}" / "test.npz", label_column="label")
        predicted = model.classes[model.predict(test)]
        assert model.task == "classification"
        assert np.mean(predicted == test.labels) == pytest.approx(row["accuracy"])


def test_simulated_agents_write_their_models_under_the_run_folder(
    data_path: Path, tmp_path: Path
) -> None:
    config = _config(
        data_path, **{"num-server-rounds": 1, "output-dir": str(tmp_path / "runs")}
    )
    _run(config, None, 3)
    models = sorted((tmp_path / "runs").glob("*/models/agent-*"))
    assert [m.name for m in models] == ["agent-0", "agent-1", "agent-2"]
    assert load_party_model(models[0]).predict(np.zeros((2, 6))).shape == (2,)


def test_unlabelled_party_clusters_and_reports_silhouette(
    data_path: Path, tmp_path: Path
) -> None:
    out = _split(data_path, tmp_path / "parties", "csv")
    frame = pd.read_csv(out / "party-2" / "train.csv")
    frame.drop(columns=["label"]).to_csv(out / "party-2" / "train.csv", index=False)
    parties = [_party(out, i, **{"label-column": "label"}) for i in range(2)]
    parties.append({"data-path": str(out / "party-2" / "train.csv")})  # split itself
    config = _config(data_path, **{"n-clusters": 4, "num-agents": 3})
    rows = _run(config, parties, 3)["agents"]
    assert [r["acc"] is None for r in rows] == [False, False, True]
    assert all(-1.0 <= r["silhouette"] <= 1.0 for r in rows)
    assert rows[2]["n_test"] == 45 and rows[2]["n_train"] == 135
    no_k = _config(data_path)
    with pytest.raises(ValueError, match="n-clusters"):
        agent_for_node(no_k, {**parties[2], "partition-id": 2})


def test_labelled_party_count_comes_from_its_own_labels(
    data_path: Path, tmp_path: Path
) -> None:
    out = _split(data_path, tmp_path / "parties", "csv")
    party = _party(out, 1, **{"label-column": "label"})
    agent, k = agent_for_node(_config(data_path), party)
    assert k == 4 and agent.input_dim == 9 and agent.labelled
    _, k = agent_for_node(_config(data_path, **{"n-clusters": 6}), party)
    assert k == 6


# ------------------------------------------------------------------- linkage
def test_shared_record_keys_become_the_same_opaque_ids(
    data_path: Path, tmp_path: Path
) -> None:
    out = _split(data_path, tmp_path / "parties", "csv", rate=0.3)
    secret = str(out / "link-secret.txt")
    link = {"label-column": "label", "key-column": "record_key"}
    agents = [
        agent_for_node(
            _config(data_path), _party(out, i, **link, **{"link-secret-file": secret})
        )[0]
        for i in range(2)
    ]
    tables = [
        read_party_file(out / f"party-{i}" / "train.csv", key_column="record_key")
        for i in range(2)
    ]
    ids = [a.link_ids for a in agents]
    assert ids[0] is not None and ids[1] is not None
    common = np.intersect1d(ids[0], ids[1])
    shared_keys = set(tables[0].keys.tolist()) & set(tables[1].keys.tolist())
    assert len(common) == len(shared_keys) > 0
    np.testing.assert_array_equal(
        ids[0], link_ids(tables[0].keys, read_link_secret(secret))
    )
    # The features never include the key or label columns.
    assert agents[0].input_dim == 6 and agents[0].feature_names[0] == "a_0"


def _printed_run_config(printed: str) -> dict[str, Any]:
    """The run config of the ``flwr run`` line ``otm-flower split`` printed, on
    top of the app's whole table (what Flower hands a run)."""
    import tomllib

    from flwr.common.config import parse_config_args

    line = next(x for x in printed.splitlines() if "flwr run" in x)
    overrides = line.split("--run-config ", 1)[1].strip().strip('"')
    overrides = overrides.replace("<k, needed when a party has no labels>", "4")
    table = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    app = table["tool"]["flwr"]["app"]["config"]
    return {**app, **parse_config_args([overrides])}


def test_key_linked_parties_train_with_the_anchored_settings(
    data_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Split with shared keys prints linked-records='yes': server and parties
    parse the anchored regime's settings (mix and align), not the unaligned
    ones (no mix) that anchor-rate 0 alone would give; the parties pin their
    shared ids."""
    out = _split(data_path, tmp_path / "linked", "csv", rate=0.3)
    run_config = _printed_run_config(capsys.readouterr().out)
    assert run_config["linked-records"] == "yes" and run_config["anchor-rate"] == 0
    config = parse_run_config(run_config)
    assert config.linked and config.mix_frame == "own"
    assert (config.weight_mix, config.weight_reg) == (1.0, 3.0)
    unlinked = parse_run_config({**run_config, "linked-records": "auto"})
    assert (unlinked.weight_mix, unlinked.weight_reg) == (0.0, 0.0)
    _split(data_path, tmp_path / "unlinked", "csv", rate=0.0)
    assert _printed_run_config(capsys.readouterr().out)["linked-records"] == "auto"
    small = dataclasses.replace(
        config, dataset=str(data_path), num_server_rounds=1, local_epochs=1,
        hidden_dim=16, latent_dim=4, mix_batch_size=60, test_fraction=0.25,
        output_dir="", diagnostics_dir="", out="",
    )  # fmt: skip
    secret = str(out / "link-secret.txt")
    link = {"label-column": "label", "key-column": "record_key"}
    parties = [_party(out, i, **link, **{"link-secret-file": secret}) for i in range(3)]
    result = _run(small, parties, 3)
    assert result["config"]["weight-mix"] == 1.0
    assert result["config"]["linked-records"] == "yes"
    assert all(row["acc"] is not None for row in result["agents"])


def test_a_key_linked_party_needs_a_usable_secret_file(
    data_path: Path, tmp_path: Path
) -> None:
    """A party with record keys in a run of linked parties, without a secret
    file or with a missing, unreadable or empty one, is refused naming it."""
    out = _split(data_path, tmp_path / "parties", "csv", rate=0.3)
    keyed = _party(out, 0, **{"label-column": "label", "key-column": "record_key"})
    linked = _config(data_path, **{"linked-records": "yes"})
    with pytest.raises(LinkageError, match="no link-secret-file") as err:
        agent_for_node(linked, keyed)
    assert "train.csv" in str(err.value) and "'record_key'" in str(err.value)
    agent, _ = agent_for_node(_config(data_path), keyed)  # keys only dropped
    assert agent.link_ids is None and agent.input_dim == 6
    empty = tmp_path / "empty-secret.txt"
    empty.write_text("\n")
    folder = tmp_path / "a-folder"
    folder.mkdir()
    for path, problem in [
        (empty, "is empty"),
        (tmp_path / "absent.txt", "not found"),
        (folder, "cannot read"),
    ]:
        node = {**keyed, "link-secret-file": str(path)}
        with pytest.raises(LinkageError, match=problem) as err:
            agent_for_node(linked, node)
        assert str(path) in str(err.value)


def test_the_run_names_the_parties_files_when_the_server_holds_no_data(
    data_path: Path,
) -> None:
    default = RunConfig().to_dict()  # what flwr run hands the server
    assert data_label(default) == "handwritten"  # a simulation: one per view
    parties = {**default, "num-agents": 2}  # dataset left at its default
    assert not server_holds_data(parties)
    assert data_label(parties) == "2 parties' own files"
    assert data_label({**parties, "dataset": "/nowhere/x.npz"}).startswith("2 part")
    assert data_label({**parties, "dataset": str(data_path)}) == str(data_path)
    assert data_label(parse_run_config({"dataset": "cub", "num-agents": 2})) == "cub"


# -------------------------------------------------------------------- server
class _Grid:
    def __init__(self, n: int) -> None:
        self.n = n

    def get_node_ids(self) -> list[int]:
        return list(range(self.n))


def test_server_without_data_needs_num_agents() -> None:
    config = parse_run_config({"dataset": "/nowhere/none.npz"})
    with pytest.raises(ConfigError, match="num-agents"):
        expected_agents(config)
    assert expected_agents(parse_run_config({**config.to_dict(), "num-agents": 4})) == 4


def test_too_few_nodes_is_said_quickly_with_the_fix() -> None:
    with pytest.raises(TimeoutError, match='"num-supernodes=3"') as err:
        wait_for_agents(_Grid(2), 3, timeout=600, stall=1.5)  # type: ignore[arg-type]
    assert "start 3 SuperNodes" in str(err.value)
    wait_for_agents(_Grid(3), 3, timeout=600, stall=1.5)  # type: ignore[arg-type]


def test_a_party_needs_no_partition_id(data_path: Path, tmp_path: Path) -> None:
    """A party node needs no partition-id: its id comes from party-id."""
    out = _split(data_path, tmp_path / "parties", "csv")
    ctx = Context(
        run_id=1,
        node_id=9,
        node_config={**_party(out, 0), "party-id": 11},
        state=RecordDict(),
        run_config={},
    )
    agent, _ = agent_for_node(
        _config(data_path, **{"n-clusters": 4}), dict(ctx.node_config)
    )
    assert agent.agent_id == 11 and not agent.labelled


def test_a_test_file_with_other_columns_is_refused(
    data_path: Path, tmp_path: Path
) -> None:
    out = _split(data_path, tmp_path / "parties", "csv")
    party = {
        **_party(out, 0, **{"label-column": "label"}),
        "test-path": str(out / "party-1" / "test.csv"),
    }
    with pytest.raises(ValueError, match="6 training vs 9 test feature columns"):
        agent_for_node(_config(data_path), party)


def test_a_keyed_party_sends_codes_ids_and_metrics_only(
    data_path: Path, tmp_path: Path
) -> None:
    """Only latent codes, opaque linked-record ids and scalar metrics leave a
    party: no features, labels, keys or row indices."""
    from clients.app import handle_train
    from otm_flower import protocol as P
    from tests.test_client import train_message

    out = _split(data_path, tmp_path / "parties", "csv", rate=0.5)
    node = _party(
        out,
        0,
        **{
            "label-column": "label",
            "key-column": "record_key",
            "link-secret-file": str(out / "link-secret.txt"),
            "party-id": 0,
        },
    )
    ctx = Context(run_id=1, node_id=5, node_config=node, state=RecordDict(),
                  run_config={})  # fmt: skip
    config = _config(data_path, **{"mix-batch-size": 64})
    reply = handle_train(train_message(1), ctx, config)
    content = reply.content
    assert not content.config_records
    record = content.array_records[P.CODES_RECORD]
    assert set(record) == {P.KEY_CODES, P.KEY_ANCHORS}
    codes, ids = record[P.KEY_CODES].numpy(), record[P.KEY_ANCHORS].numpy()
    assert codes.shape == (64, 4) and ids.shape == (64,) and (ids >= 0).all()
    table = read_party_file(out / "party-0" / "train.csv", key_column="record_key")
    raw_keys = {int(k[1:]) for k in table.keys if k.startswith("r")}
    assert not set(ids.tolist()) & raw_keys  # ids are not the keys
    secret = read_link_secret(out / "link-secret.txt")
    assert set(ids.tolist()) <= set(link_ids(table.keys, secret).tolist())
    for value in content.metric_records[P.METRICS_RECORD].values():
        assert isinstance(value, int | float)
