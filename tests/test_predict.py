"""``otm-flower predict``: a saved party model applied to a data file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression

from otm_flower.data import load_dataset
from otm_flower.metrics import clustering_accuracy
from otm_flower.models import WAE
from otm_flower.party_model import load_party_model, save_party_model
from otm_flower.preprocessing import Preprocessor
from simulations.predict import main

VIEW = 1  # Handwritten's Fourier coefficients (76 features)
N_TRAIN, N_TEST, LATENT = 240, 60, 6


def party_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    """One party's train and test tables: features, ``label``, ``record_key``."""
    data = load_dataset("handwritten")
    rows = np.random.default_rng(0).permutation(data.n_samples)[: N_TRAIN + N_TEST]
    x = np.asarray(data.views[VIEW], dtype=np.float64)[rows]
    frame = pd.DataFrame(x, columns=[f"fou_{j}" for j in range(x.shape[1])])
    frame["label"] = [f"digit-{c}" for c in data.labels[rows]]
    frame["record_key"] = [f"r{i:04d}" for i in rows]
    return frame.iloc[:N_TRAIN], frame.iloc[N_TRAIN:].reset_index(drop=True)


def features(frame: pd.DataFrame) -> np.ndarray:
    return frame.drop(columns=["label", "record_key"]).to_numpy()


def train_party(train: pd.DataFrame, folder: Path, task: str) -> Path:
    """A WAE trained a few epochs on the party's rows, saved with its heads."""
    torch.manual_seed(0)
    x_raw = features(train)
    prep = Preprocessor().fit(x_raw)
    x = torch.as_tensor(prep.transform(x_raw), dtype=torch.float32)
    model = WAE(x.shape[1], LATENT, hidden_dim=32)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(30):
        optimiser.zero_grad()
        loss = torch.nn.functional.mse_loss(model.decode(model.encode(x)), x)
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        codes = model.encode(x).numpy().astype(np.float64)
    centers = KMeans(10, n_init=4, random_state=0).fit(codes).cluster_centers_
    classes, index = np.unique(train["label"].to_numpy(), return_inverse=True)
    head = LogisticRegression(max_iter=500).fit(codes.astype(np.float32), index)
    return save_party_model(
        folder,
        model=model,
        preprocessor=prep,
        feature_names=list(train.columns[:-2]),
        task=task,
        centers=centers,
        classifier=head if task == "classification" else None,
        classes=classes,
        wae_config={
            "input_dim": x.shape[1],
            "latent_dim": LATENT,
            "hidden_dim": 32,
            "num_classes": 0,
        },
        metrics={"acc": 0.5},
    )


@pytest.fixture(scope="module")
def party(tmp_path_factory) -> dict[str, Path]:
    """A clustering and a classification model and the party's test file."""
    folder = tmp_path_factory.mktemp("party")
    train, test = party_frames()
    test.to_csv(folder / "test.csv", index=False)
    test.to_parquet(folder / "test.parquet", index=False)
    return {
        "clustering": train_party(train, folder / "model-clu", "clustering"),
        "classification": train_party(train, folder / "model-cls", "classification"),
        "test": folder / "test.csv",
        "parquet": folder / "test.parquet",
    }


def predict(*args: str | Path) -> int:
    return main([str(a) for a in args])


def test_clustering_round_trip_with_keys_and_codes(party, tmp_path, capsys) -> None:
    out = tmp_path / "pred.csv"
    common = ("--key-column", "record_key", "--label-column", "label")
    status = predict(
        "--model", party["clustering"], "--data", party["test"], *common,
        "--codes", "--out", out,
    )  # fmt: skip
    assert status == 0
    printed = capsys.readouterr().out
    pred = pd.read_csv(out)
    test = pd.read_csv(party["test"])
    assert list(pred.columns) == ["record_key", "cluster"] + [
        f"code-{j}" for j in range(LATENT)
    ]
    assert pred["record_key"].tolist() == test["record_key"].tolist()
    model = load_party_model(party["clustering"])
    np.testing.assert_array_equal(pred["cluster"], model.predict(features(test)))
    codes = pred[[f"code-{j}" for j in range(LATENT)]].to_numpy()
    np.testing.assert_allclose(codes, model.embed(features(test)), rtol=1e-6)
    acc = clustering_accuracy(test["label"].to_numpy(), pred["cluster"].to_numpy())
    assert f"test ACC {acc:.4f}" in printed and "reported 0.5000" in printed
    assert acc > 0.2  # a trained encoder clusters digits well above chance


def test_parquet_without_key_writes_row_index(party, tmp_path) -> None:
    out = tmp_path / "pred.csv"
    status = predict(
        "--model", party["clustering"], "--data", party["parquet"],
        "--label-column", "label", "--out", out,
    )  # fmt: skip
    assert status == 0
    pred = pd.read_csv(out)
    assert list(pred.columns) == ["row", "cluster"]
    assert pred["row"].tolist() == list(range(N_TEST))
    csv = tmp_path / "from-csv.csv"
    assert predict(
        "--model", party["clustering"], "--data", party["test"],
        "--label-column", "label", "--out", csv,
    ) == 0  # fmt: skip
    pd.testing.assert_frame_equal(pred, pd.read_csv(csv))


def test_classification_writes_class_values(party, tmp_path, capsys) -> None:
    out = tmp_path / "pred.csv"
    status = predict(
        "--model", party["classification"], "--data", party["test"],
        "--key-column", "record_key", "--label-column", "label", "--out", out,
    )  # fmt: skip
    assert status == 0
    pred = pd.read_csv(out)
    assert list(pred.columns) == ["record_key", "class"]
    assert set(pred["class"]) <= {f"digit-{c}" for c in range(10)}
    truth = pd.read_csv(party["test"])["label"]
    accuracy = float(np.mean(pred["class"] == truth))
    assert f"test accuracy {accuracy:.4f}" in capsys.readouterr().out
    assert accuracy > 0.3


def test_columns_in_another_order_are_matched_by_name(party, tmp_path) -> None:
    test = pd.read_csv(party["test"])
    shuffled = tmp_path / "shuffled.csv"
    test[list(reversed(test.columns))].to_csv(shuffled, index=False)
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    for data, out in ((party["test"], a), (shuffled, b)):
        assert predict(
            "--model", party["clustering"], "--data", data,
            "--key-column", "record_key", "--label-column", "label", "--out", out,
        ) == 0  # fmt: skip
    pd.testing.assert_frame_equal(pd.read_csv(a), pd.read_csv(b))


def error_of(capsys, *args: str | Path) -> str:
    """The one-line error of a refused ``predict`` (exit status 2)."""
    assert predict(*args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("otm-flower predict: error: ")
    return err


def test_missing_model_folder(party, tmp_path, capsys) -> None:
    absent = tmp_path / "no-model"
    err = error_of(
        capsys, "--model", absent, "--data", party["test"], "--out", tmp_path / "p.csv"
    )
    assert str(absent) in err and "not found" in err


@pytest.mark.parametrize("damage", ["manifest", "weights", "version"])
def test_corrupt_artifact(party, tmp_path, capsys, damage: str) -> None:
    import shutil

    broken = shutil.copytree(party["clustering"], tmp_path / "broken")
    if damage == "manifest":
        (broken / "model.json").write_text("{not json")
    elif damage == "weights":
        (broken / "weights.pt").write_bytes(b"\x00" * 64)
    else:
        text = (broken / "model.json").read_text()
        (broken / "model.json").write_text(
            text.replace('"format_version": 1', '"format_version": 99')
        )
    out = tmp_path / "p.csv"
    err = error_of(
        capsys, "--model", broken, "--data", party["test"],
        "--label-column", "label", "--key-column", "record_key", "--out", out,
    )  # fmt: skip
    assert str(broken) in err and "cannot load the party model" in err
    assert not out.exists()


def test_missing_and_extra_columns_are_named(party, tmp_path, capsys) -> None:
    test = pd.read_csv(party["test"])
    bad = tmp_path / "bad.csv"
    test.drop(columns=["fou_3"]).assign(site=1.0).to_csv(bad, index=False)
    err = error_of(
        capsys, "--model", party["clustering"], "--data", bad,
        "--label-column", "label", "--key-column", "record_key",
        "--out", tmp_path / "p.csv",
    )  # fmt: skip
    assert "1 missing: 'fou_3'" in err and "1 extra: 'site'" in err
    assert str(bad) in err


def test_label_column_not_named_is_an_extra_column(party, tmp_path, capsys) -> None:
    numeric = tmp_path / "numeric-labels.csv"
    test = pd.read_csv(party["test"])
    test.assign(label=test["label"].str[-1].astype(int)).to_csv(numeric, index=False)
    err = error_of(
        capsys, "--model", party["clustering"], "--data", numeric,
        "--key-column", "record_key", "--out", tmp_path / "p.csv",
    )  # fmt: skip
    assert "1 extra: 'label'" in err and "--label-column" in err


def test_missing_data_file(party, tmp_path, capsys) -> None:
    absent = tmp_path / "none.csv"
    err = error_of(
        capsys, "--model", party["clustering"], "--data", absent,
        "--out", tmp_path / "p.csv",
    )  # fmt: skip
    assert str(absent) in err and "file not found" in err


def test_console_command(party, tmp_path) -> None:
    out = tmp_path / "pred.csv"
    command = [
        str(Path(sys.executable).parent / "otm-flower"), "predict",
        "--model", str(party["clustering"]), "--data", str(party["test"]),
        "--key-column", "record_key", "--label-column", "label", "--out", str(out),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert len(pd.read_csv(out)) == N_TEST and "test ACC" in done.stdout
