"""The app under Flower's Deployment Runtime: a real SuperLink and SuperNodes.

Every process runs in its own session on loopback (insecure mode, tests only), with
``FLWR_HOME`` in a temporary folder; all of them are stopped, also on failure.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from otm_flower.data import MultiViewDataset, load_dataset, save_npz

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Processes:
    """Starts processes in their own sessions and ends their whole groups."""

    def __init__(self, env: dict[str, str], folder: Path) -> None:
        self.env, self.folder, self.procs = env, folder, []

    def start(self, name: str, *args: str) -> subprocess.Popen:
        log = (self.folder / f"{name}.log").open("w")
        proc = subprocess.Popen(
            [str(BIN / args[0]), *args[1:]],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            try:
                self.stop(proc)
            except ProcessLookupError:
                pass


@pytest.fixture
def federation(tmp_path: Path) -> Iterator[tuple[Processes, dict[str, str], int]]:
    env = {
        **os.environ,
        "FLWR_HOME": str(tmp_path / "flwr-home"),
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
    }
    procs = Processes(env, tmp_path)
    port = free_port()
    try:
        yield procs, env, port
    finally:
        procs.stop_all()


def small_two_view_set(path: Path) -> Path:
    """400 samples of two Handwritten views (mor, fou) as one agent's data file."""
    full = load_dataset("handwritten")
    rows = np.random.default_rng(0).permutation(full.n_samples)[:400]
    views = [np.asarray(full.views[3])[rows], np.asarray(full.views[1])[rows]]
    data = MultiViewDataset("hw-small", views, full.labels[rows], ["mor", "fou"])
    return save_npz(data, path)


def start_federation(
    procs: Processes, env: dict[str, str], port: int, data: Path, num_agents: int
) -> list[subprocess.Popen]:
    """A SuperLink, one SuperNode per agent, and a CLI config named ``test``."""
    procs.start("superlink", "flower-superlink", "--insecure", "--port", str(port))
    nodes = []
    for pid in range(num_agents):
        node_config = f'partition-id={pid} num-partitions={num_agents} dataset="{data}"'
        nodes.append(
            procs.start(
                f"supernode{pid}",
                "flower-supernode",
                "--insecure",
                "--superlink",
                f"127.0.0.1:{port}",
                "--port",
                str(free_port()),
                "--node-config",
                node_config,
            )
        )
    home = Path(env["FLWR_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(
        '[superlink]\ndefault = "test"\n\n'
        f'[superlink.test]\naddress = "127.0.0.1:{port}"\ninsecure = true\n'
    )
    wait_for_port(port)
    time.sleep(3)  # and let the SuperNodes register
    return nodes


def wait_for_port(port: int, timeout: float = 90.0) -> None:
    """Block until the SuperLink accepts connections on ``port`` (slow when loaded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(1.0)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise TimeoutError(f"the SuperLink did not open port {port} in {timeout:.0f} s")


def flwr_run_command(run_config: str) -> list[str]:
    """``flwr run`` of this app on the ``test`` connection, streaming its logs."""
    return [
        str(BIN / "flwr"),
        "run",
        str(ROOT),
        "test",
        "--stream",
        "--run-config",
        run_config,
    ]


def test_superlink_and_supernodes_run_the_app(federation, tmp_path: Path) -> None:
    procs, env, port = federation
    data = small_two_view_set(tmp_path / "agent-data.npz")
    start_federation(procs, env, port, data, num_agents=2)
    out = tmp_path / "result.json"
    run_config = (
        f"num-server-rounds=2 num-agents=2 local-epochs=1 latent-dim=8 "
        f"hidden-dim=32 mix-batch-size=64 barycenter-iterations=2 "
        f'round-timeout=120 output-dir="" out="{out}"'
    )
    flwr = subprocess.run(
        flwr_run_command(run_config),
        env=env,
        capture_output=True,
        text=True,
        timeout=420,
    )
    logs = flwr.stdout + flwr.stderr
    assert flwr.returncode == 0, logs[-3000:]
    assert out.exists(), logs[-3000:]
    result = json.loads(out.read_text())
    assert [a["id"] for a in result["agents"]] == [0, 1]
    for agent in result["agents"]:
        assert agent["round"] == 2 and 0.0 < agent["acc"] <= 1.0
        assert agent["n_train"] == 320 and agent["n_test"] == 80
    assert result["bytes_up"] == 2 * 2 * 64 * 8 * 4


def test_run_completes_when_a_supernode_is_killed(federation, tmp_path: Path) -> None:
    procs, env, port = federation
    full = load_dataset("handwritten")
    rows = np.random.default_rng(1).permutation(full.n_samples)[:300]
    views = [np.asarray(full.views[v])[rows] for v in (3, 1, 2)]
    data = save_npz(
        MultiViewDataset("hw-3", views, full.labels[rows], ["mor", "fou", "kar"]),
        tmp_path / "d.npz",
    )
    nodes = start_federation(procs, env, port, data, num_agents=3)
    out = tmp_path / "result.json"
    run_config = (
        f"num-server-rounds=4 num-agents=3 local-epochs=1 latent-dim=8 "
        f"hidden-dim=32 mix-batch-size=64 barycenter-iterations=2 "
        f'round-timeout=40 output-dir="" out="{out}"'
    )
    flwr = subprocess.Popen(
        flwr_run_command(run_config),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    procs.procs.append(flwr)
    watchdog = threading.Timer(600, procs.stop, args=(flwr,))  # never hang CI
    watchdog.start()
    lines = []
    try:
        assert flwr.stdout is not None
        for line in flwr.stdout:
            lines.append(line)
            if "[ROUND 2/4]" in line:
                procs.stop(nodes[2])  # agent 2's SuperNode dies mid-run
    finally:
        watchdog.cancel()
    assert flwr.wait(timeout=60) == 0, "".join(lines)[-3000:]
    result = json.loads(out.read_text())
    agents = {a["id"]: a for a in result["agents"]}
    assert sorted(agents) == [0, 1, 2]
    assert agents[0]["round"] == 4 and agents[1]["round"] == 4  # the others finished
    assert agents[2]["round"] < 4  # the dead agent's last report is kept
