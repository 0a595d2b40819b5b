"""The Ray runtime attaches to a running Ray cluster (``RAY_ADDRESS``) with
per-agent resources set the Flower way (``client_resources``).

The test starts a one-node cluster on loopback with ``ray start --head --block``
in its own process group and stops exactly that group (never ``ray stop``, which
would stop every Ray instance of the user).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from otm_flower.config import parse_run_config
from simulations.runner import RayOptions, simulate
from tests.synthetic import clustered_views_npz

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]

RAY = Path(sys.executable).with_name("ray")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_cluster(address: str, proc: subprocess.Popen[bytes]) -> None:
    """Poll ``ray status`` until the head answers (or its process died)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"ray start exited with {proc.returncode}")
        status = subprocess.run(
            [str(RAY), "status", "--address", address],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if status.returncode == 0:
            return
        time.sleep(2)
    pytest.fail(f"Ray head at {address} did not come up within 120 s")


@pytest.fixture
def ray_head() -> Iterator[str]:
    """A 2-CPU Ray head on 127.0.0.1, stopped (its process group) afterwards."""
    if not RAY.exists():
        pytest.skip(f"no ray command next to {sys.executable}")
    port = _free_port()
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: socket path limit
    flags = ["--head", "--block", "--port", str(port), "--num-cpus", "2"]
    flags += ["--num-gpus", "0", "--node-ip-address", "127.0.0.1"]
    flags += ["--include-dashboard", "false", "--disable-usage-stats"]
    flags += ["--temp-dir", temp, "--dashboard-agent-listen-port", str(_free_port())]
    flags += ["--ray-client-server-port", str(_free_port())]
    proc = subprocess.Popen(
        [str(RAY), "start", *flags],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    address = f"127.0.0.1:{port}"
    try:
        _wait_for_cluster(address, proc)
        yield address
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        shutil.rmtree(temp, ignore_errors=True)


def test_simulation_attaches_to_a_running_cluster(
    ray_head: str, tmp_path: Path, monkeypatch
) -> None:
    import ray

    data = clustered_views_npz(
        tmp_path / "small.npz", n=120, k=3, dims=(6, 5), spread=4.0, seed=0, name="s"
    )
    config = parse_run_config(
        {
            "dataset": str(data),
            "num-server-rounds": 1,
            "local-epochs": 1,
            "hidden-dim": 16,
            "latent-dim": 4,
            "mix-batch-size": 32,
            "barycenter-iterations": 2,
            "output-dir": "",
            "out": str(tmp_path / "result.json"),
        }
    )
    monkeypatch.setenv("RAY_ADDRESS", ray_head)
    options = RayOptions(cpus_per_agent=2.0)  # one agent at a time on 2 CPUs
    assert options.backend_config()["init_args"]["address"] == ray_head
    result = simulate(config, runtime="ray", ray=options)

    assert json.loads((tmp_path / "result.json").read_text()) == result
    assert [a["id"] for a in result["agents"]] == [0, 1]
    ray.init(address=ray_head)
    try:
        jobs = ray._private.state.jobs()
        nodes = [n for n in ray.nodes() if n["Alive"]]
    finally:
        ray.shutdown()
    assert len(jobs) >= 2, "the simulation's driver did not join the cluster"
    assert [n["Resources"].get("CPU") for n in nodes] == [2.0]
