"""Parties with their own files under Flower's Deployment Runtime.

``otm-flower split`` turns a multi-view data set into one folder per party; a
real SuperLink and one SuperNode per party then run the app, each SuperNode
given only its own files (``data-path``, ``test-path``) and the federation's
linkage secret, the ServerApp given no data set at all.  Every process runs in
its own session on loopback (insecure mode, tests only), with ``FLWR_HOME`` in
a temporary folder; all of them are stopped by process group, also on failure.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from otm_flower.data import MultiViewDataset, load_dataset, save_npz

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
#: A small, quick run: few rounds and epochs, small networks.
QUICK = (
    "local-epochs=1 latent-dim=8 hidden-dim=32 mix-batch-size=64 "
    'barycenter-iterations=2 output-dir=""'
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Processes:
    """Starts processes in their own sessions and ends their whole groups."""

    def __init__(self, env: dict[str, str], folder: Path) -> None:
        self.env, self.folder, self.procs = env, folder, []

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = (self.folder / f"{name}.log").open("w")
        proc = subprocess.Popen(
            [str(BIN / args[0]), *args[1:]],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            try:
                self.stop(proc)
            except ProcessLookupError:
                pass


@pytest.fixture
def federation(tmp_path: Path) -> Iterator[tuple[Processes, dict[str, str], int]]:
    env = {
        **os.environ,
        "FLWR_HOME": str(tmp_path / "flwr-home"),
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
    }
    procs = Processes(env, tmp_path)
    port = free_port()
    try:
        yield procs, env, port
    finally:
        procs.stop_all()


@dataclass
class Party:
    """One party's own files and node-local model folder."""

    train: Path
    test: Path
    model_dir: Path
    labelled: bool
    party_id: int

    def node_config(self, secret: Path) -> str:
        config = (
            f'data-path="{self.train}" test-path="{self.test}" '
            f'key-column="record_key" model-dir="{self.model_dir}" '
            f'link-secret-file="{secret}" party-id={self.party_id}'
        )
        return config + (' label-column="label"' if self.labelled else "")


def small_views(path: Path, views: tuple[int, ...], n: int, seed: int) -> Path:
    """``n`` Handwritten samples of some of its views, as one multi-view file."""
    full = load_dataset("handwritten")
    rows = np.random.default_rng(seed).permutation(full.n_samples)[:n]
    data = MultiViewDataset(
        "hw-small",
        [np.asarray(full.views[v])[rows] for v in views],
        full.labels[rows],
        [full.view_names[v] for v in views],
    )
    return save_npz(data, path)


def split_into_parties(data: Path, out: Path, link_rate: float) -> Path:
    """``otm-flower split`` of ``data`` into CSV party folders; the secret file."""
    from simulations.split import main as split_main

    assert (
        split_main(
            [
                "--dataset",
                str(data),
                "--out",
                str(out),
                "--format",
                "csv",
                "--link-rate",
                str(link_rate),
                "--test-fraction",
                "0.2",
                "--seed",
                "0",
            ]
        )
        == 0
    )
    secrets = [p for p in out.iterdir() if p.is_file() and "secret" in p.name]
    assert len(secrets) == 1, sorted(p.name for p in out.iterdir())
    return secrets[0]


def as_parquet(csv: Path) -> Path:
    """The CSV file rewritten as Parquet (pandas + pyarrow) beside it."""
    parquet = csv.with_suffix(".parquet")
    pd.read_csv(csv, dtype={"record_key": str}).to_parquet(parquet, index=False)
    csv.unlink()
    return parquet


def without_labels(csv: Path) -> Path:
    """The CSV file with its ``label`` column removed (a party with no labels)."""
    frame = pd.read_csv(csv, dtype={"record_key": str})
    frame.drop(columns=["label"]).to_csv(csv, index=False)
    return csv


def prepare_parties(out: Path) -> list[Party]:
    """Party 0 in CSV, party 1 in Parquet, party 2 in CSV without labels."""
    parties = []
    for i in range(3):
        folder = out / f"party-{i}"
        train, test = folder / "train.csv", folder / "test.csv"
        if i == 1:
            train, test = as_parquet(train), as_parquet(test)
        if i == 2:
            train, test = without_labels(train), without_labels(test)
        parties.append(Party(train, test, out / f"model-{i}", i != 2, party_id=i))
    return parties


def start_federation(
    procs: Processes,
    env: dict[str, str],
    port: int,
    parties: list[Party],
    secret: Path,
) -> list[subprocess.Popen]:
    """A SuperLink, one SuperNode per party, and a CLI config named ``test``."""
    procs.start("superlink", "flower-superlink", "--insecure", "--port", str(port))
    nodes = []
    for i, party in enumerate(parties):
        nodes.append(
            procs.start(
                f"supernode{i}",
                "flower-supernode",
                "--insecure",
                "--superlink",
                f"127.0.0.1:{port}",
                "--port",
                str(free_port()),
                "--node-config",
                party.node_config(secret),
            )
        )
    home = Path(env["FLWR_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(
        '[superlink]\ndefault = "test"\n\n'
        f'[superlink.test]\naddress = "127.0.0.1:{port}"\ninsecure = true\n'
    )
    wait_for_port(port)
    time.sleep(3)  # and let the SuperNodes register
    return nodes


def wait_for_port(port: int, timeout: float = 90.0) -> None:
    """Block until the SuperLink accepts connections on ``port`` (slow when loaded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(1.0)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise TimeoutError(f"the SuperLink did not open port {port} in {timeout:.0f} s")


def flwr_run_command(run_config: str) -> list[str]:
    """``flwr run`` of this app on the ``test`` connection, streaming its logs."""
    return [
        str(BIN / "flwr"),
        "run",
        str(ROOT),
        "test",
        "--stream",
        "--run-config",
        run_config,
    ]


def predicted_acc(party: Party, tmp_path: Path, name: str) -> float:
    """``otm-flower predict`` on the party's test file, scored against its labels."""
    from otm_flower.metrics import clustering_accuracy

    out = tmp_path / f"{name}-pred.csv"
    command = [
        str(BIN / "otm-flower"),
        "predict",
        "--model",
        str(party.model_dir),
        "--data",
        str(party.test),
        "--key-column",
        "record_key",
        "--label-column",
        "label",
        "--out",
        str(out),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    predicted = pd.read_csv(out, dtype={"record_key": str})
    truth = read_table(party.test)
    assert predicted["record_key"].tolist() == truth["record_key"].tolist()
    return clustering_accuracy(truth["label"].to_numpy(), predicted["cluster"])


def read_table(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, dtype={"record_key": str})


def test_parties_with_their_own_files_train_and_predict(
    federation, tmp_path: Path
) -> None:
    procs, env, port = federation
    data = small_views(tmp_path / "hw.npz", views=(3, 1, 2), n=400, seed=0)
    secret = split_into_parties(data, tmp_path / "parties", link_rate=0.05)
    parties = prepare_parties(tmp_path / "parties")
    start_federation(procs, env, port, parties, secret)
    out = tmp_path / "result.json"
    nowhere = tmp_path / "no-such-data.npz"  # neither server nor parties read it
    run_config = (
        f"num-server-rounds=2 num-agents=3 n-clusters=10 {QUICK} "
        f'round-timeout=120 dataset="{nowhere}" out="{out}"'
    )
    flwr = subprocess.run(
        flwr_run_command(run_config),
        env=env,
        capture_output=True,
        text=True,
        timeout=420,
    )
    logs = flwr.stdout + flwr.stderr
    assert flwr.returncode == 0, logs[-3000:]
    assert out.exists(), logs[-3000:]
    result = json.loads(out.read_text())
    assert result["rejected"] == []
    # up: 2 rounds x 3 parties x 64 rows x (8 float32 code values + one int64 id)
    assert result["bytes_up"] == 2 * 3 * 64 * (8 * 4 + 8)
    agents = {a["id"]: a for a in result["agents"]}
    assert sorted(agents) == [0, 1, 2]
    for i, party in enumerate(parties):
        row = agents[i]
        assert row["round"] == 2 and row["n_test"] == 80, row
        assert (party.model_dir / "model.json").is_file(), party.model_dir
        assert -1.0 <= row["silhouette"] <= 1.0
        if not party.labelled:
            assert row["acc"] is None and row["nmi"] is None
            continue
        reported = row["acc"]
        assert 0.0 < reported <= 1.0
        assert predicted_acc(party, tmp_path, f"party-{i}") == pytest.approx(
            reported, abs=1e-9
        )


def test_run_completes_when_a_supernode_is_killed(federation, tmp_path: Path) -> None:
    procs, env, port = federation
    data = small_views(tmp_path / "hw.npz", views=(3, 1, 2), n=300, seed=1)
    secret = split_into_parties(data, tmp_path / "parties", link_rate=0.0)
    parties = prepare_parties(tmp_path / "parties")
    nodes = start_federation(procs, env, port, parties, secret)
    out = tmp_path / "result.json"
    run_config = (
        f"num-server-rounds=3 num-agents=3 n-clusters=10 {QUICK} "
        f'round-timeout=120 out="{out}"'
    )
    flwr = subprocess.Popen(
        flwr_run_command(run_config),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    procs.procs.append(flwr)
    watchdog = threading.Timer(600, procs.stop, args=(flwr,))  # never hang CI
    watchdog.start()
    lines = []
    try:
        assert flwr.stdout is not None
        for line in flwr.stdout:
            lines.append(line)
            if "[ROUND 2/3]" in line:
                procs.stop(nodes[2])  # party 2's SuperNode dies mid-run
    finally:
        watchdog.cancel()
    assert flwr.wait(timeout=60) == 0, "".join(lines)[-3000:]
    result = json.loads(out.read_text())
    rounds = {a["id"]: a["round"] for a in result["agents"]}
    assert rounds[0] == 3 and rounds[1] == 3, rounds  # the others finished
    assert rounds[2] < 3, rounds  # the dead party's last report is kept
