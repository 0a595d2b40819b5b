"""``flower-supernode`` with a shorter wait between its checks for messages.

Flower's SuperNode asks the SuperLink for a new message every 3 s while it has
none, and checks for its ClientApp's reply every 0.5 s; a round's two
exchanges (train, evaluate) then wait about 1.5 s each before a node even sees
its message. This launcher runs Flower's own SuperNode with every such wait
capped at ``--poll-seconds`` (default :data:`POLL_SECONDS`); all other
arguments go to ``flower-supernode`` unchanged::

    python -m clients.supernode --poll-seconds 0.2 --insecure \\
        --superlink 127.0.0.1:8000 --port 9100 --isolation process ...

A shorter wait costs more requests to the SuperLink while idle (one per node
per ``--poll-seconds``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from types import SimpleNamespace

#: Default longest wait, in seconds, between two checks.
POLL_SECONDS = 0.2


def capped_time(cap: float) -> SimpleNamespace:
    """A stand-in for the ``time`` module whose ``sleep`` waits at most ``cap``."""
    if cap <= 0:
        raise ValueError(f"--poll-seconds must be > 0, got {cap}")

    def sleep(seconds: float) -> None:
        time.sleep(min(seconds, cap))

    names = {n: getattr(time, n) for n in dir(time) if not n.startswith("_")}
    return SimpleNamespace(**{**names, "sleep": sleep})


def split_poll(argv: Sequence[str]) -> tuple[float, list[str]]:
    """``--poll-seconds S`` (or ``=S``) taken out of ``argv``: ``(S, rest)``."""
    parser = argparse.ArgumentParser(
        prog="python -m clients.supernode", add_help=False, allow_abbrev=False
    )
    parser.add_argument("--poll-seconds", type=float, default=POLL_SECONDS)
    known, rest = parser.parse_known_args(list(argv))
    return known.poll_seconds, rest


def main(argv: Sequence[str] | None = None) -> None:
    """Run ``flower-supernode`` with its waits capped."""
    poll, rest = split_poll(sys.argv[1:] if argv is None else argv)
    import flwr.supernode.start_client_internal as loop
    from flwr.supernode.cli import flower_supernode

    loop.time = capped_time(poll)  # type: ignore[assignment]
    sys.argv = ["flower-supernode", *rest]
    flower_supernode()


if __name__ == "__main__":
    main()
