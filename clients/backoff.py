"""Polls that slow down while nothing happens and speed up when something does.

Flower's SuperNode and SuperExec check for work at fixed intervals: short ones
answer a message quickly but cost CPU all the time, CPU a round's training then
lacks (docs/performance.md has the measurement).
:class:`Backoff` waits ``floor`` seconds after activity, then twice as long
at each idle wait, at most ``cap``; :func:`backoff_time` hands it to a Flower
module in place of its ``time`` module.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

__all__ = ["FLOOR_SECONDS", "Backoff", "backoff_time"]

#: First wait after activity, in seconds.
FLOOR_SECONDS = 0.05


class Backoff:
    """Waits that double while idle, from ``floor`` to ``cap`` seconds.

    Parameters
    ----------
    cap : float
        Longest wait, in seconds (> 0).
    floor : float
        First wait after :meth:`reset`, in seconds (at most ``cap``).
    """

    def __init__(self, cap: float, floor: float = FLOOR_SECONDS) -> None:
        if cap <= 0:
            raise ValueError(f"the longest poll wait must be > 0 s, got {cap}")
        self.cap, self.floor = cap, min(floor, cap)
        self.wait = self.floor

    def reset(self) -> None:
        """Something happened: the next wait is the shortest again."""
        self.wait = self.floor

    def sleep(self, seconds: float) -> None:
        """Wait the current wait (at most ``seconds``), then double it."""
        time.sleep(min(seconds, self.wait))
        self.wait = min(self.cap, 2.0 * self.wait)


def backoff_time(backoff: Backoff) -> SimpleNamespace:
    """A stand-in for the ``time`` module whose ``sleep`` is ``backoff``'s."""
    names = {n: getattr(time, n) for n in dir(time) if not n.startswith("_")}
    return SimpleNamespace(**{**names, "sleep": backoff.sleep})
