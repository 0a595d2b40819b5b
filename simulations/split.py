"""``otm-flower split``: one data file per party from a multi-view data set.

Writes ``DIR/party-<i>/train.<ext>`` and ``DIR/party-<i>/test.<ext>`` for each
view ``i``: that view's raw feature columns, a ``label`` column and a
``record_key`` column, and ``DIR/link-secret.txt``, a fresh federation secret.
The rows are those of the simulated agents (:func:`otm_flower.partition.
agent_rows` with one agent per view, every row unaligned), so a federation of
these files and the simulation of the data set train on the same rows. Record
keys: the linkable records (the simulator's ``anchor-rate`` choice,
:func:`otm_flower.anchors.simulated_record_keys`, at ``--link-rate``) carry the
same key at every party, every other row a key unique to its party (see
:func:`party_keys`): the keys a simulation at ``anchor-rate`` gives its agents.
It prints the SuperNode command of each party and the run command (with
``linked-records='yes'`` when ``--link-rate`` > 0, so that the run takes the
validated settings of linked records).
"""

from __future__ import annotations

import argparse
import secrets
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from otm_flower.anchors import simulated_record_keys
from otm_flower.data import MultiViewDataset, load_dataset
from otm_flower.partition import AgentRows, agent_rows

FORMATS = ("csv", "parquet", "npz")
SECRET_FILE = "link-secret.txt"
LABEL = "label"
KEY = "record_key"


class SplitError(ValueError):
    """Bad arguments or an unusable data set for ``otm-flower split``."""


def build_parser() -> argparse.ArgumentParser:
    """The ``otm-flower split`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="otm-flower split",
        description="Write one train/test file pair per view (party) of a data set.",
    )
    parser.add_argument("--dataset", required=True, help="data set name or path")
    parser.add_argument("--out", required=True, help="folder to write the parties to")
    parser.add_argument("--format", choices=FORMATS, default="csv")
    parser.add_argument(
        "--link-rate",
        type=float,
        default=0.0,
        help="fraction of records whose key every party shares (default 0)",
    )
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    return parser


def party_keys(rows: np.ndarray, party: int, link_rate: float, seed: int) -> np.ndarray:
    """Record keys of a party's rows: ``r<sample>`` for linkable records (the
    same at every party), ``p<party>-<sample>`` otherwise; never numeric, so a
    reader cannot take them for a feature column.  These are the keys a
    simulation of the data set gives its agents
    (:func:`otm_flower.anchors.simulated_record_keys`)."""
    return simulated_record_keys(rows, link_rate, seed, party)


def _frame(
    data: MultiViewDataset, rows: AgentRows, which: np.ndarray, keys: np.ndarray
) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
    x = data.views[rows.view][which]
    dense = x.toarray() if sp.issparse(x) else np.asarray(x)
    name = data.view_names[rows.view]
    names = [f"{name}_{j}" for j in range(dense.shape[1])]
    return dense, names, data.labels[which], keys


def _write(
    path: Path, parts: tuple[np.ndarray, list[str], np.ndarray, np.ndarray]
) -> None:
    x, names, labels, keys = parts
    if path.suffix == ".npz":
        arrays: dict[str, Any] = {
            "x": x,
            "feature_names": np.array(names),
            LABEL: labels,
            KEY: keys.astype(str),
        }
        np.savez(path, **arrays)
        return
    frame = pd.DataFrame(x, columns=names)
    frame[LABEL] = labels
    frame[KEY] = keys.astype(str)
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)


def write_parties(
    data: MultiViewDataset,
    out: Path,
    *,
    fmt: str = "csv",
    link_rate: float = 0.0,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> list[tuple[Path, Path]]:
    """Write every party's train and test file; their paths, by view."""
    if not 0.0 <= link_rate <= 1.0:
        raise SplitError(f"--link-rate must be in [0, 1], got {link_rate}")
    try:
        all_rows = agent_rows(data, test_fraction=test_fraction, seed=seed)
    except ValueError as err:
        raise SplitError(str(err)) from err
    written = []
    for rows in all_rows:
        folder = out / f"party-{rows.view}"
        folder.mkdir(parents=True, exist_ok=True)
        paths = (folder / f"train.{fmt}", folder / f"test.{fmt}")
        for path, which in zip(paths, (rows.train, rows.test), strict=True):
            keys = party_keys(which, rows.agent_id, link_rate, seed)
            _write(path, _frame(data, rows, which, keys))
        written.append(paths)
    return written


def write_secret(out: Path) -> Path:
    """A fresh 32-byte federation secret (hex) in ``out``, readable by its owner."""
    path = out / SECRET_FILE
    path.write_text(secrets.token_hex(32) + "\n")
    path.chmod(0o600)
    return path


def commands(
    parties: list[tuple[Path, Path]], secret: Path, *, linked: bool = False
) -> list[str]:
    """One SuperNode command per party, then the run command (with
    ``linked-records='yes'`` when ``linked``: some keys are shared)."""
    lines = []
    for i, (train, test) in enumerate(parties):
        config = (
            f'data-path="{train}" test-path="{test}" label-column="{LABEL}" '
            f'key-column="{KEY}" link-secret-file="{secret}" '
            f'model-dir="{train.parent / "model"}" party-id={i}'
        )
        lines.append(
            "flower-supernode --insecure --superlink 127.0.0.1:8000 "
            f"--port {9100 + i} --node-config {shlex.quote(config)}"
        )
    regime = "linked-records='yes' " if linked else ""
    lines.append(
        f'flwr run . <federation> --run-config "num-agents={len(parties)} {regime}'
        'n-clusters=<k, needed when a party has no labels>"'
    )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``otm-flower split``; exit status 2 on bad input."""
    args = build_parser().parse_args(None if argv is None else list(argv))
    out = Path(args.out).expanduser()
    try:
        data = load_dataset(args.dataset)
        out.mkdir(parents=True, exist_ok=True)
        parties = write_parties(
            data,
            out,
            fmt=args.format,
            link_rate=args.link_rate,
            test_fraction=args.test_fraction,
            seed=args.seed,
        )
        secret = write_secret(out)
    except (SplitError, OSError, ValueError) as err:
        print(f"otm-flower split: error: {err}", file=sys.stderr)
        return 2
    print(f"{len(parties)} parties of {data.name} written to {out}")
    print("Start one SuperNode per party, then the run:")
    for line in commands(parties, secret, linked=args.link_rate > 0):
        print("  " + line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
