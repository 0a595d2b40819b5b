"""Test ACC of OTM under local DP at target epsilons, next to non-private OTM
and ``local`` (Handwritten, 5% linked records), one ``otm-flower run`` per cell.

Run as ``python -m research.privacy_sweep --out outputs/privacy`` (writes one
JSON per run and ``summary.json``; prints a Markdown table).
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import numpy as np

from otm_flower.agent import agent_anchor_ids, load_agents
from otm_flower.config import parse_run_config
from otm_flower.privacy import noise_for_epsilon
from simulations.overrides import parse_set

ANCHORED = {
    "anchor-rate": "0.05",
    "mix-frame": "own",
    "weight-mix": "1.0",
    "weight-reg": "3.0",
}


def agent_sizes(settings: dict[str, str]) -> tuple[int, int, list[tuple[int, int]]]:
    """The run's rounds, upload size and each agent's ``(n_train, n_linked)``."""
    config = parse_run_config(settings)
    agents, _ = load_agents(config)
    sizes = []
    for agent in agents:
        ids = agent_anchor_ids(agent, config)
        sizes.append((agent.n_train, 0 if ids is None else int(np.sum(ids >= 0))))
    return config.num_server_rounds, config.mix_batch_size, sizes


def calibrate(epsilon: float, settings: dict[str, str], delta: float) -> float:
    """The noise multiplier giving every agent at most ``epsilon`` after the run."""
    rounds, size, sizes = agent_sizes(settings)
    return _calibrated(epsilon, rounds, size, sizes, delta)


def _calibrated(
    epsilon: float, rounds: int, size: int, sizes: list[tuple[int, int]], delta: float
) -> float:
    return max(
        noise_for_epsilon(
            epsilon, rounds, size=size, n_train=n_train, n_linked=n_linked, delta=delta
        )
        for n_train, n_linked in sizes
    )


def sweep_cells(
    epsilons: list[float],
    clip: float,
    delta: float,
    overrides: dict[str, str],
    baselines: bool = True,
) -> list[tuple[str, str, dict[str, str]]]:
    """``(method, epsilon label, run-config settings)`` of every cell of the sweep.

    The private cells are OTM at each target epsilon, with the noise multiplier
    from :func:`calibrate` and ``overrides`` on top; the baselines (non-private
    OTM and ``local``) take no overrides. The noise is calibrated for the
    private cells' own settings, so an override of the rounds, the upload size
    or the link rate changes it.
    """
    cells: list[tuple[str, str, dict[str, str]]] = []
    if baselines:
        cells += [("otm", "off", dict(ANCHORED)), ("local", "off", {})]
    rounds, size, sizes = agent_sizes({**ANCHORED, **overrides})
    for epsilon in epsilons:
        noise = _calibrated(epsilon, rounds, size, sizes, delta)
        print(f"epsilon {epsilon}: dp-noise {noise:.4f}", flush=True)
        dp = {"dp-clip": str(clip), "dp-noise": f"{noise:.6f}", "dp-delta": str(delta)}
        cells.append(("otm", f"{epsilon:g}", {**ANCHORED, **dp, **overrides}))
    return cells


def run(method: str, seed: int, settings: dict[str, str], out: Path) -> dict:
    """One ``otm-flower run --runtime inprocess``; its result JSON."""
    sets = [a for k, v in settings.items() for a in ("--set", f"{k}={v}")]
    cmd = [
        "otm-flower", "run", "--runtime", "inprocess", "--method", method,
        "--seed", str(seed), "--out", str(out), *sets,
    ]  # fmt: skip
    print(" ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("outputs/privacy"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epsilons", type=float, nargs="+", default=[8, 4, 16, 1])
    parser.add_argument("--clip", type=float, default=3.0)
    parser.add_argument("--delta", type=float, default=1e-5)
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="run-config override for the private otm cells (e.g. term-guard=false)",
    )  # fmt: skip
    parser.add_argument(
        "--no-baselines", action="store_true",
        help="leave out the non-private otm and local cells",
    )  # fmt: skip
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    overrides = parse_set(args.overrides)
    cells = sweep_cells(
        args.epsilons, args.clip, args.delta, overrides, baselines=not args.no_baselines
    )
    summary = []
    for seed in args.seeds:
        for method, label, settings in cells:
            name = f"{method}-eps{label}-seed{seed}.json"
            result = run(method, seed, settings, args.out / name)
            privacy = result.get("privacy") or {}
            row = {
                "method": method,
                "epsilon_target": label,
                "seed": seed,
                "dp_noise": settings.get("dp-noise"),
                "acc": result["history"][-1]["acc"],
                "epsilon_max": privacy.get("epsilon_max"),
                "wall_s": result.get("wall_s"),
                "overrides": overrides if label != "off" else {},
            }
            print(json.dumps(row), flush=True)
            summary.append(row)
            (args.out / "summary.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
