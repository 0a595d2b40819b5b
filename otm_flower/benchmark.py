"""Benchmark grids: plan runs, resume an interrupted grid, summarise and plot results.

A benchmark is a grid of runs, one per (dataset, method, regime, seed). Each run
writes its result document (:func:`otm_flower.results.build_result`, plus a
top-level ``"regime"`` key) to ``<out_dir>/runs/<run name>.json``; a grid resumes by
running only :func:`pending` runs. This module is pure Python (numpy, matplotlib,
scikit-learn): it neither imports nor runs Flower.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import METHOD_TASK

#: Regime name -> run-config overrides. Adding a regime is one entry here.
REGIMES: dict[str, dict[str, Any]] = {
    "unaligned": {"task": "clustering", "unaligned-rate": 1.0},
    "classification": {"task": "classification", "unaligned-rate": 1.0},
    "anchored": {"task": "clustering", "unaligned-rate": 1.0, "anchor-rate": 0.05},
}

#: Row order of methods in tables and legends; others follow alphabetically.
METHOD_ORDER = (
    "otm",
    "otm-w",
    "otm-gw",
    "otm-nomix",
    "otm-fedavg",
    "otm-head",
    "fedavg",
    "local",
    "raw",
    "oracle",
)

#: Keys a result document must have to count as finished.
REQUIRED_KEYS = ("dataset", "method", "task", "seed", "agents", "mean")

_UNSAFE = re.compile(r"[^a-z0-9_-]+")


def _safe(text: str) -> str:
    """Lowercase ``text`` and replace each run of characters outside [a-z0-9-_]."""
    return _UNSAFE.sub("-", text.lower()).strip("-") or "x"


def dataset_label(dataset: Any) -> str:
    """Short name of a data set: the file stem of a path, lowercase, path-safe."""
    return _safe(Path(str(dataset)).stem)


@dataclass(frozen=True)
class BenchRun:
    """One cell of a benchmark grid.

    Parameters
    ----------
    dataset : str
        Data-set name or path (as the ``dataset`` run-config key takes it).
    method : str
        Method name (``"otm"``, ``"fedavg"``, ...).
    regime : str
        A key of :data:`REGIMES`.
    seed : int
        Run seed.
    """

    dataset: str
    method: str
    regime: str
    seed: int

    def __post_init__(self) -> None:
        if self.regime not in REGIMES:
            raise ValueError(
                f"unknown regime {self.regime!r}; known: {', '.join(REGIMES)}"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an int, got {self.seed!r}")

    @property
    def name(self) -> str:
        """Path-safe file stem, e.g. ``handwritten__otm__unaligned__seed0``."""
        return "__".join(
            (
                dataset_label(self.dataset),
                _safe(self.method),
                _safe(self.regime),
                f"seed{self.seed}",
            )
        )

    def overrides(
        self, rounds: int | None = None, extra: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Run config (kebab case) of this run.

        Parameters
        ----------
        rounds : int, optional
            ``num-server-rounds``; left to the default when ``None``.
        extra : Mapping[str, Any], optional
            Further keys (e.g. per-method hyperparameters), applied last; snake-case
            keys are turned into kebab case.

        Returns
        -------
        dict
            ``dataset``, ``method``, ``seed``, the regime's overrides,
            ``num-server-rounds`` and ``extra``, later keys winning. The regime
            itself is not a run-config key: the runner stores it in the result.
        """
        config: dict[str, Any] = {
            "dataset": self.dataset,
            "method": self.method,
            "seed": self.seed,
            **REGIMES[self.regime],
        }
        if rounds is not None:
            config["num-server-rounds"] = rounds
        for key, value in (extra or {}).items():
            config[key.replace("_", "-")] = value
        return config


def _nonempty(name: str, values: Iterable[Any]) -> list[Any]:
    if isinstance(values, str):
        raise ValueError(
            f"{name} must be a sequence of values, not the string {values!r}"
        )
    out = list(dict.fromkeys(values))
    if not out:
        raise ValueError(f"{name} must not be empty")
    return out


def plan_grid(
    datasets: Iterable[str],
    methods: Iterable[str],
    regimes: Iterable[str],
    seeds: Iterable[int],
) -> list[BenchRun]:
    """All runs of a grid, ordered by dataset, regime, seed, then method.

    Duplicated values are dropped (first occurrence kept).

    Raises
    ------
    ValueError
        If an input is empty or a bare string, a regime is unknown, or a seed is
        not an int.
    """
    ds = _nonempty("datasets", datasets)
    ms = _nonempty("methods", methods)
    rs = _nonempty("regimes", regimes)
    ss = _nonempty("seeds", seeds)
    unknown = [r for r in rs if r not in REGIMES]
    if unknown:
        raise ValueError(f"unknown regime(s) {unknown}; known: {', '.join(REGIMES)}")
    return [BenchRun(d, m, r, s) for d in ds for r in rs for s in ss for m in ms]


def applies(run: BenchRun) -> bool:
    """Whether the run's method can run in its regime (``otm-head`` needs a task
    head, so only the classification regime)."""
    task = REGIMES[run.regime].get("task", "clustering")
    return METHOD_TASK.get(run.method, task) == task


def result_path(out_dir: str | Path, run: BenchRun) -> Path:
    """Where a run's result document lives: ``out_dir/runs/<run.name>.json``."""
    return Path(out_dir) / "runs" / f"{run.name}.json"


def _read_result(path: Path) -> dict[str, Any] | None:
    """A result document, or ``None`` (with a warning) if unreadable or incomplete."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as err:  # JSONDecodeError, UnicodeDecodeError
        warnings.warn(f"unreadable result {path}: {err}", stacklevel=3)
        return None
    if not isinstance(doc, dict) or any(k not in doc for k in REQUIRED_KEYS):
        warnings.warn(
            f"incomplete result {path}: expected a JSON object with keys "
            f"{', '.join(REQUIRED_KEYS)}",
            stacklevel=3,
        )
        return None
    return doc


def pending(runs: Iterable[BenchRun], out_dir: str | Path) -> list[BenchRun]:
    """Runs still to do: result missing, or unreadable/corrupt (warned about)."""
    return [
        run
        for run in runs
        if not (path := result_path(out_dir, run)).is_file()
        or _read_result(path) is None
    ]


def load_results(out_dir: str | Path) -> list[dict[str, Any]]:
    """All readable result documents under ``out_dir/runs`` (sorted by file name).

    Unreadable files are skipped with a warning. A result without a ``"regime"``
    key gets ``"classification"`` or ``"unaligned"`` from its task.
    """
    results = []
    for path in sorted((Path(out_dir) / "runs").glob("*.json")):
        doc = _read_result(path)
        if doc is None:
            continue
        if doc.get("regime") is None:
            task = doc.get("task")
            doc["regime"] = (
                "classification" if task == "classification" else "unaligned"
            )
        results.append(doc)
    return results


# --------------------------------------------------------------------------- stats


def _is_classification(result: Mapping[str, Any]) -> bool:
    return result.get("task") == "classification"


def score_key(result: Mapping[str, Any]) -> str:
    """The headline metric of a result: ``accuracy`` (classification) or ``acc``."""
    return "accuracy" if _is_classification(result) else "acc"


def _num(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def mean_score(result: Mapping[str, Any], key: str | None = None) -> float | None:
    """Mean over agents of ``key`` (default: :func:`score_key`)."""
    return _num((result.get("mean") or {}).get(key or score_key(result)))


def weakest_score(result: Mapping[str, Any]) -> float | None:
    """Minimum over agents of the headline metric (``None`` if no agent has it)."""
    key = score_key(result)
    values = [
        v for a in result.get("agents", []) if (v := _num(a.get(key))) is not None
    ]
    return min(values) if values else None


def _present(values: Iterable[float | None]) -> list[float]:
    return [v for v in values if v is not None]


def _mean(values: Iterable[float | None]) -> float | None:
    vals = _present(values)
    return float(np.mean(vals)) if vals else None


def format_pm(values: Iterable[float | None], digits: int = 3) -> str:
    """``mean ± std`` (sample std, ddof=1) of the present values.

    One value is shown alone, none as ``-``.
    """
    vals = _present(values)
    if not vals:
        return "-"
    mean = float(np.mean(vals))
    if len(vals) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {float(np.std(vals, ddof=1)):.{digits}f}"


def _method_key(method: str) -> tuple[int, str]:
    order = METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)
    return order, method


def _regime_key(regime: str) -> tuple[int, str]:
    names = list(REGIMES)
    return (names.index(regime) if regime in names else len(names)), regime


def _regime(result: Mapping[str, Any]) -> str:
    regime = result.get("regime")
    if regime is None:
        return "classification" if _is_classification(result) else "unaligned"
    return str(regime)


Groups = dict[tuple[str, str], dict[str, list[dict[str, Any]]]]


def group_results(results: Iterable[dict[str, Any]]) -> Groups:
    """``{(dataset label, regime): {method: [results]}}``, in display order."""
    groups: Groups = {}
    for r in results:
        key = (dataset_label(r.get("dataset")), _regime(r))
        groups.setdefault(key, {}).setdefault(str(r.get("method")), []).append(r)
    return {
        key: {m: groups[key][m] for m in sorted(groups[key], key=_method_key)}
        for key in sorted(groups, key=lambda k: (k[0], _regime_key(k[1])))
    }


def _task(runs: dict[str, list[dict[str, Any]]]) -> str:
    tasks = {str(r.get("task")) for rs in runs.values() for r in rs}
    return "/".join(sorted(tasks))


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


SUMMARY_COLUMNS = (
    "method",
    "seeds",
    "ACC",
    "NMI",
    "ARI",
    "accuracy",
    "weakest agent",
    "coupling agreement",
    "wall s",
    "MB/run",
)


def summary_table(results: list[dict[str, Any]]) -> str:
    """Markdown tables, one section per (dataset, regime), one row per method.

    ACC/NMI/ARI/accuracy are the per-run means over agents, then mean ± std over
    seeds (runs); ``weakest agent`` is the per-run minimum over agents of the
    headline metric (accuracy for classification, ACC otherwise); ``MB/run`` is
    ``(bytes_up + bytes_down) / 1e6``, averaged over runs.
    """
    if not results:
        return "_No results._\n"
    lines: list[str] = []
    for (dataset, regime), runs in group_results(results).items():
        lines += [f"### {dataset} / {regime} ({_task(runs)})", ""]
        rows = []
        for method, rs in runs.items():
            wall = _mean(_num(r.get("wall_s")) for r in rs)
            mb = _mean(
                (int(r.get("bytes_up") or 0) + int(r.get("bytes_down") or 0)) / 1e6
                for r in rs
            )
            rows.append(
                [
                    method,
                    str(len(rs)),
                    *(
                        format_pm(mean_score(r, k) for r in rs)
                        for k in ("acc", "nmi", "ari")
                    ),
                    format_pm(
                        mean_score(r, "accuracy") for r in rs if _is_classification(r)
                    ),
                    format_pm(weakest_score(r) for r in rs),
                    format_pm(_num(r.get("coupling_agreement")) for r in rs),
                    "-" if wall is None else f"{wall:.1f}",
                    "-" if mb is None else f"{mb:.2f}",
                ]
            )
        lines += [*_table(SUMMARY_COLUMNS, rows), ""]
    return "\n".join(lines)


GAINS_COLUMNS = (
    "dataset",
    "regime",
    "score",
    "otm",
    "otm - local",
    "otm - fedavg",
    "weakest: otm - local",
    "local-to-oracle gap closed",
)


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.3f}"


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _over_seeds(
    runs: Mapping[str, list[dict[str, Any]]],
    method: str,
    stat: Callable[[dict[str, Any]], float | None],
) -> float | None:
    """Mean over a method's runs of a per-run statistic (``None`` if absent)."""
    return _mean(stat(r) for r in runs.get(method, []))


def gains(results: list[dict[str, Any]]) -> str:
    """Markdown table of OTM's gains, one row per (dataset, regime).

    Scores (accuracy for classification, ACC otherwise) are averaged over agents,
    then over seeds. Columns: OTM minus ``local`` and minus ``fedavg``; the
    weakest-agent gain over ``local``; and the fraction of the local-to-oracle gap
    that OTM closes, ``(otm - local) / (oracle - local)``. A cell is ``-`` when a
    method is missing, or (gap) when ``oracle - local <= 0``.
    """
    if not results:
        return "_No results._\n"
    rows = []
    for (dataset, regime), runs in group_results(results).items():
        otm, local, oracle, fedavg = (
            _over_seeds(runs, m, mean_score)
            for m in ("otm", "local", "oracle", "fedavg")
        )
        gap = _diff(oracle, local)
        gain = _diff(otm, local)
        closed = "-" if gain is None or gap is None or gap <= 0 else f"{gain / gap:.1%}"
        keys = {score_key(r) for rs in runs.values() for r in rs}
        rows.append(
            [
                dataset,
                regime,
                "/".join(sorted(keys)),
                "-" if otm is None else f"{otm:.3f}",
                _signed(gain),
                _signed(_diff(otm, fedavg)),
                _signed(
                    _diff(
                        _over_seeds(runs, "otm", weakest_score),
                        _over_seeds(runs, "local", weakest_score),
                    )
                ),
                closed,
            ]
        )
    return "\n".join(_table(GAINS_COLUMNS, rows)) + "\n"


# --------------------------------------------------------------------------- plots


def _new_figure(width: float, height: float) -> Any:
    """A matplotlib figure on the Agg canvas (no pyplot, no global backend state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight", format="png")
    return path


def _round_curve(runs: list[dict[str, Any]]) -> tuple[list[int], list[float]]:
    """Rounds and the seed-averaged mean score per round from ``history``."""
    per_round: dict[int, list[float]] = {}
    for r in runs:
        key = score_key(r)
        for h in r.get("history") or []:
            value = _num(h.get(key))
            if value is not None and h.get("round") is not None:
                per_round.setdefault(int(h["round"]), []).append(value)
    rounds = sorted(per_round)
    return rounds, [float(np.mean(per_round[t])) for t in rounds]


def plot_rounds(results: list[dict[str, Any]], path: str | Path) -> Path:
    """Plot the mean score per round of each method, one panel per (dataset, regime).

    The score (accuracy for classification, ACC otherwise) is the mean over agents
    from each run's ``history``, averaged over seeds. Methods with a single round
    (or no history: their final mean is used) are drawn as horizontal lines.

    Returns
    -------
    Path
        The PNG written.
    """
    groups = group_results(results)
    methods = sorted({m for runs in groups.values() for m in runs}, key=_method_key)
    colours = {m: f"C{i % 10}" for i, m in enumerate(methods)}
    n = max(len(groups), 1)
    ncols = min(n, 3)
    nrows = math.ceil(n / ncols)
    fig = _new_figure(4.5 * ncols, 3.4 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[len(groups) :]:
        ax.set_visible(False)
    if not groups:
        axes[0].set_visible(True)
        axes[0].text(0.5, 0.5, "no results", ha="center", va="center")
        axes[0].set_axis_off()
    for ax, ((dataset, regime), runs) in zip(axes, groups.items(), strict=False):
        for method, rs in runs.items():
            rounds, values = _round_curve(rs)
            style = {"color": colours[method], "label": method}
            if len(rounds) >= 2:
                ax.plot(rounds, values, marker=".", **style)
            else:
                level = values[0] if values else _mean(mean_score(r) for r in rs)
                if level is not None:
                    ax.axhline(level, linestyle="--", **style)
        keys = sorted({score_key(r) for rs in runs.values() for r in rs})
        ax.set_title(f"{dataset} / {regime}")
        ax.set_xlabel("round")
        ax.set_ylabel(f"mean {'/'.join(keys)} over agents")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return _save(fig, path)


def plot_embedding(
    codes: list[np.ndarray],
    labels: list[np.ndarray],
    agent_ids: list[int],
    path: str | Path,
    title: str = "",
) -> Path:
    """Scatter a 2-D PCA of the agents' latent codes, by class and by agent.

    Parameters
    ----------
    codes : list of ndarray
        One ``(n_i, d)`` array per agent, all of the same latent dimension ``d``.
    labels : list of ndarray
        One ``(n_i,)`` array of class labels per agent.
    agent_ids : list of int
        Agent id per entry of ``codes``.
    path : str or Path
        PNG to write.
    title : str
        Figure title.

    Returns
    -------
    Path
        The PNG written.

    Raises
    ------
    ValueError
        On mismatched list lengths, non-2-D codes, differing latent dimensions,
        label/code length mismatch, non-finite codes or fewer than two points.
    """
    if not codes:
        raise ValueError("codes must not be empty")
    if not len(codes) == len(labels) == len(agent_ids):
        raise ValueError(
            f"codes, labels and agent_ids differ in length: "
            f"{len(codes)}, {len(labels)}, {len(agent_ids)}"
        )
    arrays = [np.asarray(c, dtype=float) for c in codes]
    label_arrays = [np.asarray(y).reshape(-1) for y in labels]
    for i, (c, y) in enumerate(zip(arrays, label_arrays, strict=True)):
        if c.ndim != 2:
            raise ValueError(f"codes[{i}] must be 2-D (n, d), got shape {c.shape}")
        if c.shape[1] != arrays[0].shape[1]:
            raise ValueError(
                f"latent dimensions differ: codes[0] has {arrays[0].shape[1]}, "
                f"codes[{i}] has {c.shape[1]}"
            )
        if len(y) != len(c):
            raise ValueError(f"labels[{i}] has {len(y)} entries for {len(c)} codes")
    x = np.concatenate(arrays)
    if len(x) < 2 or x.shape[1] < 1:
        raise ValueError(f"need at least two points of dimension >= 1, got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("codes contain non-finite values")

    from sklearn.decomposition import PCA

    k = min(2, x.shape[1])
    pca = PCA(n_components=k).fit(x)
    xy = np.zeros((len(x), 2))
    xy[:, :k] = pca.transform(x)
    ratio = list(pca.explained_variance_ratio_) + [0.0] * (2 - k)
    y = np.concatenate(label_arrays)
    agents = np.concatenate(
        [np.full(len(c), a) for c, a in zip(arrays, agent_ids, strict=True)]
    )

    fig = _new_figure(11, 4.5)
    by_class, by_agent = fig.subplots(1, 2)
    classes, class_idx = np.unique(y, return_inverse=True)
    agent_order = list(dict.fromkeys(agent_ids))
    agent_idx = np.array([agent_order.index(a) for a in agents])
    panels: list[tuple[Any, list[Any], np.ndarray, str]] = [
        (by_class, list(classes), class_idx, "class"),
        (by_agent, agent_order, agent_idx, "agent"),
    ]
    for ax, names, idx, kind in panels:
        cmap = "tab10" if len(names) <= 10 else "tab20"
        for j, g in enumerate(names):
            mask = idx == j
            ax.scatter(
                xy[mask, 0],
                xy[mask, 1],
                s=6,
                alpha=0.6,
                color=_cmap_colour(cmap, j),
                label=f"{kind} {g}",
            )
        ax.set_title(f"coloured by {kind}")
        ax.set_xlabel(f"PC1 ({ratio[0]:.0%})")
        ax.set_ylabel(f"PC2 ({ratio[1]:.0%})")
        if len(names) <= 20:
            ax.legend(fontsize="x-small", markerscale=2, loc="best")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def _cmap_colour(name: str, index: int) -> Any:
    from matplotlib import colormaps

    cmap = colormaps[name]
    return cmap(index % cmap.N)


# --------------------------------------------------------------------------- report


def _seed_key(seed: Any) -> tuple[bool, float, str]:
    numeric = isinstance(seed, int | float) and not isinstance(seed, bool)
    return not numeric, float(seed) if numeric else 0.0, str(seed)


def write_summary(out_dir: str | Path, results: list[dict[str, Any]]) -> Path:
    """Write ``out_dir/summary.md`` (tables) and ``out_dir/rounds.png``.

    Returns
    -------
    Path
        The summary file.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_rounds(results, out_dir / "rounds.png")

    def listed(values: Iterable[Any], key: Any = None) -> str:
        return ", ".join(str(v) for v in sorted(set(values), key=key)) or "-"

    header = (
        f"Datasets: {listed(dataset_label(r.get('dataset')) for r in results)}; "
        f"regimes: {listed((_regime(r) for r in results), _regime_key)}; "
        f"methods: {listed((str(r.get('method')) for r in results), _method_key)}; "
        f"seeds: {listed((r.get('seed') for r in results), _seed_key)}; "
        f"runs: {len(results)}."
    )
    text = "\n".join(
        [
            "# Benchmark summary",
            "",
            header,
            "",
            "## Results (mean ± std over seeds)",
            "",
            summary_table(results),
            "## Gains of OTM",
            "",
            gains(results),
            "## Score per round",
            "",
            "![score per round](rounds.png)",
            "",
        ]
    )
    path = out_dir / "summary.md"
    path.write_text(text)
    return path
