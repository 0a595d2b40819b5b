"""A deployed run survives its server and a party restarting, and a party dying.

A loopback SuperLink (its state in a database file) and one warm SuperNode per
agent (:mod:`clients.supernode`, :mod:`clients.warm_exec`) run three rounds
with ``checkpoint-dir`` and ``rejoin-timeout``. As round 2 starts, party 0's
SuperNode is killed and started again while the SuperLink and ServerApp keep
running: it connects as a new node, the server recognises it by its agent id
and sends it the party's round-2 message again (whichever phase the kill cut
short), and the party continues from its node-local checkpoint. As round 3
starts, the SuperLink with its ServerApp and party 1's SuperNode are killed
(whole process groups); both are started again, the SuperLink on the same
database and port, and the run is submitted again with ``resume=true``: the
server continues from its round-2 checkpoint, every party from its own
node-local one. As the resumed round 3 starts, party 2's SuperNode dies for
good: the run still completes with the others.

The first two rounds' metrics equal the same run's uninterrupted (same seed,
the in-process runtime), and parties 0 and 1 end with exactly its final
metrics: a party's round-3 scores depend on its own training with the targets
mixed in round 2, not on who replies in round 3. Party 2's last report (round
2) is kept, equal to the uninterrupted run's after two rounds.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from otm_flower.config import parse_run_config
from simulations.runner import simulate_inprocess
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

pytestmark = pytest.mark.slow
AGENTS = 3
SETTINGS = {
    "num-server-rounds": 3,
    "num-agents": AGENTS,
    "n-clusters": 10,
    "local-epochs": 1,
    "latent-dim": 8,
    "hidden-dim": 32,
    "mix-batch-size": 64,
    "barycenter-iterations": 2,
    "round-timeout": 120,
    "output-dir": "",
    "diagnostics-dir": "",
}


def run_config(values: dict) -> str:
    return " ".join(
        f'{k}="{v}"' if isinstance(v, str) else f"{k}={str(v).lower()}"
        for k, v in values.items()
    )


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    processes = Processes(flwr_env(tmp_path, OMP_NUM_THREADS="1"), tmp_path)
    try:
        yield processes
    finally:
        processes.stop_all()


def start_node(procs: Processes, i: int, port: int, data: Path) -> list:
    config = f'partition-id={i} num-partitions={AGENTS} dataset="{data}"'
    return start_supernode(procs, f"node{i}", f"{LOCALHOST}:{port}", config)


def kill_at(
    procs: Processes,
    marker: str,
    doomed: list[subprocess.Popen],
    then: Callable[[], object] | None = None,
):
    """A line callback that ends ``doomed`` when a line holds ``marker`` (and
    then calls ``then``)."""

    def on_line(line: str) -> None:
        if marker in line and not on_line.fired:  # type: ignore[attr-defined]
            on_line.fired = True  # type: ignore[attr-defined]
            for proc in doomed:
                procs.stop(proc)
            if then is not None:
                then()

    on_line.fired = False  # type: ignore[attr-defined]
    return on_line


def both(*callbacks: Callable[[str], None]) -> Callable[[str], None]:
    def on_line(line: str) -> None:
        for callback in callbacks:
            callback(line)

    return on_line


def in_process(values: dict) -> dict:
    """The run's result in the in-process runtime (uninterrupted)."""
    result, _ = simulate_inprocess(parse_run_config(values))
    return result


def test_run_resumes_after_restarts_and_survives_a_dead_party(
    procs: Processes, tmp_path: Path
) -> None:
    data = small_views(tmp_path / "agents.npz", views=(3, 1, 2), n=240, seed=1)
    folder = tmp_path / "checkpoints"
    values = {**SETTINGS, "dataset": str(data), "checkpoint-dir": str(folder)}
    port, database = free_port(), str(tmp_path / "superlink.db")
    link = start_superlink(procs, port, "--database", database)
    nodes = [start_node(procs, i, port, data) for i in range(AGENTS)]
    cli_config(procs.env, port)
    wait_for_port(port)
    time.sleep(3)

    first = {**values, "rejoin-timeout": 90.0, "out": str(tmp_path / "first.json")}
    restart = kill_at(
        procs, "[ROUND 2/3]", nodes[0], lambda: start_node(procs, 0, port, data)
    )
    killer = kill_at(procs, "[ROUND 3/3]", [link, *nodes[1]])
    _, output = stream_run(procs, run_config(first), both(restart, killer), 400)
    assert restart.fired and killer.fired, output[-3000:]
    assert "agent 0 left node" in output or "agent 0 is back" in output, output
    assert json.loads((folder / "server.json").read_text())["meta"]["round"] == 2
    assert not (tmp_path / "first.json").exists()

    start_superlink(procs, port, "--database", database, name="superlink-again")
    start_node(procs, 1, port, data)
    wait_for_port(port)
    time.sleep(3)
    resumed = {**values, "resume": True, "out": str(tmp_path / "resumed.json")}
    dies = kill_at(procs, "[ROUND 1/1]", nodes[2])  # party 2, for good
    rc, output = stream_run(procs, run_config(resumed), dies, timeout=400)
    assert rc == 0, output[-3000:]
    assert dies.fired and "resuming after round 2" in output, output[-3000:]
    result = json.loads((tmp_path / "resumed.json").read_text())

    full = in_process({**SETTINGS, "dataset": str(data)})
    two_rounds = in_process({**SETTINGS, "dataset": str(data), "num-server-rounds": 2})
    assert [h["round"] for h in result["history"]] == [1, 2, 3]
    for a, b in zip(full["history"][:2], result["history"][:2], strict=True):
        for key in ("acc", "nmi", "ari"):
            assert a[key] == pytest.approx(b[key], abs=1e-9), (a, b)
    agents = {a["id"]: a for a in result["agents"]}
    expected = {a["id"]: a for a in full["agents"]}
    assert agents[0] == expected[0] and agents[1] == expected[1]  # as uninterrupted
    assert agents[2]["round"] == 2  # the dead party's last report is kept
    assert agents[2] == {a["id"]: a for a in two_rounds["agents"]}[2]
