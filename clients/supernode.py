"""``flower-supernode`` with waits between its checks that adapt to activity.

Flower's SuperNode asks the SuperLink for a new message every 3 s while it has
none, and checks for its ClientApp's reply every 0.5 s; a round's two
exchanges (train, evaluate) then wait about 1.5 s each before a node even sees
its message. This launcher runs Flower's own SuperNode with those waits
replaced by a back-off (:class:`clients.backoff.Backoff`): 0.05 s after a
message arrives or a reply leaves, then doubling while nothing happens, at
most ``--poll-seconds`` (default :data:`POLL_SECONDS`); all other arguments go
to ``flower-supernode`` unchanged::

    python -m clients.supernode --poll-seconds 0.5 --insecure \\
        --superlink 127.0.0.1:8000 --port 9100 --isolation process ...

An idle node asks the SuperLink once per ``--poll-seconds``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from .backoff import Backoff, backoff_time

#: Default longest wait, in seconds, between two checks.
POLL_SECONDS = 0.5


def adapt_polls(loop: Any, cap: float) -> Backoff:
    """Give Flower's SuperNode loop module ``loop`` a back-off, reset whenever a
    message is pulled or replies are pushed; the back-off."""
    if cap <= 0:
        raise ValueError(f"--poll-seconds must be > 0, got {cap}")
    backoff = Backoff(cap)
    pull, push = loop._pull_and_store_message, loop._push_messages

    def pull_and_store(*args: Any, **kwargs: Any) -> Any:
        run_id = pull(*args, **kwargs)
        if run_id is not None:
            backoff.reset()
        return run_id

    def push_messages(*args: Any, **kwargs: Any) -> None:
        push(*args, **kwargs)
        backoff.reset()

    loop.time = backoff_time(backoff)
    loop._pull_and_store_message = pull_and_store
    loop._push_messages = push_messages
    return backoff


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
    from flwr.supernode.cli import flower_supernode

    adapt_polls(loop, poll)
    sys.argv = ["flower-supernode", *rest]
    flower_supernode()


if __name__ == "__main__":
    main()
