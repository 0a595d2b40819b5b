"""A Flower Grid that runs the agents' ClientApp in this process, one after another.

Flower's simulation engine (Ray) starts a worker pool per run, which costs tens of
seconds on a small machine; benchmark grids run hundreds of short runs. This Grid
serves the same ServerApp code path without Ray: every message is serialised to
Flower's wire format and back (so content that could not cross a network fails
here too), handed to the real ClientApp with the node's persistent ``Context``,
and a ClientApp exception becomes an error reply as in Flower's own runtimes.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from logging import ERROR
from uuid import uuid4

import numpy as np
from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import SUPERLINK_NODE_ID, ErrorCode
from flwr.common.serde import message_from_proto, message_to_proto
from flwr.serverapp import Grid
from flwr.supercore import log
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity


def _over_the_wire(message: Message) -> Message:
    """A copy of ``message`` that went through Flower's protobuf serialisation."""
    return message_from_proto(message_to_proto(message))


class InProcessGrid(Grid):
    """Runs ``client_app`` for ``num_nodes`` simulated nodes, in process.

    Parameters
    ----------
    client_app : ClientApp
        The agents' ClientApp.
    num_nodes : int
        Number of nodes; node ``i`` gets node config ``partition-id=i,
        num-partitions=num_nodes``, as in Flower's simulation.
    run_config : dict
        The run config every node's ``Context`` carries.
    run_id : int
        Run id reported by :attr:`run`.
    seed : int
        Seeds the (random, 63-bit) node ids.
    """

    def __init__(
        self,
        client_app: ClientApp,
        num_nodes: int,
        run_config: dict[str, bool | float | int | str] | None = None,
        *,
        run_id: int = 1,
        seed: int = 0,
    ) -> None:
        if num_nodes < 1:
            raise ValueError(f"num_nodes must be >= 1, got {num_nodes}")
        self.client_app = client_app
        ids = np.random.default_rng([seed, 17]).choice(2**62, num_nodes, replace=False)
        self.contexts: dict[int, Context] = {
            int(node_id): Context(
                run_id=run_id,
                node_id=int(node_id),
                node_config={"partition-id": pid, "num-partitions": num_nodes},
                state=RecordDict(),
                run_config=dict(run_config or {}),
            )
            for pid, node_id in enumerate(ids)
        }
        self._run = Run.create_empty(run_id)
        # The ServerApp's messages take their ids from the process's task identity,
        # as Flower's own runtimes set it before running a ServerApp.
        TaskIdentity.task_id = 1
        TaskIdentity.run_id = run_id
        TaskIdentity.node_id = SUPERLINK_NODE_ID
        self._replies: dict[str, Message] = {}

    def set_run(self, run: Run) -> None:
        """Replace the run this grid reports."""
        self._run = run

    @property
    def run(self) -> Run:
        """Run information."""
        return self._run

    def create_message(
        self,
        content: RecordDict,
        message_type: str,
        dst_node_id: int,
        group_id: str,
        ttl: float | None = None,
    ) -> Message:
        """Create an instruction message (as Flower's own grids do)."""
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        """The simulated nodes' ids."""
        return list(self.contexts)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Deliver each message to its node's ClientApp; keep the replies."""
        ids = []
        for message in messages:
            message.metadata.__dict__["_message_id"] = str(uuid4())
            message.metadata.__dict__["_run_id"] = self._run.run_id
            reply = self._handle(_over_the_wire(message))
            reply.metadata.__dict__["_message_id"] = str(uuid4())
            self._replies[message.metadata.message_id] = _over_the_wire(reply)
            ids.append(message.metadata.message_id)
        return ids

    def _handle(self, message: Message) -> Message:
        node_id = message.metadata.dst_node_id
        context = self.contexts.get(node_id)
        if context is None:
            return Message(
                Error(code=ErrorCode.UNKNOWN, reason=f"no node with id {node_id}"),
                reply_to=message,
            )
        try:
            return self.client_app(message, context)
        except Exception as err:  # noqa: BLE001 - a node's failure becomes its reply
            log(ERROR, "node %d: ClientApp raised %s: %s", node_id, type(err), err)
            return Message(
                Error(
                    code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION,
                    reason=f"{type(err)}:<'{err}'>",
                ),
                reply_to=message,
            )

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        """Return (and forget) the replies to ``message_ids`` that exist."""
        return [self._replies.pop(i) for i in message_ids if i in self._replies]

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        """Deliver ``messages`` and return every reply (``timeout`` is not needed:
        replies are computed synchronously)."""
        start = time.monotonic()
        ids = list(self.push_messages(messages))
        replies = list(self.pull_messages(ids))
        if timeout is not None and time.monotonic() - start > timeout:
            log(
                ERROR,
                "in-process round took %.0f s, over its %.0f s timeout "
                "(replies kept: the in-process grid cannot drop late nodes)",
                time.monotonic() - start,
                timeout,
            )
        return replies
