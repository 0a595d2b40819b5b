"""A warm executor for a SuperNode started with ``--isolation process``.

Flower's own executor (``flower-superexec``) starts a fresh ``flwr-clientapp``
process for every message the SuperNode receives, and each one imports torch,
scikit-learn, pandas and SciPy again before it handles its message. This
executor imports them once and then forks one child per message: the child
runs Flower's own ``run_clientapp`` (the ClientApp call, the reply), so every
message still gets a fresh process with its own memory, only without the import
cost; a FAB already installed is not unpacked and checked again
(:func:`install_once`), and the app of the newest installed FAB is imported
before the fork (:mod:`clients.warm_app`).

Start it beside the SuperNode, pointed at the SuperNode's Runtime API::

    flower-supernode --isolation process --port 9094 ...
    python -m clients.warm_exec --runtime-api-address 127.0.0.1:9094 --insecure

It stops when the SuperNode does (``--parent-pid``) or on SIGTERM. The
children keep the party's prepared data in a node-local cache
(:mod:`clients.node_cache`, ``--cache-dir``), so only the first message reads
and preprocesses the party's files.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import importlib
import os
import signal
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import warm_app  # one module object: its state outlives sys.modules resets
from .backoff import Backoff, backoff_time
from .doorbell import Doorbell, doorbell_path
from .fork_priming import prime_caches
from .node_cache import CACHE_ENV

#: Modules the ClientApp imports on every message, imported once before forking.
WARM_MODULES = (
    "torch",
    "torch._dynamo",  # imported by torch on its first manual_seed (seconds)
    "torch.nn.functional",
    "numpy",
    "pandas",
    "pyarrow.parquet",
    "scipy.io",
    "scipy.sparse",
    "scipy.stats",
    "scipy.optimize",
    "sklearn.cluster",
    "sklearn.linear_model",
    "sklearn.metrics",
    "sklearn.model_selection",
    "sklearn.preprocessing",
    "sklearn.feature_extraction.text",
    "ot",
    "dp_accounting",
    "flwr.app",
    "flwr.clientapp",
    "flwr.supernode.runtime.run_clientapp",
)


#: Longest wait between the executor's task polls (Flower's fixed wait is 1 s);
#: 0.05 s after a task starts or a child exits, doubling while idle
#: (:class:`clients.backoff.Backoff`), cut short by the SuperNode's doorbell.
POLL_SECONDS = "0.5"
POLL_ENV = "FLWR_SUPEREXEC_TASK_POLL_INTERVAL"


def preload(modules: Sequence[str] = WARM_MODULES) -> list[str]:
    """Import ``modules`` (those installed); return the ones imported.

    No tensor operation runs here: a fork of a process whose OpenMP thread
    pool has started can hang, so the pools start in each child.
    """
    loaded = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            continue
        loaded.append(name)
    return loaded


class ForkExecutor:
    """A SuperExec executor that forks this (warm) process for each ClientApp task.

    Other task types go to Flower's :class:`SubprocessExecutor`. ``backoff``
    (the executor's task polls) is reset when a child starts or exits.
    """

    def __init__(self, backoff: Backoff | None = None) -> None:
        from flwr.supercore.superexec.executor.subprocess_executor import (
            SubprocessExecutor,
        )

        self.fallback = SubprocessExecutor()
        self.children: set[int] = set()
        self.backoff = backoff

    def get_eligible_capacity(self, supported_task_types: set[Any], **kwargs: Any):
        """Every task type can start at once (no pool to wait for)."""
        return self.fallback.get_eligible_capacity(supported_task_types, **kwargs)

    def wait_for_capacity(self, *args: Any, **kwargs: Any) -> None:
        """Return at once: forking has no capacity limit."""

    def launch(self, spec: Any) -> Any:
        """Fork a child that runs the ClientApp task ``spec`` and exits."""
        from flwr.supercore.constant import TaskType
        from flwr.supercore.superexec.executor.types import LaunchResult

        if spec.task_type != TaskType.CLIENT_APP:
            return self.fallback.launch(spec)
        _warm_newest_app()
        gc.freeze()  # the children then copy fewer of this process's pages
        pid = os.fork()
        if pid == 0:
            _run_child(spec)  # never returns
        self.children.add(pid)
        self._activity()
        return LaunchResult.accepted()

    def _activity(self) -> None:
        if self.backoff is not None:
            self.backoff.reset()

    def reconcile(self) -> None:
        """Reap children that have exited."""
        for pid in list(self.children):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                self.children.discard(pid)
                self._activity()

    def close(self) -> None:
        """End every child still running."""
        for pid in self.children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        self.children.clear()


def install_once(install: Callable[..., Path]) -> Callable[..., Path]:
    """Flower's ``install_from_fab`` that, for FAB bytes already installed from
    this executor, returns the installed folder without unpacking and checking
    the archive again (Flower itself then only returns the existing folder).

    An install is recorded in ``<FLWR_HOME>/apps/.installed-<sha256>`` only
    after Flower's own install (with its hash checks) succeeded, and used only
    while the folder it names exists.
    """

    def install_from_fab(fab_file: Any, *args: Any, **kwargs: Any) -> Path:
        if not isinstance(fab_file, bytes):
            return install(fab_file, *args, **kwargs)
        from flwr.supercore.utils import get_flwr_home

        digest = hashlib.sha256(fab_file).hexdigest()
        marker = Path(get_flwr_home()) / "apps" / f".installed-{digest}"
        try:
            installed = Path(marker.read_text())
        except OSError:
            installed = None
        if installed is not None and (installed / "pyproject.toml").is_file():
            return installed
        path = Path(install(fab_file, *args, **kwargs))
        marker.parent.mkdir(parents=True, exist_ok=True)
        tmp = marker.with_name(f"{marker.name}.{os.getpid()}.tmp")
        tmp.write_text(str(path))
        os.replace(tmp, marker)
        return path

    return install_from_fab


def _warm_newest_app() -> None:
    """Import the newest installed FAB's ClientApp here, once per FAB
    (:func:`clients.warm_app.warm_newest`)."""
    from flwr.supercore.utils import get_flwr_home

    warm_app.warm_newest(Path(get_flwr_home()), forget_own_package)


def forget_own_package() -> list[str]:
    """Drop this executor's package (``clients``) from ``sys.modules``, so that
    the ClientApp's ``clients`` modules are imported from the run's FAB, not
    from wherever this executor was installed; the names dropped."""
    package = __name__.split(".")[0]
    names = [n for n in sys.modules if n == package or n.startswith(package + ".")]
    for name in names:
        del sys.modules[name]
    return names


def _run_child(spec: Any) -> None:
    """Run one ClientApp task in this forked child, then leave with its code."""
    code = 1
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        from flwr.supercore.tls import validate_and_resolve_root_certificates
        from flwr.supernode.runtime import run_clientapp as task

        task.install_from_fab = install_once(task.install_from_fab)
        task.get_load_client_app_fn = warm_app.reuse_warm_app(
            task.get_load_client_app_fn, forget_own_package
        )
        task.run_clientapp(
            runtime_api_address=spec.runtime_api_address,
            token=spec.token,
            insecure=spec.insecure,
            certificates=validate_and_resolve_root_certificates(
                spec.root_certificates_path, spec.insecure
            ),
            parent_pid=None,
            runtime_dependency_install=spec.runtime_dependency_install,
        )
        code = 0
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else 1
    finally:
        os._exit(code)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m clients.warm_exec",
        description="Run a SuperNode's ClientApp tasks in forks of a warm process "
        "(the SuperNode runs with --isolation process).",
    )
    parser.add_argument("--runtime-api-address", required=True)
    tls = parser.add_mutually_exclusive_group(required=True)
    tls.add_argument("--insecure", action="store_true")
    tls.add_argument("--root-certificates", default=None)
    parser.add_argument("--parent-pid", type=int, default=None)
    parser.add_argument(
        "--cache-dir",
        default=None,
        help="node-local folder for the prepared data (default: $"
        f"{CACHE_ENV} or a folder in the system's temporary directory)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Preload the ClientApp's libraries, then serve tasks until stopped."""
    args = parse_args(argv)
    default = Path(tempfile.gettempdir()) / f"otm-flower-node-cache-{os.getuid()}"
    os.environ[CACHE_ENV] = args.cache_dir or os.environ.get(CACHE_ENV) or str(default)
    os.environ.setdefault(POLL_ENV, POLL_SECONDS)
    preload()
    prime_caches()
    import flwr.supercore.superexec.run_superexec as superexec

    doorbell = listen_for_rings(args.runtime_api_address)
    backoff = Backoff(float(os.environ[POLL_ENV]), signal=doorbell)
    superexec.time = backoff_time(backoff)  # type: ignore[assignment]
    executor = ForkExecutor(backoff)
    superexec.get_executor = lambda *_, **__: executor  # type: ignore[assignment]
    try:
        superexec.run_superexec(
            runtime_api_address=args.runtime_api_address,
            insecure=args.insecure,
            root_certificates_path=args.root_certificates,
            parent_pid=args.parent_pid,
        )
    finally:
        if doorbell is not None:
            doorbell.close()


def listen_for_rings(runtime_api_address: str) -> Doorbell | None:
    """The doorbell the SuperNode on this host rings for each new task
    (:mod:`clients.doorbell`), closed in every forked child; ``None`` when the
    address has no port or the socket cannot be made (polling alone then)."""
    _, _, port = runtime_api_address.rpartition(":")
    try:
        doorbell = Doorbell(doorbell_path(int(port)))
    except (ValueError, OSError):
        return None
    os.register_at_fork(after_in_child=doorbell.sock.close)
    return doorbell


if __name__ == "__main__":
    main()
