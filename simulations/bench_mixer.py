"""Mixer benchmark: POT's ``fgw_barycenters`` against the fast and exact mixers.

For every ``(n, K)`` it builds K clouds of n codes (Gaussian, or PCA codes of
Handwritten's views), runs, interleaved in one process, POT's
``ot.gromov.fgw_barycenters`` and :func:`otm_flower.mixer.fgw_barycenter`
with ``solver="fast"`` (``structure="free"``, the problem POT solves, and
``"features"``, the reference code's) and optionally ``solver="exact"``, and
reports times, ratios and the FGW barycenter objectives, all computed by one
function (:func:`otm_flower.fast_fgw.fgw_objective`) from each method's own
returned support, structure and plans.

With ``--memory`` it measures memory instead of time: one server mixing step
(:func:`otm_flower.mixer.mix_and_pull_back`, FGW, the strategy's settings) per
solver, each in a fresh subprocess, reporting the process's peak RSS increase
over its resident size just before the mixing, numpy's traced peak
(``tracemalloc``), and both relative to the size of the K float64 plans
(``K * n * n * 8`` bytes).

Run ``python -m simulations.bench_mixer --help``.
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import ot
import torch

from otm_flower.config import ConfigError
from otm_flower.fast_fgw import QUALITY_OPTIONS, fgw_objective
from otm_flower.mixer import Solver, Structure, fgw_barycenter, mix_and_pull_back
from simulations.overrides import split_key_value


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def gaussian_clouds(n: int, k: int, d: int, seed: int) -> list[np.ndarray]:
    """K independent standard Gaussian clouds ``(n, d)``."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((n, d)) for _ in range(k)]


def clustered_clouds(
    n: int, k: int, d: int, seed: int, clusters: int = 8
) -> list[np.ndarray]:
    """K clouds of the same ``clusters`` clusters, each in its own frame.

    The cluster centres (spread 4) and within-cluster noise (scale 0.5) are
    shared; every cloud draws its own ``n`` points (balanced clusters), then
    applies its own random rotation (QR of a Gaussian matrix) and shift, as
    separately trained encoders would.
    """
    rng = np.random.default_rng(seed)
    centres = 4.0 * rng.standard_normal((clusters, d))
    out = []
    for _ in range(k):
        labels = np.arange(n) % clusters
        pts = centres[labels] + 0.5 * rng.standard_normal((n, d))
        rot, _ = np.linalg.qr(rng.standard_normal((d, d)))
        out.append(pts @ rot + 2.0 * rng.standard_normal(d))
    return out


def handwritten_clouds(n: int, k: int, d: int, seed: int) -> list[np.ndarray]:
    """PCA-``d`` codes of Handwritten's agents (standardised, ``n`` rows each).

    Views with fewer than ``d`` features are zero-padded; agents are reused
    cyclically when ``k`` exceeds the number of views.
    """
    from otm_flower.data import load_dataset, make_agents

    agents = make_agents(load_dataset("handwritten"), seed=0)
    rng = np.random.default_rng(seed)
    out = []
    for j in range(k):
        x = np.asarray(agents[j % len(agents)].x_train, dtype=np.float64)
        if n > x.shape[0]:
            raise SystemExit(f"handwritten agents have {x.shape[0]} rows < n={n}")
        x = x[rng.choice(x.shape[0], size=n, replace=False)]
        x = (x - x.mean(0)) / np.maximum(x.std(0), 1e-12)
        _, _, vt = np.linalg.svd(x, full_matrices=False)
        z = x @ vt[:d].T
        out.append(np.pad(z, ((0, 0), (0, d - z.shape[1]))))
    return out


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


#: The mixer's variants that :func:`run_case` times: name, solver, structure.
VARIANTS: tuple[tuple[str, Solver, Structure], ...] = (
    ("fast_free", "fast", "free"),
    ("fast_features", "fast", "features"),
    ("exact_features", "exact", "features"),
)


def _run_pot(
    ys: list[np.ndarray], cs: list[np.ndarray], *, alpha: float, n_iter: int
) -> tuple[tuple[Any, Any, Any], float]:
    """POT's ``fgw_barycenters`` on normalised clouds, and its seconds."""
    n = ys[0].shape[0]
    return _timed(
        lambda: ot.gromov.fgw_barycenters(
            n,
            ys,
            cs,
            alpha=alpha,
            max_iter=n_iter,
            tol=1e-12,
            init_X=ys[0].copy(),
            init_C=cs[0].copy(),
            log=True,
        )
    )


def _run_variant(
    clouds: list[np.ndarray],
    solver: Solver,
    structure: Structure,
    *,
    alpha: float,
    n_iter: int,
    device: str,
    fast_options: dict[str, Any] | None,
) -> tuple[Any, float]:
    """One mixer variant on ``clouds``: its result and seconds."""
    run = functools.partial(
        fgw_barycenter,
        clouds,
        alpha=alpha,
        n_iter=n_iter,
        tol=0.0,
        solver=solver,
        structure=structure,
        device=device if solver == "fast" else "cpu",
        fast_options=fast_options if solver == "fast" else None,
    )
    return _timed(run)


def _variant_objective(
    res: Any, clouds: list[np.ndarray], alpha: float, dense: bool
) -> float:
    """The FGW barycenter objective of a mixer result on its own clouds.

    ``dense``: recomputed by :func:`fgw_objective` from the dense plans
    (``O(N n (N + n))`` per cloud); otherwise the solver's own float64 costs
    of its final couplings (``res.objective``, the same quantity).
    """
    if not dense:
        return float(res.objective)
    objective: float = fgw_objective(
        res.barycenter,
        res.plans,
        clouds,
        alpha=alpha,
        c=res.structure_matrix,
        scale=res.scale,
    )[0]
    return objective


def _timed_variant(
    clouds: list[np.ndarray], solver: Solver, structure: Structure, **kwargs: Any
) -> tuple[Any, float, int | None]:
    """:func:`_run_variant`, and the rise of the process's peak RSS over its
    resident size just before (``None`` when an earlier peak hides it)."""
    gc.collect()
    before, peak_before = _rss_bytes(), _peak_rss_bytes()
    res, dt = _run_variant(clouds, solver, structure, **kwargs)
    peak = _peak_rss_bytes()
    return res, dt, (peak - before if peak > peak_before else None)


def run_case(
    clouds: list[np.ndarray],
    *,
    alpha: float,
    n_iter: int,
    repeats: int,
    pot: bool,
    exact: bool,
    device: str,
    fast_options: dict[str, Any] | None = None,
    variants: Sequence[str] | None = None,
    dense_objective: bool = True,
) -> dict[str, Any]:
    """Time and score every method on one set of clouds (interleaved).

    ``variants`` names the mixer variants of :data:`VARIANTS` to run (default
    all; ``exact`` still gates the exact one); ``dense_objective`` recomputes
    each variant's objective from its dense plans (else the solver's own
    costs: for sizes whose dense recomputation would dominate the run).
    """
    chosen = [v[0] for v in VARIANTS] if variants is None else list(variants)
    times: dict[str, list[float]] = {}
    objs: dict[str, float] = {}
    peaks: dict[str, int | None] = {}
    if pot:
        scale = float(np.mean([ot.dist(c, c).max() for c in clouds]))
        ys = [c / np.sqrt(scale) for c in clouds]  # normalised inputs for POT
        cs = [ot.dist(y, y) for y in ys]
    for rep in range(repeats):
        last = rep == repeats - 1  # objectives from the last repeat (dense, slow)
        if pot:
            (x, c, log), dt = _run_pot(ys, cs, alpha=alpha, n_iter=n_iter)
            times.setdefault("pot", []).append(dt)
            if last:
                objs["pot"] = fgw_objective(x, log["T"], ys, alpha=alpha, c=c)[0]
        for name, solver, structure in VARIANTS:
            if name not in chosen or (solver == "exact" and not exact):
                continue
            res, dt, rise = _timed_variant(
                clouds,
                solver,
                structure,
                alpha=alpha,
                n_iter=n_iter,
                device=device,
                fast_options=fast_options,
            )
            times.setdefault(name, []).append(dt)
            peaks[name] = rise if rise is not None else peaks.get(name)
            if last:
                objs[name] = _variant_objective(res, clouds, alpha, dense_objective)
            del res
    n = clouds[0].shape[0]
    row: dict[str, Any] = {"n": n, "K": len(clouds)}
    row["plans_bytes"] = n * sum(c.shape[0] for c in clouds) * 8  # float64
    row["dense_objective"] = dense_objective
    row["peak_rss"] = _peak_rss_bytes()
    for name, ts in times.items():
        row[f"t_{name}"] = float(np.median(ts))
        row[f"rss_rise_{name}"] = peaks.get(name)
    for name, val in objs.items():
        row[f"obj_{name}"] = val
    return row


def _add_ratios(row: dict[str, Any]) -> None:
    if "t_pot" in row and "t_fast_free" in row:
        row["speedup_free"] = row["t_pot"] / row["t_fast_free"]
        row["gap_free"] = row["obj_fast_free"] / row["obj_pot"] - 1.0
    if "t_pot" in row and "t_fast_features" in row:
        row["speedup_features"] = row["t_pot"] / row["t_fast_features"]
    if "t_exact_features" in row and "t_fast_features" in row:
        row["speedup_vs_exact"] = row["t_exact_features"] / row["t_fast_features"]
        row["gap_features"] = row["obj_fast_features"] / row["obj_exact_features"] - 1.0


def _fmt(v: Any, kind: str) -> str:
    if v is None:
        return "-"
    if kind == "t":
        return f"{v:.2f}"
    if kind == "x":
        return f"{v:.1f}x"
    if kind == "%":
        return f"{100 * v:+.1f}%"
    if kind == "MiB":
        return f"{v / 2**20:.0f}"
    return f"{v:.5f}"


COLUMNS = [
    ("n", "n", "i"),
    ("K", "K", "i"),
    ("t_pot", "POT s", "t"),
    ("t_fast_free", "fast-free s", "t"),
    ("t_fast_features", "fast-feat s", "t"),
    ("t_exact_features", "exact-feat s", "t"),
    ("speedup_free", "POT/fast-free", "x"),
    ("speedup_vs_exact", "exact/fast-feat", "x"),
    ("obj_pot", "obj POT", "o"),
    ("obj_fast_free", "obj fast-free", "o"),
    ("gap_free", "free vs POT", "%"),
    ("obj_exact_features", "obj exact-feat", "o"),
    ("obj_fast_features", "obj fast-feat", "o"),
    ("gap_features", "fast vs exact (feat)", "%"),
    ("plans_bytes", "K plans MiB", "MiB"),
    ("rss_rise_fast_free", "fast-free peak RSS rise MiB", "MiB"),
    ("peak_rss", "process peak RSS MiB", "MiB"),
]


def to_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table of benchmark rows."""
    head = "| " + " | ".join(c[1] for c in COLUMNS) + " |"
    sep = "|" + "|".join("---" for _ in COLUMNS) + "|"
    lines = [head, sep]
    for r in rows:
        cells = [
            str(r[k]) if kind == "i" else _fmt(r.get(k), kind) for k, _, kind in COLUMNS
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _rss_bytes() -> int:
    """This process's resident set size now (Linux ``/proc``; else its peak)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return _peak_rss_bytes()


def _peak_rss_bytes() -> int:
    """This process's peak resident set size so far (``ru_maxrss``)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def memory_case(
    clouds: list[np.ndarray],
    *,
    solver: Solver,
    alpha: float,
    n_iter: int,
    seed: int,
    device: str = "cpu",
) -> dict[str, Any]:
    """Peak memory of one server mixing step on ``clouds``, in this process.

    Meant for a fresh process (:func:`measure_memory`): ``ru_maxrss`` is the
    process's peak since it started, so the increase is measured from the
    resident size just before the mixing; ``peak_rss_before`` tells whether an
    earlier peak (imports, making the clouds) could hide the mixing's.
    """
    k, n = len(clouds), clouds[0].shape[0]
    dev = device if solver == "fast" else "cpu"
    # warm-up on tiny clouds: library pages, thread pools and lazy imports
    # are resident before the baseline, so only the mixing's own memory counts
    mix_and_pull_back(
        [c[:32] for c in clouds[:2]], rng=0, n_iter=1, solver=solver, device=dev
    )
    gc.collect()
    rss_before = _rss_bytes()
    peak_before = _peak_rss_bytes()
    tracemalloc.start()
    t0 = time.perf_counter()
    result, mixed, bary = mix_and_pull_back(
        clouds,
        rng=np.random.default_rng(seed),
        alpha=alpha,
        variant="fgw",
        n_iter=n_iter,
        solver=solver,
        seed=seed,
        device=dev,
    )
    seconds = time.perf_counter() - t0
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    peak_after = _peak_rss_bytes()
    plans_bytes = k * n * n * 8
    increase = peak_after - rss_before
    return {
        "solver": solver,
        "n": n,
        "K": k,
        "n_iter": n_iter,
        "seconds": seconds,
        "plans_bytes": plans_bytes,
        "plans_on_host": result.transport.materialised,
        "rss_before": rss_before,
        "peak_rss_before": peak_before,
        "peak_rss": peak_after,
        "peak_rss_increase": increase,
        "rss_ratio": increase / plans_bytes,
        "traced_peak": traced_peak,
        "traced_ratio": traced_peak / plans_bytes,
        "earlier_peak_hides": peak_after == peak_before,
    }


def measure_memory(
    solver: str,
    *,
    n: int,
    k: int,
    dim: int,
    data: str,
    alpha: float,
    n_iter: int,
    seed: int,
    threads: int,
    device: str,
) -> dict[str, Any]:
    """Run :func:`memory_case` in a fresh Python process; return its row."""
    flags = {
        "--memory-child": solver,
        "--sizes": n,
        "--agents": k,
        "--dim": dim,
        "--data": data,
        "--alpha": alpha,
        "--memory-n-iter": n_iter,
        "--seed": seed,
        "--threads": threads,
        "--device": device,
    }
    cmd = [sys.executable, "-m", "simulations.bench_mixer"]
    for flag, value in flags.items():
        cmd += [flag, str(value)]
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=root, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("MEMORY ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"memory run for solver={solver} failed ({proc.returncode}):\n"
            f"{proc.stderr[-2000:]}"
        )
    row: dict[str, Any] = json.loads(lines[-1][len("MEMORY ") :])
    return row


MEMORY_COLUMNS = [
    ("solver", "solver"),
    ("n", "n"),
    ("K", "K"),
    ("n_iter", "iterations"),
    ("seconds", "s"),
    ("plans_bytes", "K plans MiB"),
    ("peak_rss_increase", "peak RSS increase MiB"),
    ("rss_ratio", "RSS / plans"),
    ("traced_peak", "numpy traced peak MiB"),
    ("traced_ratio", "traced / plans"),
]


def memory_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table of memory rows."""
    lines = [
        "| " + " | ".join(c[1] for c in MEMORY_COLUMNS) + " |",
        "|" + "|".join("---" for _ in MEMORY_COLUMNS) + "|",
    ]
    for r in rows:
        cells = []
        for key, _ in MEMORY_COLUMNS:
            v = r[key]
            if key.endswith("bytes") or key in ("peak_rss_increase", "traced_peak"):
                cells.append(f"{v / 2**20:.0f}")
            elif key.endswith("ratio"):
                cells.append(f"{v:.2f}x")
            elif key == "seconds":
                cells.append(f"{v:.1f}")
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The ``bench-mixer`` argument parser."""
    ap = argparse.ArgumentParser(
        prog="bench-mixer", description=(__doc__ or "").split("\n")[0]
    )
    ap.add_argument("--sizes", type=_ints, default=[256, 512, 1024])
    ap.add_argument("--agents", type=_ints, default=[6])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--n-iter", type=int, default=10)
    ap.add_argument(
        "--data", choices=tuple(CLOUD_MAKERS), default="gaussian", help="cloud kind"
    )
    ap.add_argument("--pot-max-n", type=int, default=1024, help="skip POT above n")
    ap.add_argument("--exact-max-n", type=int, default=512, help="skip exact above")
    ap.add_argument(
        "--variants",
        default=",".join(v[0] for v in VARIANTS),
        help="mixer variants to time (comma list of "
        + ", ".join(v[0] for v in VARIANTS)
        + ")",
    )
    ap.add_argument(
        "--dense-objective-max-n",
        type=int,
        default=4096,
        help="above n, a variant's objective is the solver's own float64 costs "
        "(no dense plans on the host)",
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch CPU threads (0: torch default, all cores)",
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--quality", action="store_true", help="fast solver with QUALITY_OPTIONS"
    )
    ap.add_argument(
        "--fast-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra option of the fast solver (repeatable), e.g. polish_steps=0",
    )
    ap.add_argument("--out", type=Path, default=None, help=".md or .json file")
    _add_memory_arguments(ap)
    return ap


def _add_memory_arguments(ap: argparse.ArgumentParser) -> None:
    """The ``--memory`` options (and the hidden one of its child processes)."""
    ap.add_argument(
        "--memory",
        action="store_true",
        help="measure peak memory of one mixing step per solver instead of time "
        "(each in a fresh process; default n=2048, K=12)",
    )
    ap.add_argument("--memory-n", type=int, default=2048)
    ap.add_argument("--memory-k", type=int, default=12)
    ap.add_argument("--memory-solvers", default="exact,fast")
    ap.add_argument(
        "--memory-n-iter",
        type=int,
        default=2,
        help="barycenter iterations of the memory run (>= 1: the previous and "
        "new plans then coexist; more iterations repeat the same peak)",
    )
    ap.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)


CloudMaker = Callable[[int, int, int, int], list[np.ndarray]]
#: The ``--data`` choices.
CLOUD_MAKERS: dict[str, CloudMaker] = {
    "gaussian": gaussian_clouds,
    "clustered": clustered_clouds,
    "handwritten": handwritten_clouds,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    make = CLOUD_MAKERS[args.data]
    if args.memory_child is not None:
        return _memory_child(args, make)
    if args.memory:
        return _memory_main(args)
    return _time_main(args, make)


def _memory_child(args: argparse.Namespace, make: CloudMaker) -> int:
    """``--memory-child SOLVER``: one :func:`memory_case`, printed as JSON."""
    clouds = make(args.sizes[0], args.agents[0], args.dim, args.seed)
    row = memory_case(
        clouds,
        solver=args.memory_child,
        alpha=args.alpha,
        n_iter=args.memory_n_iter,
        seed=args.seed,
        device=args.device,
    )
    print("MEMORY " + json.dumps(row), flush=True)
    return 0


def _time_main(args: argparse.Namespace, make: CloudMaker) -> int:
    """Time every method for each ``(n, K)``; print and write the table."""
    fast_options = _fast_options(args)
    variants = _variants(args.variants)
    if args.device != "cpu":  # CUDA context and kernels: not part of any timing
        fgw_barycenter(
            gaussian_clouds(64, 2, args.dim, 0),
            solver="fast",
            n_iter=2,
            device=args.device,
        )
    rows = []
    for n in args.sizes:
        for k in args.agents:
            row = run_case(
                make(n, k, args.dim, args.seed),
                alpha=args.alpha,
                n_iter=args.n_iter,
                repeats=args.repeats,
                pot=n <= args.pot_max_n,
                exact=n <= args.exact_max_n,
                device=args.device,
                fast_options=fast_options or None,
                variants=variants,
                dense_objective=n <= args.dense_objective_max_n,
            )
            _add_ratios(row)
            rows.append(row)
            print(json.dumps(row), flush=True)
    table = to_markdown(rows)
    print(table)
    meta = {
        "data": args.data,
        "dim": args.dim,
        "alpha": args.alpha,
        "n_iter": args.n_iter,
        "threads": torch.get_num_threads(),
        "device": args.device,
        "fast_options": fast_options or "defaults",
        **_versions(),
    }
    _write_out(args.out, meta, "rows", rows, table)
    return 0


def _memory_main(args: argparse.Namespace) -> int:
    rows = []
    for solver in [v.strip() for v in args.memory_solvers.split(",") if v.strip()]:
        row = measure_memory(
            solver,
            n=args.memory_n,
            k=args.memory_k,
            dim=args.dim,
            data=args.data,
            alpha=args.alpha,
            n_iter=args.memory_n_iter,
            seed=args.seed,
            threads=args.threads,
            device=args.device,
        )
        rows.append(row)
        print(json.dumps(row), flush=True)
    table = memory_markdown(rows)
    print(table)
    meta = {
        "data": args.data,
        "dim": args.dim,
        "alpha": args.alpha,
        "n_iter": args.memory_n_iter,
        "threads": args.threads,
        "device": args.device,
        **_versions(),
    }
    _write_out(args.out, meta, "memory", rows, table)
    return 0


def _variants(text: str) -> list[str]:
    """``--variants`` as names of :data:`VARIANTS` (clear error otherwise)."""
    names = [v.strip() for v in text.split(",") if v.strip()]
    known = [v[0] for v in VARIANTS]
    unknown = [v for v in names if v not in known]
    if unknown or not names:
        raise SystemExit(
            f"--variants: unknown {unknown or text!r}; choose from {known}"
        )
    return names


def _fast_options(args: argparse.Namespace) -> dict[str, Any]:
    """``--quality`` and ``--fast-option KEY=VALUE`` as the solver's options.

    Values are read as int, else float, else kept as text.
    """
    options: dict[str, Any] = dict(QUALITY_OPTIONS) if args.quality else {}
    for item in args.fast_option:
        try:
            key, text = split_key_value(item, "--fast-option")
        except ConfigError as err:
            raise SystemExit(str(err)) from err
        if not key:
            raise SystemExit(f"--fast-option expects KEY=VALUE, got {item!r}")
        options[key] = _number_or_text(text)
    return options


def _number_or_text(text: str) -> Any:
    """``text`` as an int, else a float, else unchanged."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def _versions() -> dict[str, str]:
    out = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "pot": ot.__version__,
        "numpy": np.__version__,
        "cpu_count": str(os.cpu_count()),
    }
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(0)
    return out


def _write_out(
    out: Path | None, meta: dict[str, Any], key: str, rows: list[Any], table: str
) -> None:
    """Write ``{"meta", key: rows}`` as JSON (``.json``), else meta and the table."""
    if out is None:
        return
    if out.suffix == ".json":
        out.write_text(json.dumps({"meta": meta, key: rows}, indent=2))
    else:
        out.write_text(f"{json.dumps(meta)}\n\n{table}\n")


if __name__ == "__main__":
    raise SystemExit(main())
