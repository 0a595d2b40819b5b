"""The warm executor's FAB install shortcut and package reset, and the
ServerApp's short-polling grid (the deployed runs themselves:
``tests/test_deployment.py``, ``tests/test_restart.py``)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from clients.warm_exec import forget_own_package, install_once
from simulations.polling_grid import PollingGrid


def test_a_fab_is_installed_once_per_content(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FLWR_HOME", str(tmp_path / "home"))
    calls: list[bytes] = []

    def install(fab: bytes, **_: object) -> Path:
        calls.append(fab)
        folder = tmp_path / "home" / "apps" / f"app-{len(calls)}"
        folder.mkdir(parents=True)
        (folder / "pyproject.toml").write_text("")
        return folder

    once = install_once(install)
    first = once(b"fab-1", skip_prompt=True)
    assert once(b"fab-1", skip_prompt=True) == first
    assert len(calls) == 1
    assert once(b"fab-2", skip_prompt=True) != first  # other bytes: installed
    (first / "pyproject.toml").unlink()  # the installed folder is gone
    assert once(b"fab-1", skip_prompt=True) != first
    assert len(calls) == 3


def test_failed_install_is_not_recorded(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FLWR_HOME", str(tmp_path / "home"))

    def install(fab: bytes, **_: object) -> Path:
        raise ValueError("File hashes couldn't be verified.")

    with pytest.raises(ValueError, match="hashes"):
        install_once(install)(b"bad")
    assert not list((tmp_path / "home").rglob(".installed-*"))


def test_forgetting_the_package_lets_it_be_imported_again() -> None:
    import clients.node_cache

    saved = {n: m for n, m in sys.modules.items() if n.split(".")[0] == "clients"}
    try:
        names = forget_own_package()
        assert "clients.warm_exec" in names and "clients.node_cache" in names
        assert not any(n.split(".")[0] == "clients" for n in sys.modules)
        import clients.node_cache as again

        assert again is not clients.node_cache  # a fresh import
    finally:
        sys.modules.update(saved)


class SlowGrid:
    """A grid whose replies arrive ``delay`` seconds after the push."""

    def __init__(self, delay: float) -> None:
        self.delay, self.pulls, self.pushed = delay, 0, 0.0

    def push_messages(self, messages):  # type: ignore[no-untyped-def]
        self.pushed = time.monotonic()
        return [m.id for m in messages]

    def pull_messages(self, ids):  # type: ignore[no-untyped-def]
        self.pulls += 1
        if time.monotonic() - self.pushed < self.delay:
            return []
        meta = SimpleNamespace
        return [SimpleNamespace(metadata=meta(reply_to_message_id=i)) for i in ids]


def test_polling_grid_returns_soon_after_the_replies() -> None:
    inner = SlowGrid(delay=0.5)
    grid = PollingGrid(inner, poll=0.05)  # type: ignore[arg-type]
    start = time.monotonic()
    replies = list(grid.send_and_receive([SimpleNamespace(id="a")], timeout=10))
    assert [r.metadata.reply_to_message_id for r in replies] == ["a"]
    assert time.monotonic() - start < 2.0  # Flower's grid: a 3 s poll
    assert inner.pulls > 2


def test_polling_grid_does_not_wait_for_a_refused_message() -> None:
    class RefusingGrid(SlowGrid):
        """Refuses the message with id ``gone`` (Flower's grid: id ``None``)."""

        def __init__(self) -> None:
            super().__init__(delay=0.2)
            self.asked: list[set] = []

        def push_messages(self, messages):  # type: ignore[no-untyped-def]
            ids = super().push_messages(messages)
            return [None if i == "gone" else i for i in ids]

        def pull_messages(self, ids):  # type: ignore[no-untyped-def]
            self.asked.append(set(ids))
            return super().pull_messages([i for i in ids if i is not None])

    inner = RefusingGrid()
    grid = PollingGrid(inner, poll=0.05)  # type: ignore[arg-type]
    sent = [
        SimpleNamespace(id=i, metadata=SimpleNamespace(dst_node_id=node))
        for i, node in (("a", 3), ("gone", 7))
    ]
    replies = list(grid.send_and_receive(sent, timeout=30))
    assert [r.metadata.reply_to_message_id for r in replies] == ["a"]
    assert inner.asked and all(None not in ids for ids in inner.asked)


def test_polling_grid_stops_at_the_timeout() -> None:
    grid = PollingGrid(SlowGrid(delay=60), poll=0.05)  # type: ignore[arg-type]
    start = time.monotonic()
    assert list(grid.send_and_receive([SimpleNamespace(id="a")], timeout=0.3)) == []
    assert 0.3 <= time.monotonic() - start < 2.0
    with pytest.raises(ValueError, match="poll interval"):
        PollingGrid(SlowGrid(0), poll=0)  # type: ignore[arg-type]


def test_supernode_launcher_takes_its_poll_and_passes_the_rest() -> None:
    from clients.supernode import POLL_SECONDS, split_poll

    args = ["--insecure", "--poll-seconds", "0.5", "--port", "9100"]
    assert split_poll(args) == (0.5, ["--insecure", "--port", "9100"])
    assert split_poll(["--poll-seconds=0.1"]) == (0.1, [])
    assert split_poll(["--insecure"]) == (POLL_SECONDS, ["--insecure"])


def test_backoff_doubles_while_idle_and_resets_on_activity() -> None:
    from clients.backoff import Backoff, backoff_time

    backoff = Backoff(cap=0.04, floor=0.01)
    waits = []
    for _ in range(4):
        waits.append(backoff.wait)
        backoff.sleep(3)  # Flower's idle wait: the back-off's instead
    assert waits == [0.01, 0.02, 0.04, 0.04]
    backoff.reset()
    assert backoff.wait == 0.01
    start = time.monotonic()
    backoff_time(backoff).sleep(3)
    assert time.monotonic() - start < 1.0 and backoff_time(backoff).time is time.time
    with pytest.raises(ValueError, match="must be > 0"):
        Backoff(cap=0)


def test_supernode_loop_resets_its_backoff_on_messages_and_replies() -> None:
    from clients.supernode import adapt_polls

    loop = SimpleNamespace(
        _pull_and_store_message=lambda **kw: kw["run_id"],
        _push_messages=lambda: None,
        time=time,
    )
    backoff = adapt_polls(loop, cap=0.2)
    backoff.wait = 0.2
    assert loop._pull_and_store_message(run_id=None) is None
    assert backoff.wait == 0.2  # nothing pulled: still idle
    assert loop._pull_and_store_message(run_id=7) == 7
    assert backoff.wait == backoff.floor == 0.05
    backoff.wait = 0.2
    loop._push_messages()
    assert backoff.wait == 0.05
    assert loop.time.sleep.__self__ is backoff
    with pytest.raises(ValueError, match="poll-seconds"):
        adapt_polls(loop, cap=0)


def test_executor_resets_its_backoff_when_a_child_exits() -> None:
    import os

    from clients.backoff import Backoff
    from clients.warm_exec import ForkExecutor

    backoff = Backoff(cap=1.0)
    executor = ForkExecutor(backoff)
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    executor.children.add(pid)
    backoff.wait = 1.0
    deadline = time.monotonic() + 10
    while executor.children and time.monotonic() < deadline:
        executor.reconcile()
        time.sleep(0.01)
    assert not executor.children and backoff.wait == backoff.floor


def test_backoff_wait_ends_when_woken_from_another_thread() -> None:
    import threading

    from clients.backoff import Backoff

    backoff = Backoff(cap=30.0, floor=30.0)
    threading.Timer(0.05, backoff.wake).start()
    start = time.monotonic()
    backoff.sleep(30)
    assert time.monotonic() - start < 10  # woken, not the 30 s wait
    assert backoff.wait == backoff.floor
    backoff.wake()  # a wake with nobody waiting ends the next wait at once
    start = time.monotonic()
    backoff.sleep(30)
    assert time.monotonic() - start < 10


def test_doorbell_rings_end_the_executors_wait(tmp_path: Path) -> None:
    from clients.backoff import Backoff
    from clients.doorbell import Doorbell, doorbell_path, ring

    path = doorbell_path(9094, tmp_path)
    assert not ring(path)  # nobody listens yet: dropped
    doorbell = Doorbell(path)
    try:
        backoff = Backoff(cap=30.0, floor=30.0, signal=doorbell)
        assert ring(path) and ring(path)
        start = time.monotonic()
        backoff.sleep(30)
        assert time.monotonic() - start < 10
        assert not doorbell.wait(0.0)  # both rings consumed by the one wait
        backoff = Backoff(cap=0.05, floor=0.05, signal=doorbell)
        backoff.sleep(30)  # no ring: the back-off's own wait
        assert backoff.wait == 0.05
    finally:
        doorbell.close()
    assert not path.exists() and not ring(path)


def test_a_stale_doorbell_socket_is_replaced(tmp_path: Path) -> None:
    from clients.doorbell import Doorbell, doorbell_path, ring

    path = doorbell_path(9100, tmp_path)
    first = Doorbell(path)
    first.sock.close()  # an executor that died without removing its socket
    second = Doorbell(path)
    try:
        assert ring(path) and second.wait(5.0)
    finally:
        second.close()


def test_supernode_wakes_on_stored_replies_and_rings_on_pulls(tmp_path: Path) -> None:
    from clients.doorbell import Doorbell, doorbell_path
    from clients.supernode import adapt_polls, runtime_port, wake_on_stores

    class State:
        def store_message(self, message: str) -> str:
            return message

    path = doorbell_path(runtime_port(["--insecure", "--port", "9123"]), tmp_path)
    assert path.name == "doorbell-9123"
    assert runtime_port(["--insecure"]) == 9094  # flower-supernode's default
    loop = SimpleNamespace(
        _pull_and_store_message=lambda **kw: kw["run_id"],
        _push_messages=lambda: None,
        time=time,
    )
    doorbell = Doorbell(path)
    try:
        backoff = adapt_polls(loop, cap=30.0, doorbell=path)
        loop._pull_and_store_message(run_id=None)
        assert not doorbell.wait(0.05)  # nothing pulled: no ring
        loop._pull_and_store_message(run_id=3)
        assert doorbell.wait(5.0)
    finally:
        doorbell.close()
    wake_on_stores(backoff, State)
    wake_on_stores(backoff, State)  # wrapped once only
    assert State().store_message("reply") == "reply"
    backoff.wait = 30.0
    start = time.monotonic()
    loop.time.sleep(0.5)  # Flower's wait for the reply: ends at once
    assert time.monotonic() - start < 0.4


def test_priming_fills_the_caches_a_forked_child_would_rebuild() -> None:
    import sklearn.utils.parallel as parallel

    from clients.fork_priming import prime_caches

    def missing() -> None:
        raise ImportError("not installed")

    assert prime_caches((missing,)) == []
    filled = prime_caches()
    assert "sklearn_threadpools" in filled
    assert parallel._threadpool_controller is not None
