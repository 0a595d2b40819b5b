"""Profile of the fast mixer: wall seconds inside each piece of one solve.

Wraps the fast solver's functions (kernel and Sinkhorn linear step, gradient,
plan products, line search, exact objective, support update, rounding,
assignment polish) with timers, runs one
:func:`otm_flower.mixer.fgw_barycenter` on the benchmark's clouds and prints
each piece's exclusive seconds and share (time inside a nested timed piece
counts for the inner one only; "other" is Python and torch overhead outside
every piece).

Run ``python -m simulations.profile_mixer --help``.
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from otm_flower.barycenter import fast, linear_steps, lowrank
from otm_flower.mixer import fgw_barycenter
from simulations.bench_mixer import clustered_clouds, handwritten_clouds

#: (label, owner object, attribute) of every timed piece.
PIECES: tuple[tuple[str, Any, str], ...] = (
    ("Sinkhorn linear step (kernel + scaling)", fast, "entropic_lmo"),
    ("assignment polish (LSA)", linear_steps, "linear_sum_assignment"),
    ("gradient (low rank)", lowrank.FGWProblem, "grad"),
    ("plan products T [y, a, 1]", lowrank.FGWProblem, "products"),
    ("line search terms", lowrank.FGWProblem, "lin_quad"),
    ("exact objective", lowrank.FGWProblem, "cost"),
    ("support + structure update", fast.FastSolver, "update"),
    ("rounding onto couplings", fast, "round_to_coupling"),
)


class Timers:
    """Exclusive wall seconds and call counts per label (nested calls)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.stack: list[list[float]] = []

    def wrap(self, label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` timed under ``label``."""

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            self.stack.append([time.perf_counter(), 0.0])
            try:
                return fn(*args, **kwargs)
            finally:
                start, inner = self.stack.pop()
                total = time.perf_counter() - start
                self.seconds[label] = self.seconds.get(label, 0.0) + total - inner
                self.calls[label] = self.calls.get(label, 0) + 1
                if self.stack:
                    self.stack[-1][1] += total

        return timed


@contextmanager
def instrumented(timers: Timers) -> Iterator[None]:
    """Patch every piece of :data:`PIECES` with a timer, then restore it."""
    saved = [(owner, attr, getattr(owner, attr)) for _, owner, attr in PIECES]
    try:
        for label, owner, attr in PIECES:
            setattr(owner, attr, timers.wrap(label, getattr(owner, attr)))
        yield
    finally:
        for owner, attr, fn in saved:
            setattr(owner, attr, fn)


def profile(
    clouds: list[np.ndarray], *, alpha: float, n_iter: int, options: dict[str, Any]
) -> tuple[Timers, float, float]:
    """Timers, total seconds and objective of one free-structure fast solve."""
    timers = Timers()
    with instrumented(timers):
        t0 = time.perf_counter()
        objective = free_fast_solve(clouds, alpha=alpha, n_iter=n_iter, options=options)
        total = time.perf_counter() - t0
    return timers, total, objective


def free_fast_solve(
    clouds: list[np.ndarray], *, alpha: float, n_iter: int, options: dict[str, Any]
) -> float:
    """The objective of one free-structure fast solve of ``n_iter`` full updates."""
    res = fgw_barycenter(
        clouds,
        alpha=alpha,
        n_iter=n_iter,
        tol=0.0,
        solver="fast",
        structure="free",
        fast_options=options,
    )
    return float(res.objective)


def to_markdown(timers: Timers, total: float) -> str:
    """Markdown table: piece, calls, seconds, share of the total."""
    lines = ["| piece | calls | s | share |", "|---|---|---|---|"]
    rows = sorted(timers.seconds.items(), key=lambda kv: -kv[1])
    for label, sec in rows:
        calls = timers.calls[label]
        lines.append(f"| {label} | {calls} | {sec:.3f} | {100 * sec / total:.0f}% |")
    other = total - sum(timers.seconds.values())
    lines.append(
        f"| other (Python, allocation) | - | {other:.3f} | {100 * other / total:.0f}% |"
    )
    lines.append(f"| total | | {total:.3f} | |")
    return "\n".join(lines)


def assignment_times(
    clouds: list[np.ndarray], *, alpha: float, n_iter: int, threads: int
) -> list[dict[str, float]]:
    """The polish's assignment problems of one solve, solved raw and reduced.

    Captures every cost matrix the polish hands to
    :func:`otm_flower.barycenter.linear_steps.reduce_costs` (with its
    column dual) and times :func:`scipy.optimize.linear_sum_assignment` on
    the raw gradient and on its reduced costs, side by side; ``same_cost``
    says both permutations have the same raw cost (to 1e-12 relative).
    """
    captured: list[tuple[np.ndarray, np.ndarray]] = []
    reduce = linear_steps.reduce_costs

    def capture(grad: Any, col_dual: Any) -> Any:
        raw = grad.cpu().numpy().copy()
        out = reduce(grad, col_dual)
        captured.extend(zip(raw, out.cpu().numpy().copy(), strict=True))
        return out

    linear_steps.reduce_costs = capture
    try:
        free_fast_solve(
            clouds, alpha=alpha, n_iter=n_iter, options={"threads": threads}
        )
    finally:
        linear_steps.reduce_costs = reduce
    rows = []
    for raw, reduced in captured:
        t0 = time.perf_counter()
        first = linear_sum_assignment(raw)
        t1 = time.perf_counter()
        second = linear_sum_assignment(reduced)
        t2 = time.perf_counter()
        a, b = float(raw[first].sum()), float(raw[second].sum())
        rows.append(
            {
                "raw_s": t1 - t0,
                "reduced_s": t2 - t1,
                "same_cost": abs(a - b) <= 1e-12 * max(abs(a), 1e-300),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    """Command line: profile one solve and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--data", choices=["clustered", "handwritten"], default="handwritten"
    )
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--agents", type=int, default=6)
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--n-iter", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--assignments",
        action="store_true",
        help="time the polish's assignment problems raw and reduced instead",
    )
    args = ap.parse_args(argv)
    make = clustered_clouds if args.data == "clustered" else handwritten_clouds
    clouds = make(args.n, args.agents, args.dim, args.seed)
    if args.assignments:
        rows = assignment_times(
            clouds, alpha=args.alpha, n_iter=args.n_iter, threads=args.threads
        )
        print("| problem | raw s | reduced s | raw / reduced | same cost |")
        print("|---|---|---|---|---|")
        for i, r in enumerate(rows):
            ratio = r["raw_s"] / max(r["reduced_s"], 1e-9)
            print(
                f"| {i} | {r['raw_s']:.3f} | {r['reduced_s']:.3f} "
                f"| {ratio:.1f}x | {r['same_cost']} |"
            )
        return
    timers, total, obj = profile(
        clouds, alpha=args.alpha, n_iter=args.n_iter, options={"threads": args.threads}
    )
    print(f"objective {obj:.6f}, {total:.2f} s")
    print(to_markdown(timers, total))


if __name__ == "__main__":
    main()
