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

ANCHORED = {
    "anchor-rate": "0.05",
    "mix-frame": "own",
    "weight-mix": "1.0",
    "weight-reg": "3.0",
}


def calibrate(epsilon: float, settings: dict[str, str], delta: float) -> float:
    """The noise multiplier giving every agent at most ``epsilon`` after the run."""
    config = parse_run_config(settings)
    agents, _ = load_agents(config)
    noises = []
    for agent in agents:
        ids = agent_anchor_ids(agent, config)
        n_linked = 0 if ids is None else int(np.sum(ids >= 0))
        noises.append(
            noise_for_epsilon(
                epsilon,
                config.num_server_rounds,
                size=config.mix_batch_size,
                n_train=agent.n_train,
                n_linked=n_linked,
                delta=delta,
            )
        )
    return max(noises)


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
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    cells: list[tuple[str, str, dict[str, str]]] = [
        ("otm", "off", dict(ANCHORED)),
        ("local", "off", {}),
    ]
    for epsilon in args.epsilons:
        noise = calibrate(epsilon, ANCHORED, args.delta)
        print(f"epsilon {epsilon}: dp-noise {noise:.4f}", flush=True)
        dp = {"dp-clip": str(args.clip), "dp-noise": f"{noise:.6f}"}
        dp["dp-delta"] = str(args.delta)
        cells.append(("otm", f"{epsilon:g}", {**ANCHORED, **dp}))
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
            }
            print(json.dumps(row), flush=True)
            summary.append(row)
            (args.out / "summary.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
