"""Hostile parties that pass the screening: the other parties' scores with and
without each attack, and with each defence.

``python -m research.hostile_study --experiment lookalike-anchored --seeds 0 1 2``
runs every case of the experiment on each seed (Handwritten by default, one
party hostile: ``--hostile``, default 0) and prints a Markdown table of mean ±
std over seeds of the other parties' mean test score (clustering: ACC and NMI;
classification: accuracy), the hostile party's own score and the uploads the
server rejected per run. Experiments (attacks in :mod:`research.hostile`):

* ``lookalike-anchored`` / ``lookalike-otm``: look-alike noise codes, clustering
  with 5% linked records / classification with ``otm``; defence: the parties'
  term guard (``term-guard``, on in the validated preset), shown on and off.
* ``forged``: forged linked-record ids (``shuffled``, ``random``), clustering
  with 5% linked records; with the term guard on and off.
* ``flipped-otm-head`` / ``flipped-fedavg``: flipped labels under a shared task
  head; defences: ``parameter-aggregation`` median, trimmed-mean, krum. These
  tables also give the parties' prediction with the shared head (the test
  accuracy of each party's encoder followed by the averaged head,
  :class:`research.hostile.HeadAccuracyMod`), beside the probe.

Each run's result JSON is kept in ``--cache`` (named by its settings) and
reused, so cases shared by two experiments run once.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from otm_flower.config import ConfigError, parse_run_config
from research.corruption import CorruptAgentMod
from research.hostile import (
    FlipLabels,
    ForgedAnchorsMod,
    HeadAccuracyMod,
    LookalikeNoiseMod,
)
from simulations.cli import simulate
from simulations.overrides import parse_set

ModsFactory = Callable[[int, int], list[Any]]  # (hostile partition, seed) -> mods

ANCHORED = {"anchor-rate": 0.05}
CLASSIFICATION = {"task": "classification"}
GUARD_OFF = {"term-guard": False}
AGGREGATIONS = ("mean", "median", "trimmed-mean", "krum")
#: Methods whose parties predict with a shared (averaged) task head.
HEAD_METHODS = ("otm-head", "fedavg")
#: Result key of the parties' shared-head test accuracy (agent id -> accuracy).
HEAD_KEY = "head_accuracy"


@dataclass(frozen=True)
class Case:
    """One row of a table: run-config keys, and the attack (``None``: honest)."""

    name: str
    keys: dict[str, Any] = field(default_factory=dict)
    attack: str | None = None


ATTACKS: dict[str, ModsFactory] = {
    "lookalike": lambda p, s: [LookalikeNoiseMod(p, s)],
    "forged-shuffled": lambda p, s: [ForgedAnchorsMod(p, "shuffled", s)],
    "forged-random": lambda p, s: [ForgedAnchorsMod(p, "random", s)],
    "flipped": lambda p, s: [CorruptAgentMod(FlipLabels(p))],
}


def _guard_cases(base: dict[str, Any], attacks: Sequence[str]) -> list[Case]:
    """Honest and each attack, with the term guard on (default) and off."""
    cases = [Case("all honest", base)]
    for attack in attacks:
        cases.append(Case(f"{attack}", base, attack))
        cases.append(Case(f"{attack}, guard off", base | GUARD_OFF, attack))
    return cases + [Case("all honest, guard off", base | GUARD_OFF)]


def _aggregation_cases(method: str) -> list[Case]:
    """Honest and flipped labels under each parameter aggregation."""
    cases = []
    for how in AGGREGATIONS:
        keys = CLASSIFICATION | {"method": method, "parameter-aggregation": how}
        cases.append(Case(f"all honest, {how}", keys))
        cases.append(Case(f"flipped, {how}", keys, "flipped"))
    return cases


EXPERIMENTS: dict[str, list[Case]] = {
    "lookalike-anchored": _guard_cases(ANCHORED, ["lookalike"]),
    "lookalike-otm": _guard_cases(CLASSIFICATION, ["lookalike"]),
    "forged": _guard_cases(ANCHORED, ["forged-shuffled"]),
    "forged-random": [Case("forged-random", ANCHORED, "forged-random")],
    "flipped-otm-head": _aggregation_cases("otm-head"),
    "flipped-fedavg": _aggregation_cases("fedavg"),
}


def run_key(case: Case, extra: dict[str, Any], seed: int, rounds: int) -> str:
    """A file name naming everything that sets a run's result."""
    keys = {**extra, **case.keys, "seed": seed, "num-server-rounds": rounds}
    parts = [f"{k}={keys[k]}" for k in sorted(keys)] + [f"attack={case.attack}"]
    return "_".join(parts).replace("/", "-") + ".json"


def run_case(
    case: Case, args: argparse.Namespace, extra: dict[str, Any], seed: int
) -> dict[str, Any]:
    """The result of one case and seed (from the cache when there)."""
    out = args.cache / run_key(case, extra, seed, args.rounds)
    if out.exists():
        return json.loads(out.read_text())
    keys = {**extra, **case.keys, "seed": seed, "num-server-rounds": args.rounds}
    config = parse_run_config({**keys, "out": str(out)})
    mods = [] if case.attack is None else ATTACKS[case.attack](args.hostile, seed)
    if config.method not in HEAD_METHODS:
        return simulate(config, runtime="inprocess", mods=mods)
    head = HeadAccuracyMod()
    result = simulate(config, runtime="inprocess", mods=[*mods, head])
    result[HEAD_KEY] = {str(a): v for a, v in sorted(head.scores.items())}
    out.write_text(json.dumps(result, indent=2))
    return result


def scores(result: dict[str, Any], hostile: int) -> list[float]:
    """Others' mean score(s) (with a shared head: also its accuracy), the
    hostile party's score, rejected uploads."""
    keys = ["accuracy"] if result["task"] == "classification" else ["acc", "nmi"]
    others = [a for a in result["agents"] if a["id"] != hostile]
    own = [a for a in result["agents"] if a["id"] == hostile]
    row = [float(np.mean([a[k] for a in others])) for k in keys]
    if HEAD_KEY in result:
        heads = result[HEAD_KEY]
        row.append(float(np.mean([heads[str(a["id"])] for a in others])))
    row.append(float(own[0][keys[0]]) if own else float("nan"))
    return row + [float(len(result.get("rejected", [])))]


def metric_names(task: str, head: bool = False) -> list[str]:
    """The names of the others' score columns (:func:`scores`)."""
    names = ["accuracy"] if task == "classification" else ["ACC", "NMI"]
    return names + (["head accuracy"] if head else [])


def references(cases: Sequence[Case]) -> dict[str, str]:
    """Each attack case's honest counterpart: the case with the same keys."""
    honest = {json.dumps(c.keys, sort_keys=True): c.name for c in cases if not c.attack}
    return {
        c.name: honest[key]
        for c in cases
        if c.attack and (key := json.dumps(c.keys, sort_keys=True)) in honest
    }


def _cells(values: np.ndarray) -> list[str]:
    """``mean ± std`` over seeds (rows) of each column."""
    std = values.std(axis=0, ddof=1) if len(values) > 1 else np.zeros_like(values[0])
    return [f"{m:+.3f} ± {s:.3f}" for m, s in zip(values.mean(0), std, strict=True)]


def table(
    rows: dict[str, list[list[float]]],
    task: str,
    reference: dict[str, str] | None = None,
    names: Sequence[str] | None = None,
) -> list[str]:
    """Markdown lines: mean ± std over seeds of each case's scores.

    ``names``: the others' score columns (default :func:`metric_names` of
    ``task``). With ``reference`` (case -> its honest counterpart), last
    columns give the paired per-seed difference of each of the others' scores
    to that case.
    """
    reference = reference or {}
    names = list(names or metric_names(task))
    head = [f"others' {n}" for n in names] + ["hostile's own", "rejected uploads"]
    head += [f"others' {n} minus honest (paired)" for n in names] if reference else []
    lines = [
        "| case | " + " | ".join(head) + " |",
        "|---" * (len(head) + 1) + "|",
    ]
    for name, values in rows.items():
        v = np.array(values)
        cells = [c.replace("+", "") for c in _cells(v)]
        cells[-1] = f"{v[:, -1].mean():.1f}"
        if reference:
            cells += _paired(v, rows.get(reference.get(name, "")), len(names))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _paired(
    values: np.ndarray, base: list[list[float]] | None, columns: int
) -> list[str]:
    """``mean ± std`` of the per-seed differences of the first ``columns``
    scores to the honest counterpart ``base`` (empty cells without one)."""
    seeds = min(len(values), len(base or []))
    if not seeds:
        return [""] * columns
    diff = values[:seeds, :columns] - np.array(base)[:seeds, :columns]
    return _cells(diff)


def run_experiments(
    names: Sequence[str], args: argparse.Namespace, extra: dict[str, Any]
) -> dict[str, list[str]]:
    """Every case of the experiments ``names`` on every seed; a table each.

    Seed by seed (all cases of seed 0 first), so a study cut short still has
    whole tables over the seeds it finished.
    """
    rows: dict[str, dict[str, list[list[float]]]] = {name: {} for name in names}
    columns = {name: metric_names("clustering") for name in names}
    for seed in args.seeds:
        for name in names:
            for case in EXPERIMENTS[name]:
                result = run_case(case, args, extra, seed)
                columns[name] = metric_names(result["task"], HEAD_KEY in result)
                row = scores(result, args.hostile)
                rows[name].setdefault(case.name, []).append(row)
                print(f"{name} | {case.name} | seed {seed}: {row}", flush=True)
    return {
        name: table(rows[name], "", references(EXPERIMENTS[name]), columns[name])
        for name in names
    }


def _parse(argv: Sequence[str] | None) -> tuple[argparse.Namespace, dict[str, str]]:
    parser = argparse.ArgumentParser(
        prog="python -m research.hostile_study", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--experiment", choices=sorted(EXPERIMENTS), nargs="+", required=True
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--hostile", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=Path("outputs/hostile"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    try:
        return args, parse_set(args.set)
    except ConfigError as err:
        parser.error(str(err))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen experiments; print one Markdown table each."""
    args, extra = _parse(argv)
    args.cache.mkdir(parents=True, exist_ok=True)
    try:
        tables = run_experiments(args.experiment, args, extra)
    except ValueError as err:  # a ConfigError or a bad attack argument
        print(f"hostile_study: error: {err}", file=sys.stderr)
        return 2
    for name, lines in tables.items():
        print(f"\n{name} ({args.rounds} rounds, seeds {args.seeds}):")
        print("\n".join(lines), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
