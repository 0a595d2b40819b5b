"""Per-round wall time: the Deployment Runtime against the in-process runtime.

The same run config and data (``--views`` of Handwritten, ``--rows`` samples,
one agent per view, quick settings; or ``--embedded-default``: the six views,
all rows, the run-config defaults) run three ways, side by side, ``--repeat``
times each:

``simulated``
    :func:`simulations.runner.simulate_inprocess` (ServerApp and ClientApp in
    this process, messages serialised to Flower's wire format and back).
``deployed-cold``
    A loopback SuperLink and one SuperNode per agent with Flower's default
    isolation: one fresh ``flwr-clientapp`` process per message.
``deployed-warm``
    The same SuperNodes with ``--isolation process`` and the warm executor
    :mod:`clients.warm_exec` (one fork of a preloaded process per message).

A round's wall time is the time from ``[ROUND 1/N]`` to the written result,
divided by N (so both runtimes count the same work). Prints one JSON line per
run and a table of medians. Run ``python -m tests.bench_deployment --help``.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.deployment_support import (
    LOCALHOST,
    Processes,
    cli_config,
    flwr_env,
    free_port,
    small_views,
    start_superlink,
    start_supernode,
    stream_run,
    wait_for_port,
)

QUICK = {
    "local-epochs": 1,
    "latent-dim": 8,
    "hidden-dim": 32,
    "mix-batch-size": 64,
    "barycenter-iterations": 2,
    "n-clusters": 10,
    "output-dir": "",
    "round-timeout": 300,
}


def settings(
    data: Path | str, rounds: int, agents: int, out: Path, *, quick: bool = True
) -> dict[str, Any]:
    """The run config: :data:`QUICK` (or the run-config defaults) on ``data``."""
    base = QUICK if quick else {"output-dir": "", "round-timeout": 600}
    return {
        **base,
        "num-server-rounds": rounds,
        "num-agents": agents,
        "dataset": str(data),
        "out": str(out),
    }


def as_run_config(values: dict[str, Any]) -> str:
    return " ".join(
        f'{k}="{v}"' if isinstance(v, str) else f"{k}={v}" for k, v in values.items()
    )


class RoundClock(logging.Handler):
    """Times Flower's ``[ROUND i/n]`` log lines and the written result."""

    def __init__(self) -> None:
        super().__init__()
        self.start: float | None = None
        self.end: float | None = None

    def see(self, text: str) -> None:
        if "[ROUND 1/" in text and self.start is None:
            self.start = time.monotonic()
        if "result written" in text:
            self.end = time.monotonic()

    def emit(self, record: logging.LogRecord) -> None:
        self.see(record.getMessage())

    def per_round(self, rounds: int) -> float:
        if self.start is None or self.end is None:
            raise RuntimeError("the run logged no [ROUND 1/..] or no result line")
        return (self.end - self.start) / rounds


def simulated(values: dict[str, Any]) -> float:
    """Seconds per round in the in-process runtime."""
    from otm_flower.config import parse_run_config
    from simulations.runner import simulate_inprocess

    clock = RoundClock()
    logger = logging.getLogger("flwr")
    logger.addHandler(clock)
    try:
        simulate_inprocess(parse_run_config(values))
    finally:
        logger.removeHandler(clock)
    return clock.per_round(int(values["num-server-rounds"]))


def deployed(values: dict[str, Any], folder: Path, *, warm: bool) -> float:
    """Seconds per round on a loopback SuperLink with one SuperNode per agent."""
    procs = Processes(flwr_env(folder, OMP_NUM_THREADS="1"), folder)
    try:
        port = free_port()
        start_superlink(procs, port)
        for i in range(int(values["num-agents"])):
            node = f"partition-id={i} num-partitions={values['num-agents']}"
            node += f' dataset="{values["dataset"]}"'
            start_supernode(procs, f"node{i}", f"{LOCALHOST}:{port}", node, warm=warm)
        cli_config(procs.env, port)
        wait_for_port(port)
        time.sleep(3)
        clock = RoundClock()
        rc, output = stream_run(procs, as_run_config(values), clock.see)
        if rc != 0:
            raise RuntimeError(f"flwr run failed ({rc}):\n{output[-3000:]}")
        return clock.per_round(int(values["num-server-rounds"]))
    finally:
        procs.stop_all()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench_deployment")
    parser.add_argument("--rows", type=int, default=300)
    parser.add_argument("--views", default="3,1,2")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--modes", default="simulated,deployed-cold,deployed-warm")
    parser.add_argument(
        "--embedded-default",
        action="store_true",
        help="the embedded default instead: Handwritten's 6 views, all rows, the "
        "run-config defaults (--rows, --views and the quick settings unused)",
    )
    args = parser.parse_args(argv)
    views = tuple(int(v) for v in args.views.split(","))
    agents = 6 if args.embedded_default else len(views)
    runs: dict[str, list[float]] = {m: [] for m in args.modes.split(",")}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data: Path | str = "handwritten"
        if not args.embedded_default:
            data = small_views(folder / "data.npz", views, args.rows, seed=0)
        for rep in range(args.repeat):
            for mode in runs:
                work = folder / f"{mode}-{rep}"
                work.mkdir()
                out = work / "result.json"
                values = settings(
                    data, args.rounds, agents, out, quick=not args.embedded_default
                )
                if mode == "simulated":
                    seconds = simulated(values)
                else:
                    seconds = deployed(values, work, warm=mode == "deployed-warm")
                runs[mode].append(seconds)
                print(json.dumps({"mode": mode, "repeat": rep, "s_per_round": seconds}))
    base = statistics.median(runs["simulated"]) if "simulated" in runs else None
    print("| mode | s/round (median) | runs | x simulated |\n|---|---|---|---|")
    for mode, values in runs.items():
        median = statistics.median(values)
        ratio = f"{median / base:.2f}" if base else "-"
        shown = ", ".join(f"{v:.1f}" for v in values)
        print(f"| {mode} | {median:.2f} | {shown} | {ratio} |")


if __name__ == "__main__":
    main()
