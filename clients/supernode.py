"""``flower-supernode`` with waits between its checks that adapt to activity.

Flower's SuperNode asks the SuperLink for a new message every 3 s while it has
none, and checks for its ClientApp's reply every 0.5 s; a round's two
exchanges (train, evaluate) then wait about 1.5 s each before a node even sees
its message. This launcher runs Flower's own SuperNode with those waits
replaced by a back-off (:class:`clients.backoff.Backoff`): 0.05 s after a
message arrives or a reply leaves, then doubling while nothing happens, at
most ``--poll-seconds`` (default :data:`POLL_SECONDS`). A wait for a reply
ends as soon as the ClientApp stores its reply or one of its objects in the
node's state, and a message pulled for a task rings the doorbell of a warm
executor on this host (:mod:`clients.doorbell`), so neither side waits out a
poll interval. All other arguments go to ``flower-supernode`` unchanged::

    python -m clients.supernode --poll-seconds 0.5 --insecure \\
        --superlink 127.0.0.1:8000 --port 9100 --isolation process ...

An idle node asks the SuperLink once per ``--poll-seconds``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .backoff import Backoff, backoff_time
from .doorbell import doorbell_path, ring

#: Default longest wait, in seconds, between two checks.
POLL_SECONDS = 0.5


def adapt_polls(loop: Any, cap: float, doorbell: Path | None = None) -> Backoff:
    """Give Flower's SuperNode loop module ``loop`` a back-off, reset whenever a
    message is pulled or replies are pushed; the back-off. A pulled message
    also rings ``doorbell`` (the warm executor's, when given)."""
    if cap <= 0:
        raise ValueError(f"--poll-seconds must be > 0, got {cap}")
    backoff = Backoff(cap)
    pull, push = loop._pull_and_store_message, loop._push_messages

    def pull_and_store(*args: Any, **kwargs: Any) -> Any:
        run_id = pull(*args, **kwargs)
        if run_id is not None:
            backoff.reset()
            if doorbell is not None:
                ring(doorbell)
        return run_id

    def push_messages(*args: Any, **kwargs: Any) -> None:
        push(*args, **kwargs)
        backoff.reset()

    loop.time = backoff_time(backoff)
    loop._pull_and_store_message = pull_and_store
    loop._push_messages = push_messages
    return backoff


def wake_on_stores(backoff: Backoff, *owners: type) -> None:
    """Wake ``backoff`` after every ``store_message`` or ``put`` of the classes
    ``owners`` (the node's state and object store): a reply, or an object of
    one, has arrived from the ClientApp."""
    for owner in owners:
        for name in ("store_message", "put"):
            method = owner.__dict__.get(name)
            if method is not None and not getattr(method, "wakes", False):
                setattr(owner, name, _waking(method, backoff))


def _waking(method: Any, backoff: Backoff) -> Any:
    def stored(*args: Any, **kwargs: Any) -> Any:
        result = method(*args, **kwargs)
        backoff.wake()
        return result

    stored.wakes = True  # type: ignore[attr-defined]
    return stored


def runtime_port(argv: Sequence[str]) -> int:
    """The Runtime API port of ``flower-supernode`` arguments ``argv``."""
    from flwr.supercore.constant import SUPERNODE_UVICORN_DEFAULT_PORT

    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--port", type=int, default=SUPERNODE_UVICORN_DEFAULT_PORT)
    known, _ = parser.parse_known_args(list(argv))
    return int(known.port)


def split_poll(argv: Sequence[str]) -> tuple[float, list[str]]:
    """``--poll-seconds S`` (or ``=S``) taken out of ``argv``: ``(S, rest)``."""
    parser = argparse.ArgumentParser(
        prog="python -m clients.supernode", add_help=False, allow_abbrev=False
    )
    parser.add_argument("--poll-seconds", type=float, default=POLL_SECONDS)
    known, rest = parser.parse_known_args(list(argv))
    return known.poll_seconds, rest


def main(argv: Sequence[str] | None = None) -> None:
    """Run ``flower-supernode`` with its waits adapted to activity."""
    poll, rest = split_poll(sys.argv[1:] if argv is None else argv)
    import flwr.supernode.start_client_internal as loop
    from flwr.supercore.object_store.in_memory_object_store import InMemoryObjectStore
    from flwr.supercore.object_store.sql_object_store import SqlObjectStore
    from flwr.supernode.cli import flower_supernode
    from flwr.supernode.nodestate.in_memory_nodestate import InMemoryNodeState

    backoff = adapt_polls(loop, poll, doorbell_path(runtime_port(rest)))
    wake_on_stores(backoff, InMemoryNodeState, InMemoryObjectStore, SqlObjectStore)
    sys.argv = ["flower-supernode", *rest]
    flower_supernode()


if __name__ == "__main__":
    main()
