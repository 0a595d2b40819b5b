"""Per-round wall time: the Deployment Runtime against the in-process runtime.

The same run config and data (``--views`` of Handwritten, ``--rows`` samples,
one agent per view, quick settings; or ``--embedded-default``: the six views,
all rows, the run-config defaults) run three ways, side by side, ``--repeat``
times each:

``simulated``
    :func:`simulations.runner.simulate_inprocess` (ServerApp and ClientApp in
    one fresh process per run, messages serialised to Flower's wire format and
    back).
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
import os
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
        self.cpu_start = self.cpu_end = 0.0

    def see(self, text: str) -> None:
        if "[ROUND 1/" in text and self.start is None:
            self.start, self.cpu_start = time.monotonic(), time.process_time()
        if "result written" in text:
            self.end, self.cpu_end = time.monotonic(), time.process_time()

    def emit(self, record: logging.LogRecord) -> None:
        self.see(record.getMessage())

    def per_round(self, rounds: int) -> float:
        if self.start is None or self.end is None:
            raise RuntimeError("the run logged no [ROUND 1/..] or no result line")
        return (self.end - self.start) / rounds


def simulated(values: dict[str, Any]) -> tuple[float, dict[str, float]]:
    """:func:`simulated_here` in a fresh interpreter: every run starts cold, as a
    ``flwr run`` does (no data or library state left by an earlier repeat)."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(simulated_here, (values,))


def simulated_here(values: dict[str, Any]) -> tuple[float, dict[str, float]]:
    """Seconds per round in the in-process runtime, and this process's CPU
    seconds per round over the same rounds (``process``)."""
    from otm_flower.config import parse_run_config
    from simulations.runner import simulate_inprocess

    clock = RoundClock()
    logger = logging.getLogger("flwr")
    logger.addHandler(clock)
    try:
        simulate_inprocess(parse_run_config(values))
    finally:
        logger.removeHandler(clock)
    rounds = int(values["num-server-rounds"])
    seconds = clock.per_round(rounds)
    return seconds, {"process": (clock.cpu_end - clock.cpu_start) / rounds}


def start_federation(
    procs: Processes, values: dict[str, Any], *, warm: bool = True
) -> dict[str, list[int]]:
    """A loopback SuperLink and one SuperNode per agent of ``values``, ready for
    ``flwr run``; the process ids by role (``superlink``, ``nodes``, and with
    ``warm`` their ``executors``)."""
    port = free_port()
    roles: dict[str, list[int]] = {"superlink": [start_superlink(procs, port).pid]}
    agents = int(values["num-agents"])
    for i in range(agents):
        node = f'partition-id={i} num-partitions={agents} dataset="{values["dataset"]}"'
        started = start_supernode(
            procs, f"node{i}", f"{LOCALHOST}:{port}", node, warm=warm
        )
        for role, proc in zip(("nodes", "executors"), started, strict=False):
            roles.setdefault(role, []).append(proc.pid)
    cli_config(procs.env, port)
    wait_for_port(port)
    return roles


def deployed(
    values: dict[str, Any], folder: Path, *, warm: bool
) -> tuple[float, dict[str, float]]:
    """Seconds per round on a loopback SuperLink with one SuperNode per agent,
    and the CPU seconds per round of its processes by role over the same rounds
    (``superlink``; ``nodes`` and ``executors`` summed over agents; ``messages``:
    the warm executors' reaped children, one per message handled; Flower's own
    executor, without ``warm``, is not counted)."""
    procs = Processes(flwr_env(folder, OMP_NUM_THREADS="1"), folder)
    try:
        roles = start_federation(procs, values, warm=warm)
        time.sleep(3)
        clock, snaps = RoundClock(), []

        def see(line: str) -> None:
            clock.see(line)
            if ("[ROUND 1/" in line and not snaps) or "result written" in line:
                snaps.append(_cpu_by_role(roles))

        rc, output = stream_run(procs, as_run_config(values), see)
        if rc != 0:
            raise RuntimeError(f"flwr run failed ({rc}):\n{output[-3000:]}")
        rounds = int(values["num-server-rounds"])
        seconds = clock.per_round(rounds)  # raises when a line was missing
        cpu = {k: (snaps[-1][k] - snaps[0][k]) / rounds for k in snaps[0]}
        return seconds, cpu
    finally:
        procs.stop_all()


def _cpu_by_role(roles: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds so far of each role's processes, and of the executors'
    reaped children as ``messages``."""
    cpu = {role: _cpu_seconds(pids) for role, pids in roles.items()}
    cpu["messages"] = _cpu_seconds(roles.get("executors", []), reaped=True)
    return cpu


def _cpu_seconds(pids: list[int], *, reaped: bool = False) -> float:
    """User + system CPU seconds of the processes ``pids`` (those still alive),
    or with ``reaped`` of their children that have exited and been waited for."""
    first = 13 if reaped else 11
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[first]) + int(fields[first + 1])
    return ticks / os.sysconf("SC_CLK_TCK")


def idle_cpu(
    values: dict[str, Any], folder: Path, settle: float = 25.0, span: float = 10.0
) -> float:
    """Cores kept busy by an idle loopback federation (a SuperLink and one warm
    SuperNode with its executor per agent of ``values``, no run): CPU seconds
    of its processes over ``span`` seconds, after ``settle`` seconds of start-up."""
    procs = Processes(flwr_env(folder, OMP_NUM_THREADS="1"), folder)
    try:
        roles = start_federation(procs, values)
        time.sleep(settle)
        pids = [pid for role in roles.values() for pid in role]
        before = _cpu_seconds(pids)
        time.sleep(span)
        return (_cpu_seconds(pids) - before) / span
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
    parser.add_argument(
        "--idle",
        action="store_true",
        help="only measure the cores an idle federation of as many warm "
        "SuperNodes keeps busy (no run)",
    )
    args = parser.parse_args(argv)
    views = tuple(int(v) for v in args.views.split(","))
    agents = 6 if args.embedded_default else len(views)
    if args.idle:
        with tempfile.TemporaryDirectory() as tmp:
            idle = settings("handwritten", 1, agents, Path(tmp) / "result.json")
            cores = idle_cpu(idle, Path(tmp))
        print(f"idle federation of {agents} warm SuperNodes: {cores:.2f} cores busy")
        return
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
                    seconds, cpu = simulated(values)
                else:
                    seconds, cpu = deployed(values, work, warm=mode == "deployed-warm")
                runs[mode].append(seconds)
                cpu = {k: round(v, 2) for k, v in cpu.items()}
                row = {"mode": mode, "repeat": rep, "cpu_s_per_round": cpu}
                print(json.dumps({**row, "s_per_round": seconds}))
    base = statistics.median(runs["simulated"]) if "simulated" in runs else None
    print("| mode | s/round (median) | runs | x simulated |\n|---|---|---|---|")
    for mode, values in runs.items():
        median = statistics.median(values)
        ratio = f"{median / base:.2f}" if base else "-"
        shown = ", ".join(f"{v:.1f}" for v in values)
        print(f"| {mode} | {median:.2f} | {shown} | {ratio} |")


if __name__ == "__main__":
    main()
