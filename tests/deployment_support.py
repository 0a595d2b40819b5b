"""Processes and party files for the Deployment Runtime tests and benchmark.

Every process starts in its own session (``start_new_session``) with its output
in ``<folder>/<name>.log``; :meth:`Processes.stop` ends its whole process group
(SIGTERM, then SIGKILL), and :meth:`Processes.stop_all` every group started,
which the fixtures call also on failure.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from otm_flower.data import MultiViewDataset, load_dataset, save_npz

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LOCALHOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOCALHOST, 0))
        return int(sock.getsockname()[1])


def flwr_env(folder: Path, **extra: str) -> dict[str, str]:
    """The environment of a federation: ``FLWR_HOME`` in ``folder``, no
    per-run dependency installation, no telemetry."""
    return {
        **os.environ,
        "FLWR_HOME": str(folder / "flwr-home"),
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
        "FLWR_TELEMETRY_ENABLED": "0",
        **extra,
    }


class Processes:
    """Starts processes in their own sessions and ends their whole groups."""

    def __init__(self, env: dict[str, str], folder: Path) -> None:
        self.env, self.folder = env, folder
        self.procs: list[subprocess.Popen] = []

    def log(self, name: str) -> Path:
        return self.folder / f"{name}.log"

    def start(self, name: str, *args: str) -> subprocess.Popen:
        """Start ``args`` (a command of this venv's ``bin``, or ``python``)."""
        program = sys.executable if args[0] == "python" else str(BIN / args[0])
        with self.log(name).open("a") as log:
            proc = subprocess.Popen(
                [program, *args[1:]],
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen) -> None:
        """End ``proc``'s process group: SIGTERM, SIGKILL after 10 s."""
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def stop_all(self) -> None:
        """End every group started: SIGTERM to all, then SIGKILL to the groups
        still running after 10 s."""
        for proc in reversed(self.procs):
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 10
        for proc in self.procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for proc in self.procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(10)


def wait_for_port(port: int, timeout: float = 90.0) -> None:
    """Block until something accepts connections on ``port`` (slow when loaded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(1.0)
            if sock.connect_ex((LOCALHOST, port)) == 0:
                return
        time.sleep(0.5)
    raise TimeoutError(f"nothing opened port {port} in {timeout:.0f} s")


def wait_for_log(path: Path, needle: str | tuple[str, ...], timeout: float) -> str:
    """The log at ``path`` once it holds ``needle`` (or one of several;
    AssertionError after ``timeout`` s)."""
    needles = (needle,) if isinstance(needle, str) else needle
    deadline = time.monotonic() + timeout
    while True:
        text = path.read_text(errors="replace") if path.exists() else ""
        if any(n in text for n in needles):
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"{needle!r} not in {path.name}:\n{text[-3000:]}")
        time.sleep(1.0)


# The federation -------------------------------------------------------------


def start_superlink(
    procs: Processes, port: int, *extra: str, name: str = "superlink"
) -> subprocess.Popen:
    """An insecure loopback SuperLink serving its APIs on ``port``."""
    return procs.start(
        name, "flower-superlink", "--insecure", "--port", str(port), *extra
    )


def start_supernode(
    procs: Processes, name: str, fleet: str, node_config: str, *, warm: bool = True
) -> list[subprocess.Popen]:
    """A SuperNode towards ``fleet``; the processes started.

    ``warm``: the SuperNode with short polls (:mod:`clients.supernode`) and
    ``--isolation process``, beside its warm executor (:mod:`clients.warm_exec`);
    otherwise Flower's ``flower-supernode`` with its own executor.
    """
    runtime = free_port()
    args = ["--insecure", "--superlink", fleet, "--port", str(runtime)]
    args += ["--node-config", node_config]
    if not warm:
        return [procs.start(name, "flower-supernode", *args)]
    launcher = ["python", "-m", "clients.supernode", "--isolation", "process"]
    node = procs.start(name, *launcher, *args)
    executor = procs.start(
        f"{name}-exec",
        "python",
        "-m",
        "clients.warm_exec",
        "--runtime-api-address",
        f"{LOCALHOST}:{runtime}",
        "--insecure",
        "--parent-pid",
        str(node.pid),
    )
    return [node, executor]


def cli_config(env: dict[str, str], port: int) -> None:
    """The Flower CLI's ``config.toml``: connection ``test`` to ``port``."""
    home = Path(env["FLWR_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(
        '[superlink]\ndefault = "test"\n\n'
        f'[superlink.test]\naddress = "{LOCALHOST}:{port}"\ninsecure = true\n'
    )


def flwr_run_command(run_config: str, connection: str = "test") -> list[str]:
    """``flwr run`` of this app on ``connection``, streaming its logs."""
    return [str(BIN / "flwr"), "run", str(ROOT), connection, "--stream"] + [
        "--run-config",
        run_config,
    ]


def stream_run(
    procs: Processes,
    run_config: str,
    on_line: Callable[[str], None] | None = None,
    timeout: float = 600.0,
) -> tuple[int, str]:
    """``flwr run`` with ``on_line`` called on each streamed line; its exit
    status and output (killed after ``timeout`` s)."""
    flwr = subprocess.Popen(
        flwr_run_command(run_config),
        env=procs.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    procs.procs.append(flwr)
    watchdog = threading.Timer(timeout, procs.stop, args=(flwr,))
    watchdog.start()
    lines = []
    try:
        assert flwr.stdout is not None
        for line in flwr.stdout:
            lines.append(line)
            if on_line is not None:
                on_line(line)
        return flwr.wait(timeout=60), "".join(lines)
    finally:
        watchdog.cancel()


# Party files ----------------------------------------------------------------


@dataclass
class Party:
    """One party's own files and node-local model folder."""

    train: Path
    test: Path
    model_dir: Path
    labelled: bool
    party_id: int

    def node_config(self, secret: Path) -> str:
        config = (
            f'data-path="{self.train}" test-path="{self.test}" '
            f'key-column="record_key" model-dir="{self.model_dir}" '
            f'link-secret-file="{secret}" party-id={self.party_id}'
        )
        return config + (' label-column="label"' if self.labelled else "")


def small_views(path: Path, views: tuple[int, ...], n: int, seed: int) -> Path:
    """``n`` Handwritten samples of some of its views, as one multi-view file."""
    full = load_dataset("handwritten")
    rows = np.random.default_rng(seed).permutation(full.n_samples)[:n]
    data = MultiViewDataset(
        "hw-small",
        [np.asarray(full.views[v])[rows] for v in views],
        full.labels[rows],
        [full.view_names[v] for v in views],
    )
    return save_npz(data, path)


def split_into_parties(data: Path, out: Path, link_rate: float) -> Path:
    """``otm-flower split`` of ``data`` into CSV party folders; the secret file."""
    from simulations.split import main as split_main

    args = ["--dataset", str(data), "--out", str(out), "--format", "csv"]
    args += ["--link-rate", str(link_rate), "--test-fraction", "0.2", "--seed", "0"]
    assert split_main(args) == 0
    secrets = [p for p in out.iterdir() if p.is_file() and "secret" in p.name]
    assert len(secrets) == 1, sorted(p.name for p in out.iterdir())
    return secrets[0]


def read_table(path: Path) -> pd.DataFrame:
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, dtype={"record_key": str})


def as_parquet(csv: Path) -> Path:
    """The CSV file rewritten as Parquet (pandas + pyarrow) beside it."""
    parquet = csv.with_suffix(".parquet")
    read_table(csv).to_parquet(parquet, index=False)
    csv.unlink()
    return parquet


def without_labels(csv: Path) -> Path:
    """The CSV file with its ``label`` column removed (a party with no labels)."""
    read_table(csv).drop(columns=["label"]).to_csv(csv, index=False)
    return csv


def prepare_parties(out: Path) -> list[Party]:
    """Party 0 in CSV, party 1 in Parquet, party 2 in CSV without labels."""
    parties = []
    for i in range(3):
        folder = out / f"party-{i}"
        train, test = folder / "train.csv", folder / "test.csv"
        if i == 1:
            train, test = as_parquet(train), as_parquet(test)
        if i == 2:
            train, test = without_labels(train), without_labels(test)
        parties.append(Party(train, test, out / f"model-{i}", i != 2, party_id=i))
    return parties
