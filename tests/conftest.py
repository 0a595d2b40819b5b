"""Shared test helpers: message construction, shared data location; a line with
the name and seconds of each ``slow`` test as it finishes (shown under ``-q``).

With ``-n 2`` (pytest-xdist, as the README's test command runs) and ``--dist
loadgroup`` (pyproject's ``addopts``) the tests that start Ray carry
``xdist_group("ray")`` and run one after another in one worker (``ray.init()``
attaches to a head that ``ray start`` runs on the machine)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from flwr.app import Message, Metadata, RecordDict
from flwr.supercore.task_identity import TaskIdentity

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"

needs_shared_data = pytest.mark.skipif(
    not SHARED_DATA.is_dir(),
    reason=f"shared multi-view data sets not found at {SHARED_DATA} (a fresh clone)",
)


#: ``[seconds so far, outcome]`` of each running ``slow`` test, by node id.
_SLOW: dict[str, list[Any]] = {}

#: The session's config, kept by :func:`pytest_configure`.
_CONFIG: dict[str, pytest.Config] = {}


def pytest_configure(config: pytest.Config) -> None:
    """Keep the config: its terminal reporter prints the slow-test lines."""
    _CONFIG["config"] = config


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Print ``slow <test> <outcome> <s> s`` once a ``slow`` test's teardown ends."""
    if "slow" not in report.keywords:
        return
    seconds, outcome = _SLOW.pop(report.nodeid, [0.0, "passed"])
    seconds += report.duration
    if report.outcome != "passed":
        outcome = report.outcome
    if report.when != "teardown":
        _SLOW[report.nodeid] = [seconds, outcome]
        return
    config = _CONFIG.get("config")
    reporter = config.pluginmanager.get_plugin("terminalreporter") if config else None
    if reporter is not None:
        reporter.write_line(f"\nslow {report.nodeid} {outcome} {seconds:.1f} s")


@pytest.fixture(autouse=True)
def _task_identity() -> None:
    """Messages created outside a Flower runtime need a task identity."""
    TaskIdentity.run_id = 1
    TaskIdentity.node_id = 0
    TaskIdentity.task_id = 1


def incoming(
    content: RecordDict, message_type: str, src: int = 0, dst: int = 1
) -> Message:
    """A message as delivered by Flower (with metadata), e.g. a reply to a server."""
    return Message(
        content=content,
        metadata=Metadata(
            run_id=1,
            message_id=f"m-{src}-{dst}-{time.monotonic_ns()}",
            src_node_id=src,
            dst_node_id=dst,
            reply_to_message_id="",
            group_id="",
            created_at=time.time(),
            ttl=3600.0,
            message_type=message_type,
        ),
    )
