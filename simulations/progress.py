"""What ``otm-flower run`` shows: one line per round under a progress bar.

Flower's own log (strategy banners, metric-record dumps, deprecation notices) goes
to a file instead of the terminal. The round lines are read from the log records
Flower's ``Strategy.start`` emits (``[ROUND i/n]`` and the aggregated evaluation
``MetricRecord``) and from the coupling-agreement record of
:class:`simulations.otm_server.AgreementTracker`, so they work for every runtime
whose ServerApp runs in this process (in-process and Ray simulation).
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

#: Flower's logger (``flwr.supercore.logger.LOGGER_NAME``).
FLOWER_LOGGER = "flwr"

#: Message formats of the log records a round line is built from.
ROUND_START = "[ROUND %s/%s]"
AGGREGATED = "\t└──> Aggregated MetricRecord: %s"
AGREEMENT_PREFIX = "round %d: coupling class agreement"
#: Records shown on the terminal as they are (besides errors): the run folder.
PASS_THROUGH = ("results and plots in %s",)

#: Metric keys a round line shows (mean over agents), in this order.
SCORE_KEYS = ("acc", "nmi", "ari", "accuracy")


def format_round(
    server_round: int,
    rounds: int,
    scores: Mapping[str, Any],
    agreement: float | None,
    seconds: float,
) -> str:
    """``round  3/20  ACC 0.712  NMI 0.650  ARI 0.551  agreement 0.745  4.1 s``."""
    parts = [f"round {server_round:>2}/{rounds}"]
    parts += [f"{k.upper()} {float(scores[k]):.3f}" for k in SCORE_KEYS if k in scores]
    if agreement is not None:
        parts.append(f"agreement {agreement:.3f}")
    parts.append(f"{seconds:.1f} s")
    return "  ".join(parts)


class RoundReporter(logging.Handler):
    """A logging handler that turns Flower's round records into round lines.

    Parameters
    ----------
    progress : rich.progress.Progress
        The live display the lines are printed above; its first task is the bar.
    rounds : int
        Rounds of the run (the bar's total until Flower announces its own).
    """

    def __init__(self, progress: Progress, rounds: int) -> None:
        super().__init__(level=logging.INFO)
        self.progress = progress
        self.task = progress.add_task("starting (data, agents)", total=rounds)
        self.rounds = rounds
        self.lines: list[str] = []
        self._round = 0
        self._start = time.perf_counter()
        self._agreement: float | None = None

    def emit(self, record: logging.LogRecord) -> None:
        """Follow the round's records; print its line once its scores arrive."""
        args: tuple[Any, ...] = record.args if isinstance(record.args, tuple) else ()
        if record.levelno >= logging.ERROR or record.msg in PASS_THROUGH:
            self.progress.console.print(
                record.getMessage(), highlight=False, soft_wrap=True
            )
        elif record.msg == ROUND_START and len(args) == 2:
            self._round, self.rounds = int(args[0]), int(args[1])
            self._start = time.perf_counter()
            self._agreement = None
            self.progress.update(
                self.task, total=self.rounds, description=f"round {self._round}"
            )
        elif isinstance(record.msg, str) and record.msg.startswith(AGREEMENT_PREFIX):
            self._agreement = float(args[1]) if len(args) > 1 else None
        elif record.msg == AGGREGATED and isinstance(record.args, Mapping):
            # logging keeps a lone mapping argument as ``record.args`` itself
            if any(k in record.args for k in SCORE_KEYS) and self._round:
                self._report(record.args)

    def _report(self, scores: Mapping[str, Any]) -> None:
        line = format_round(
            self._round,
            self.rounds,
            scores,
            self._agreement,
            time.perf_counter() - self._start,
        )
        self.lines.append(line)
        self.progress.console.print(line, highlight=False, soft_wrap=True)
        self.progress.update(self.task, completed=self._round)


def _file_handler(path: Path) -> logging.Handler:
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    return handler


@contextmanager
def round_progress(
    rounds: int, log_file: str | Path, *, console: Console | None = None
) -> Iterator[RoundReporter]:
    """Show round lines and a bar; send Flower's log to ``log_file`` meanwhile.

    Flower's console handlers are detached for the duration and restored after.
    """
    importlib.import_module("flwr.supercore.logger")  # adds Flower's console handler
    logger = logging.getLogger(FLOWER_LOGGER)
    saved = list(logger.handlers)
    file_handler = _file_handler(Path(log_file))
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    reporter = RoundReporter(progress, rounds)
    for handler in saved:
        logger.removeHandler(handler)
    logger.addHandler(file_handler)
    logger.addHandler(reporter)
    try:
        with progress:
            yield reporter
    finally:
        logger.removeHandler(reporter)
        logger.removeHandler(file_handler)
        file_handler.close()
        for handler in saved:
            logger.addHandler(handler)
