"""A Grid that waits for replies with a short poll (the Deployment Runtime's
ServerApp).

Flower's ``HttpGrid.send_and_receive`` checks the SuperLink for replies every
3 s, so each of a round's two exchanges (train, evaluate) waits 1.5 s on
average after the last reply arrived. :class:`PollingGrid` wraps that grid and
polls every :data:`POLL_SECONDS` instead; everything else is delegated
unchanged. Grids that do not poll (the in-process grid, the simulation
engine's) are used as they are (:func:`fast_replies`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from logging import WARNING

from flwr.app import Message
from flwr.serverapp import Grid
from flwr.supercore import log
from flwr.supercore.run import Run

#: Seconds between two checks for replies.
POLL_SECONDS = 0.2


class PollingGrid(Grid):
    """``grid`` with :meth:`send_and_receive` polling every ``poll`` seconds."""

    def __init__(self, grid: Grid, poll: float = POLL_SECONDS) -> None:
        if poll <= 0:
            raise ValueError(f"poll interval must be > 0 s, got {poll}")
        self.inner, self.poll = grid, poll

    def set_run(self, run: Run) -> None:
        self.inner.set_run(run)

    @property
    def run(self) -> Run:
        return self.inner.run

    def create_message(self, *args, **kwargs) -> Message:  # type: ignore[no-untyped-def]
        return self.inner.create_message(*args, **kwargs)

    def get_node_ids(self) -> Iterable[int]:
        return self.inner.get_node_ids()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self.inner.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self.inner.pull_messages(message_ids)

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """Push ``messages``; return the replies that arrive within ``timeout``
        seconds (``None``: wait for all).

        A message the SuperLink did not take (its id ``None``: for example its
        node left between sampling and sending) gets no reply, so it is not
        waited for.
        """
        messages = list(messages)
        ids = list(self.push_messages(messages))
        waiting = {i for i in ids if i is not None}
        refused = [
            m.metadata.dst_node_id
            for m, i in zip(messages, ids, strict=False)
            if i is None
        ]
        if refused:
            log(WARNING, "the SuperLink refused messages to nodes %s", refused)
        end = time.monotonic() + (timeout if timeout is not None else 0.0)
        replies: list[Message] = []
        while waiting:
            arrived = list(self.pull_messages(waiting))
            replies.extend(arrived)
            waiting.difference_update(m.metadata.reply_to_message_id for m in arrived)
            if not waiting or (timeout is not None and time.monotonic() >= end):
                break
            time.sleep(self.poll)
        return replies

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        if name == "inner":  # not set yet: no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)


def fast_replies(grid: Grid) -> Grid:
    """``grid`` wrapped in :class:`PollingGrid` when it is Flower's HTTP grid
    (the Deployment Runtime's); any other grid as it is."""
    try:
        from flwr.superlink.grid.http_grid import HttpGrid
    except ImportError:  # another Flower layout: keep its own polling
        return grid
    return PollingGrid(grid) if isinstance(grid, HttpGrid) else grid
