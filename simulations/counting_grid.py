"""A Grid wrapper that counts the array payload bytes a strategy sends and receives."""

from __future__ import annotations

from collections.abc import Iterable

from flwr.app import Message, RecordDict
from flwr.serverapp import Grid
from flwr.supercore.run import Run


def array_bytes(message: Message) -> int:
    """Payload bytes of every array in a message (0 for an error reply).

    Counts the values only (no serialisation header), as OTM counts its codes.
    """
    if not message.has_content():
        return 0
    return sum(
        array.numpy().nbytes
        for record in message.content.array_records.values()
        for array in record.values()
    )


class CountingGrid(Grid):
    """Delegates to ``grid``; adds up array bytes down (to nodes) and up (replies).

    Used to report what an unmodified Flower strategy (FedAvg) communicates,
    measured the same way as OTM's code payloads.
    """

    def __init__(self, grid: Grid) -> None:
        self.grid = grid
        self.bytes_down = 0
        self.bytes_up = 0

    def set_run(self, run: Run) -> None:
        """Set the wrapped grid's run."""
        self.grid.set_run(run)

    @property
    def run(self) -> Run:
        """The wrapped grid's run."""
        return self.grid.run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        """Create a message with the wrapped grid."""
        return self.grid.create_message(
            content, message_type, dst_node_id, group_id, ttl
        )

    def get_node_ids(self) -> Iterable[int]:
        """The wrapped grid's node ids."""
        return self.grid.get_node_ids()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Count and push."""
        messages = list(messages)
        self.bytes_down += sum(array_bytes(m) for m in messages)
        return self.grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        """Pull and count."""
        replies = list(self.grid.pull_messages(message_ids))
        self.bytes_up += sum(array_bytes(m) for m in replies)
        return replies

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """Count, send, receive, count."""
        messages = list(messages)
        self.bytes_down += sum(array_bytes(m) for m in messages)
        replies = list(self.grid.send_and_receive(messages, timeout=timeout))
        self.bytes_up += sum(array_bytes(m) for m in replies)
        return replies
