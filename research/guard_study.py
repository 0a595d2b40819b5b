"""Study of the term guard's criterion: which score keeps OTM never worse than alone.

Arms (:data:`ARMS`): ``local`` (no communication), ``otm`` with the guard off,
and ``otm`` guarded by each criterion of ``term-guard-criterion``. Each arm is
one ``otm-flower bench`` folder, ``ROOT/<split>-<arm>``, run on the anchored
regime (5% linked records). The ``validation`` split scores every agent on 20% of
its training rows (``validation-fraction = 0.2``; test rows unused), the one
the criterion is chosen on; the ``test`` split scores the held-out test rows.

Usage::

    python -m research.guard_study commands --root DIR --split validation
    python -m research.guard_study table --root DIR --split validation
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from otm_flower.config import GUARD_CRITERIA
from simulations.benchmark.grid import load_results
from simulations.benchmark.markdown import markdown_table
from simulations.benchmark.scores import format_pm, mean_score, weakest_score

__all__ = ["ARMS", "SPLITS", "arm_rows", "bench_command", "study_table"]

#: arm name -> (benchmark method, run-config overrides beyond the split's).
ARMS: dict[str, tuple[str, tuple[str, ...]]] = {
    "local": ("local", ()),
    "off": ("otm", ("term-guard=false",)),
    **{c: ("otm", (f"term-guard-criterion={c}",)) for c in GUARD_CRITERIA},
}
#: split name -> run-config overrides that select it.
SPLITS: dict[str, tuple[str, ...]] = {
    "validation": ("validation-fraction=0.2",),
    "test": (),
}
DATASETS = ("cub", "prokaryotic", "orl", "movies")


def _checked(arm: str, split: str) -> tuple[str, tuple[str, ...]]:
    if arm not in ARMS:
        raise ValueError(f"unknown arm {arm!r}: expected one of {tuple(ARMS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: expected one of {tuple(SPLITS)}")
    return ARMS[arm]


def bench_command(
    arm: str, split: str, root: str | Path, datasets: Sequence[str], seeds: int = 3
) -> list[str]:
    """The ``otm-flower bench`` command line of one arm on one split."""
    method, sets = _checked(arm, split)
    argv = ["otm-flower", "bench", "--datasets", ",".join(datasets)]
    argv += ["--methods", method, "--regimes", "anchored", "--seeds", str(seeds)]
    for item in (*SPLITS[split], *sets):
        argv += ["--set", item]
    return [*argv, "--out", str(Path(root) / f"{split}-{arm}")]


def arm_rows(arm: str, split: str, root: str | Path) -> dict[str, list[dict[str, Any]]]:
    """The arm's result documents per data set (only its method's runs)."""
    method, _ = _checked(arm, split)
    folder = Path(root) / f"{split}-{arm}"
    rows: dict[str, list[dict[str, Any]]] = {}
    if not (folder / "runs").is_dir():
        return rows
    for result in load_results(folder):
        if result.get("method") == method and result.get("regime") == "anchored":
            rows.setdefault(str(result["dataset"]), []).append(result)
    return rows


def _percent(values: Sequence[float | None]) -> list[float | None]:
    return [None if v is None else 100.0 * v for v in values]


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _by_seed(runs: list[dict[str, Any]]) -> dict[Any, float | None]:
    return {r["seed"]: _percent([mean_score(r)])[0] for r in runs}


def _gains(
    arm: str, runs: list[dict[str, Any]], local: dict[Any, float | None]
) -> list[str]:
    """ACC minus ``local``'s: of the means, and per seed (the seeds both ran)."""
    if arm == "local" or not local:
        return ["", ""]
    mine = _by_seed(runs)
    mean, base = _mean(list(mine.values())), _mean(list(local.values()))
    gain = "" if mean is None or base is None else f"{mean - base:+.1f}"
    paired = [
        None if v is None or local[s] is None else v - local[s]
        for s, v in mine.items()
        if s in local
    ]
    return [gain, format_pm(paired, 1)]


def _row(
    dataset: str, arm: str, runs: list[dict[str, Any]], local: dict[Any, float | None]
) -> list[str]:
    acc = _percent([mean_score(r) for r in runs])
    nmi = _percent([mean_score(r, "nmi") for r in runs])
    low = _mean(_percent([weakest_score(r) for r in runs]))
    return [
        dataset,
        arm,
        str(len(runs)),
        format_pm(acc, 1),
        format_pm(nmi, 1),
        "-" if low is None else f"{low:.1f}",
        *_gains(arm, runs, local),
    ]


def study_table(root: str | Path, split: str, arms: Sequence[str] = tuple(ARMS)) -> str:
    """Markdown table of every arm found under ``root`` for ``split``: ACC and NMI
    (%, mean ± std over seeds of the mean over agents), the weakest agent's ACC
    (mean over seeds), the ACC gain over ``local`` and that gain seed by seed
    (mean ± std over the seeds both ran)."""
    found = {arm: arm_rows(arm, split, root) for arm in arms}
    datasets = sorted({d for rows in found.values() for d in rows})
    body = []
    for dataset in datasets:
        local = _by_seed(found.get("local", {}).get(dataset, []))
        for arm in arms:
            if runs := found[arm].get(dataset):
                body.append(_row(dataset, arm, runs, local))
    header = ["data set", "arm", "seeds", "ACC", "NMI", "weakest ACC", "gain"]
    return "\n".join(markdown_table([*header, "gain per seed"], body))


def main(argv: Sequence[str] | None = None) -> None:
    """``commands``: print the bench commands; ``table``: print the results table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("commands", "table"))
    parser.add_argument("--root", required=True, help="folder of the arms' benches")
    parser.add_argument("--split", choices=tuple(SPLITS), default="validation")
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--arms", default=",".join(ARMS))
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args(argv)
    arms = [a for a in args.arms.split(",") if a]
    if args.action == "table":
        print(study_table(args.root, args.split, arms))
        return
    for arm in arms:
        command = bench_command(
            arm, args.split, args.root, args.datasets.split(","), args.seeds
        )
        print(shlex.join(command))


if __name__ == "__main__":
    main()
