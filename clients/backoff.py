"""Polls that slow down while nothing happens and speed up when something does.

Flower's SuperNode and SuperExec check for work at fixed intervals: short ones
answer a message quickly but cost CPU all the time, CPU a round's training then
lacks (docs/performance.md has the measurement).
:class:`Backoff` waits ``floor`` seconds after activity, then twice as long
at each idle wait, at most ``cap``, and a wait ends early when what it waits
for is signalled (:meth:`Backoff.wake`, or a :class:`clients.doorbell.Doorbell`);
:func:`backoff_time` hands it to a Flower module in place of its ``time`` module.
"""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Protocol

__all__ = ["FLOOR_SECONDS", "Backoff", "WakeSignal", "backoff_time"]

#: First wait after activity, in seconds.
FLOOR_SECONDS = 0.05


class WakeSignal(Protocol):
    """What a wait can be cut short by (:class:`threading.Event` is one)."""

    def wait(self, timeout: float) -> bool: ...

    def clear(self) -> None: ...


class Backoff:
    """Waits that double while idle, from ``floor`` to ``cap`` seconds, and end
    early on a wake-up.

    Parameters
    ----------
    cap : float
        Longest wait, in seconds (> 0).
    floor : float
        First wait after :meth:`reset`, in seconds (at most ``cap``).
    signal : WakeSignal, optional
        Ends a wait when it fires (default: an event set by :meth:`wake`).
    """

    def __init__(
        self, cap: float, floor: float = FLOOR_SECONDS, signal: WakeSignal | None = None
    ) -> None:
        if cap <= 0:
            raise ValueError(f"the longest poll wait must be > 0 s, got {cap}")
        self.cap, self.floor = cap, min(floor, cap)
        self.wait = self.floor
        self._event = threading.Event()
        self.signal: WakeSignal = signal or self._event

    def reset(self) -> None:
        """Something happened: the next wait is the shortest again."""
        self.wait = self.floor

    def wake(self) -> None:
        """Something happened now: end the current wait (or the next one) and
        start again from the shortest; safe from any thread (only with the
        default signal)."""
        self.reset()
        self._event.set()

    def sleep(self, seconds: float) -> None:
        """Wait the current wait (at most ``seconds``) or until the signal
        fires; then double the wait, or after a signal start from the shortest."""
        if self.signal.wait(min(seconds, self.wait)):
            self.signal.clear()
            self.reset()
        else:
            self.wait = min(self.cap, 2.0 * self.wait)


def backoff_time(backoff: Backoff) -> SimpleNamespace:
    """A stand-in for the ``time`` module whose ``sleep`` is ``backoff``'s."""
    names = {n: getattr(time, n) for n in dir(time) if not n.startswith("_")}
    return SimpleNamespace(**{**names, "sleep": backoff.sleep})
