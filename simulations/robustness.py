"""Robustness experiments: a hostile agent that uploads scaled codes.

``python -m simulations.robustness --scale 1000 --seeds 0`` runs OTM on Handwritten
three ways (all agents honest; agent 0 uploads codes scaled by ``--scale`` with
outlier screening on; the same with screening off) and prints the other agents'
mean test ACC/NMI for each. The hostile agent is a Flower mod around agent 0's
ClientApp that rescales the codes in its replies.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from otm_flower.config import parse_run_config
from simulations.cli import simulate


def scale_codes_mod(partition: int, scale: float) -> Any:
    """A Flower mod: agent ``partition`` multiplies the codes it uploads."""

    def mod(msg: Any, context: Any, call_next: Any) -> Any:
        reply = call_next(msg, context)
        if context.node_config.get("partition-id") != partition:
            return reply
        if reply.has_error() or "otm" not in reply.content.array_records:
            return reply
        from flwr.app import Array

        record = reply.content.array_records["otm"]
        record["codes"] = Array(record["codes"].numpy() * scale)
        return reply

    return mod


def others_mean(result: dict[str, Any], hostile: int) -> tuple[float, float]:
    """Mean test ACC and NMI over every agent but ``hostile``."""
    rows = [a for a in result["agents"] if a["id"] != hostile]
    return (
        sum(a["acc"] for a in rows) / len(rows),
        sum(a["nmi"] for a in rows) / len(rows),
    )


def main(argv: list[str] | None = None) -> int:
    """Run the hostile-agent comparison and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=1000.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="otm-robustness-"))
    cases = [
        ("all honest", 10.0, None),
        ("agent 0 hostile, screening on", 10.0, 0),
        ("agent 0 hostile, screening off", 0.0, 0),
    ]
    print("| case | seed | others' ACC | others' NMI | rejected uploads |")
    print("|---|---|---|---|---|")
    for seed in args.seeds:
        for name, factor, hostile in cases:
            config = parse_run_config(
                {
                    "seed": seed,
                    "num-server-rounds": args.rounds,
                    "outlier-factor": factor,
                    "out": str(folder / f"{len(name)}-{seed}-{factor}.json"),
                }
            )
            mods = [] if hostile is None else [scale_codes_mod(hostile, args.scale)]
            result = simulate(config, mods=mods)
            acc, nmi = others_mean(result, 0)
            print(
                f"| {name} | {seed} | {acc:.3f} | {nmi:.3f} | "
                f"{len(result['rejected'])} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
