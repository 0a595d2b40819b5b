"""Plots of benchmark results: score per round, and the agents' latent codes."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from otm_flower.results import agreement_chance, chance_label
from simulations.benchmark.scores import (
    finite,
    group_results,
    mean_present,
    mean_score,
    method_sort_key,
    score_key,
)


def new_figure(width: float, height: float) -> Any:
    """A matplotlib figure on the Agg canvas (no pyplot, no global backend state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Any, path: str | Path) -> Path:
    """Write ``fig`` as a PNG (110 dpi, tight box), creating the folder."""
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
            value = finite(h.get(key))
            if value is not None and h.get("round") is not None:
                per_round.setdefault(int(h["round"]), []).append(value)
    rounds = sorted(per_round)
    return rounds, [float(np.mean(per_round[t])) for t in rounds]


def _agreement_curve(runs: list[dict[str, Any]]) -> tuple[list[int], list[float]]:
    """Rounds and the seed-averaged coupling agreement per round."""
    per_round: dict[int, list[float]] = {}
    for r in runs:
        for a in r.get("coupling_agreement_history") or []:
            value = finite(a.get("mean"))
            if value is not None and a.get("round") is not None:
                per_round.setdefault(int(a["round"]), []).append(value)
    rounds = sorted(per_round)
    return rounds, [float(np.mean(per_round[t])) for t in rounds]


def _draw_agreement(
    ax: Any, runs: dict[str, list[dict[str, Any]]], colours: dict[str, str]
) -> None:
    """Each method's coupling agreement per round (dashed) and its chance level."""
    drawn = None
    for method, rs in runs.items():
        rounds, values = _agreement_curve(rs)
        if rounds:
            ax.plot(
                rounds,
                values,
                linestyle="--",
                color=colours[method],
                label=f"{method}: coupling agreement",
            )
            drawn = drawn or rs[0]
    chance = None if drawn is None else agreement_chance(drawn)
    if chance is not None:
        ax.axhline(chance[0], color="grey", linestyle=":", label=chance_label(*chance))


def _draw_rounds_panel(
    ax: Any,
    title: str,
    runs: dict[str, list[dict[str, Any]]],
    colours: dict[str, str],
) -> None:
    """One (dataset, regime) panel of :func:`plot_rounds`."""
    from matplotlib.ticker import MaxNLocator

    for method, rs in runs.items():
        rounds, values = _round_curve(rs)
        style = {"color": colours[method], "label": method}
        if len(rounds) >= 2:
            ax.plot(rounds, values, marker=".", **style)
        else:
            level = values[0] if values else mean_present(mean_score(r) for r in rs)
            if level is not None:
                ax.axhline(level, linestyle="-.", **style)
    _draw_agreement(ax, runs, colours)
    keys = sorted({score_key(r) for rs in runs.values() for r in rs})
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title)
    ax.set_xlabel("round")
    ax.set_ylabel(f"mean {'/'.join(keys)} over agents")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")


def plot_rounds(results: list[dict[str, Any]], path: str | Path) -> Path:
    """Plot the mean score per round of each method, one panel per (dataset, regime).

    The score (accuracy for classification, ACC otherwise) is the mean over agents
    from each run's ``history``, averaged over seeds. Methods with a single round
    (or no history: their final mean is used) are drawn as horizontal dash-dot
    lines. Where runs track the coupling agreement, it is drawn dashed per round,
    with a dotted line at its chance level labelled as chance. Rounds are integer
    ticks.

    Returns
    -------
    Path
        The PNG written.
    """
    groups = group_results(results)
    methods = sorted({m for runs in groups.values() for m in runs}, key=method_sort_key)
    colours = {m: f"C{i % 10}" for i, m in enumerate(methods)}
    n = max(len(groups), 1)
    ncols = min(n, 3)
    nrows = math.ceil(n / ncols)
    fig = new_figure(4.5 * ncols, 3.4 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[len(groups) :]:
        ax.set_visible(False)
    if not groups:
        axes[0].set_visible(True)
        axes[0].text(0.5, 0.5, "no results", ha="center", va="center")
        axes[0].set_axis_off()
    for ax, ((dataset, regime), runs) in zip(axes, groups.items(), strict=False):
        _draw_rounds_panel(ax, f"{dataset} / {regime}", runs, colours)
    return save_png(fig, path)


def _checked_codes(
    codes: list[np.ndarray], labels: list[np.ndarray], agent_ids: list[int]
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The codes as float arrays and the labels as flat arrays, validated.

    Raises
    ------
    ValueError
        As :func:`plot_embedding` documents.
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
    return arrays, label_arrays


def _pca_2d(x: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """The rows of ``x`` on their first two principal axes (zero-padded when
    ``x`` has one column), and each axis's explained-variance ratio."""
    from sklearn.decomposition import PCA

    k = min(2, x.shape[1])
    pca = PCA(n_components=k).fit(x)
    xy = np.zeros((len(x), 2))
    xy[:, :k] = pca.transform(x)
    ratio = list(pca.explained_variance_ratio_) + [0.0] * (2 - k)
    return xy, ratio


def _scatter_panel(
    ax: Any,
    xy: np.ndarray,
    names: list[Any],
    idx: np.ndarray,
    kind: str,
    ratio: list[float],
) -> None:
    """Scatter ``xy`` coloured by group ``idx`` (``names[j]`` for group ``j``)."""
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
    arrays, label_arrays = _checked_codes(codes, labels, agent_ids)
    x = np.concatenate(arrays)
    if len(x) < 2 or x.shape[1] < 1:
        raise ValueError(f"need at least two points of dimension >= 1, got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("codes contain non-finite values")
    xy, ratio = _pca_2d(x)
    y = np.concatenate(label_arrays)
    agents = np.concatenate(
        [np.full(len(c), a) for c, a in zip(arrays, agent_ids, strict=True)]
    )
    fig = new_figure(11, 4.5)
    by_class, by_agent = fig.subplots(1, 2)
    classes, class_idx = np.unique(y, return_inverse=True)
    agent_order = list(dict.fromkeys(agent_ids))
    agent_idx = np.array([agent_order.index(a) for a in agents])
    _scatter_panel(by_class, xy, list(classes), class_idx, "class", ratio)
    _scatter_panel(by_agent, xy, agent_order, agent_idx, "agent", ratio)
    if title:
        fig.suptitle(title)
    return save_png(fig, path)


def _cmap_colour(name: str, index: int) -> Any:
    from matplotlib import colormaps

    cmap = colormaps[name]
    return cmap(index % cmap.N)


def link_rate_gains(
    results: list[dict[str, Any]],
) -> dict[str, dict[float, list[float]]]:
    """``{dataset: {anchor rate: [otm - local per seed]}}`` of clustering runs.

    Each ``otm`` run is paired with the ``local`` run of its data set and seed
    (``local`` does not read linked records, so any regime's run of it serves);
    an ``otm`` run without its ``local`` run is left out.
    """
    local: dict[tuple[str, Any], float] = {}
    for (dataset, _), runs in group_results(results).items():
        for r in runs.get("local", []):
            if (score := mean_score(r)) is not None:
                local[(dataset, r.get("seed"))] = score
    gains: dict[str, dict[float, list[float]]] = {}
    for (dataset, _), runs in group_results(results).items():
        for r in runs.get("otm", []):
            base = local.get((dataset, r.get("seed")))
            score = mean_score(r)
            if base is None or score is None:
                continue
            rate = float((r.get("config") or {}).get("anchor-rate", 0.0))
            gains.setdefault(dataset, {}).setdefault(rate, []).append(score - base)
    return gains


def _local_scores(results: list[dict[str, Any]]) -> dict[str, list[float]]:
    """``{dataset: [local mean score per seed]}`` of the runs (one per seed)."""
    by_seed: dict[str, dict[Any, float]] = {}
    for (dataset, _), runs in group_results(results).items():
        for r in runs.get("local", []):
            if (score := mean_score(r)) is not None:
                by_seed.setdefault(dataset, {})[r.get("seed")] = score
    return {d: list(seeds.values()) for d, seeds in by_seed.items()}


def _points(values: list[float]) -> str:
    """``mean ± std`` (sample std) of fractions, in points, signed."""
    mean = 100 * float(np.mean(values))
    if len(values) < 2:
        return f"{mean:+.1f}"
    return f"{mean:+.1f} ± {100 * float(np.std(values, ddof=1)):.1f}"


def link_rate_table(results: list[dict[str, Any]]) -> str:
    """Markdown table of :func:`link_rate_gains`: per data set, ``local``'s score
    and ``otm − local`` (points, mean ± std over seeds, seeds in brackets) at
    each link rate."""
    from simulations.benchmark.markdown import markdown_table

    gains = link_rate_gains(results)
    local = _local_scores(results)
    rates = sorted({rate for by_rate in gains.values() for rate in by_rate})
    header = ["data set", "local ACC", *(f"otm − local at {r:.0%}" for r in rates)]
    rows = [
        [
            dataset,
            _points(local[dataset]).lstrip("+"),
            *(
                f"{_points(by_rate[r])} ({len(by_rate[r])})" if r in by_rate else "-"
                for r in rates
            ),
        ]
        for dataset, by_rate in sorted(gains.items())
    ]
    return "\n".join(markdown_table(header, rows))


def plot_link_rate(results: list[dict[str, Any]], path: str | Path) -> Path:
    """Plot ``otm``'s gain over ``local`` (points, mean ± std over seeds)
    against the share of linked records, one line per data set.

    Raises
    ------
    ValueError
        When no ``otm`` run has its ``local`` run of the same data set and seed.
    """
    gains = link_rate_gains(results)
    if not gains:
        raise ValueError("no otm run with a local run of the same data set and seed")
    fig = new_figure(6.0, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    for i, (dataset, by_rate) in enumerate(sorted(gains.items())):
        rates = sorted(by_rate)
        dodge = 1.04 ** (i - (len(gains) - 1) / 2)  # error bars side by side
        mean = [100 * float(np.mean(by_rate[x])) for x in rates]
        std = [
            100 * float(np.std(by_rate[x], ddof=1)) if len(by_rate[x]) > 1 else 0.0
            for x in rates
        ]
        seeds = sorted({len(by_rate[x]) for x in rates})
        label = f"{dataset} ({'/'.join(map(str, seeds))} seeds)"
        at = [rate * dodge for rate in rates]
        ax.errorbar(at, mean, yerr=std, marker="o", capsize=3, label=label)
    ax.axhline(0.0, color="grey", linewidth=0.8)
    ax.axhline(-0.5, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xscale("log")
    rates = sorted({rate for by_rate in gains.values() for rate in by_rate})
    ax.set_xticks(rates, [f"{rate:.0%}" for rate in rates])
    ax.minorticks_off()
    ax.set_xlabel("share of linked records (anchor-rate)")
    ax.set_ylabel("otm − local, test ACC (points)")
    ax.set_title("Gain of OTM over training alone against the link rate")
    ax.legend(fontsize=8)
    return save_png(fig, path)


def main(argv: list[str] | None = None) -> int:
    """``python -m simulations.benchmark.plots link-rate --out PNG DIR...``: the
    plot, and its table (markdown) on stdout."""
    import argparse

    from simulations.benchmark.grid import load_results

    parser = argparse.ArgumentParser(
        prog="python -m simulations.benchmark.plots",
        description="plots of bench folders",
    )
    parser.add_argument("plot", choices=["link-rate"])
    parser.add_argument("folders", nargs="+", metavar="DIR")
    parser.add_argument("--out", required=True, help="PNG file to write")
    args = parser.parse_args(argv)
    results = [r for folder in args.folders for r in load_results(folder)]
    print(f"plots: wrote {plot_link_rate(results, args.out)}")
    print(link_rate_table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
