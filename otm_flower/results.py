"""The JSON result of one federated run, built from per-agent metrics."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from .protocol import KEY_MODALITY, KEY_N_TEST, KEY_N_TRAIN

#: Per-agent scores a result reports (``accuracy`` only for classification).
METRIC_KEYS = ("acc", "nmi", "ari", "purity", "accuracy")


def build_result(
    config: dict[str, Any],
    agent_metrics: dict[int, dict[int, dict[str, float]]],
    *,
    wall_s: float,
    bytes_up: int,
    bytes_down: int,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble the result document of a run.

    Parameters
    ----------
    config : dict
        The run config (kebab-case keys, as :meth:`RunConfig.to_dict` gives).
    agent_metrics : dict
        ``{round: {agent_id: metrics}}`` from the strategy's evaluations. Each agent
        is reported with its metrics of the latest round it answered.
    wall_s, bytes_up, bytes_down
        Run wall time, and latent-code payload bytes sent up and down.

    Returns
    -------
    dict
        ``{"dataset", "method", "task", "seed", "rounds", "agents": [...],
        "mean": {...}, "wall_s", "bytes_up", "bytes_down", "history", "config"}``;
        ``accuracy`` is ``None`` for clustering.
    """
    classify = config.get("task") == "classification"
    agents = _agent_rows(agent_metrics, classify)
    history = [
        {"round": rnd, **_mean(list(agent_metrics[rnd].values()), classify)}
        for rnd in sorted(agent_metrics)
    ]
    result: dict[str, Any] = {
        "dataset": config.get("dataset"),
        "method": config.get("method"),
        "task": config.get("task"),
        "seed": config.get("seed"),
        "rounds": config.get("num-server-rounds"),
        "agents": agents,
        "mean": _mean(agents, classify),
        "wall_s": round(wall_s, 3),
        "bytes_up": int(bytes_up),
        "bytes_down": int(bytes_down),
        "history": history,
        "config": config,
    }
    result.update(extra or {})
    return result


def _agent_rows(
    agent_metrics: dict[int, dict[int, dict[str, float]]], classify: bool
) -> list[dict[str, Any]]:
    """One row per agent, by id, with its metrics of the latest round it answered."""
    latest: dict[int, tuple[int, dict[str, float]]] = {}
    for rnd in sorted(agent_metrics):
        for agent_id, metrics in agent_metrics[rnd].items():
            latest[agent_id] = (rnd, metrics)
    return [
        _agent_row(agent_id, *latest[agent_id], classify) for agent_id in sorted(latest)
    ]


def _agent_row(
    agent_id: int, rnd: int, m: dict[str, float], classify: bool
) -> dict[str, Any]:
    """An agent's row of the result from its evaluate reply ``m`` of round ``rnd``."""
    return {
        "id": agent_id,
        "modality": int(m.get(KEY_MODALITY, -1)),
        "n_train": int(m.get(KEY_N_TRAIN, 0)),
        "n_test": int(m.get(KEY_N_TEST, 0)),
        "acc": m.get("acc"),
        "nmi": m.get("nmi"),
        "ari": m.get("ari"),
        "purity": m.get("purity"),
        "accuracy": m.get("accuracy") if classify else None,
        "round": rnd,
    }


def _mean(rows: list[dict[str, Any]], classify: bool) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for key in METRIC_KEYS:
        values = [float(r[key]) for r in rows if r.get(key) is not None]
        if key == "accuracy" and not classify:
            out[key] = None
        else:
            out[key] = sum(values) / len(values) if values else None
    return out


def write_result(result: dict[str, Any], path: str | Path) -> Path:
    """Write a result as indented JSON (creating parent folders); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, allow_nan=False, default=_finite))
    return path


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def format_summary(result: dict[str, Any]) -> str:
    """A short human-readable table of per-agent and mean test metrics.

    The first line names the data: the data set, or ``N parties' own files``
    when the server held none (:func:`otm_flower.run_data.data_label`).
    """
    from .run_data import data_label

    data = data_label(result.get("config") or {"dataset": result["dataset"]})
    lines = [
        f"{result['method']} on {data} ({result['task']}, seed "
        f"{result['seed']}, {result['rounds']} rounds, {result['wall_s']:.1f} s)",
        "agent modality  n_test    ACC    NMI    ARI PURITY  accuracy",
    ]
    rows = result["agents"] + [
        {"id": "mean", "modality": "", "n_test": "", **result["mean"]}
    ]
    for a in rows:
        acc = "-" if a.get("accuracy") is None else f"{a['accuracy']:.3f}"
        lines.append(
            f"{a['id']!s:>5} {a['modality']!s:>8} {a['n_test']!s:>7} "
            + " ".join(_fmt(a.get(k)) for k in ("acc", "nmi", "ari", "purity"))
            + f" {acc:>9}"
        )
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "     -" if value is None else f"{value:6.3f}"


def run_folder(root: str | Path, config: dict[str, Any], run_id: int) -> Path:
    """The output folder of one run: ``root/<data>-<method>-<task>-seed<s>-run<id>``."""
    stem = Path(str(config.get("dataset", "data"))).stem.lower()
    name = (
        f"{stem}-{config.get('method')}-{config.get('task')}"
        f"-seed{config.get('seed')}-run{run_id}"
    )
    return Path(root).expanduser().resolve() / name


def agreement_chance(result: dict[str, Any]) -> tuple[float, int] | None:
    """Chance level of a run's coupling agreement, and the number of classes k.

    Chance is ``sum_c p_c^2`` over the class shares ``p_c`` of the run's data set
    (``1/k`` for k balanced classes). A history entry's ``"chance"`` value wins
    where the run recorded one; otherwise the data set is read (simulation only:
    coupling agreement is a simulation diagnostic). ``None`` when neither works.
    """
    recorded = [
        a["chance"]
        for a in result.get("coupling_agreement_history") or []
        if a.get("chance") is not None
    ]
    if recorded:
        n_classes = result.get("n_classes")
        return float(recorded[-1]), int(n_classes or round(1 / recorded[-1]))
    try:
        from .loaders import load_dataset

        labels = load_dataset(str(result.get("dataset"))).labels
    except (OSError, ValueError, KeyError):
        return None
    _, counts = np.unique(labels, return_counts=True)
    shares = counts / counts.sum()
    return float((shares**2).sum()), len(counts)


def chance_label(chance: float, n_classes: int) -> str:
    """Legend text of the agreement's chance line: ``chance (1/k = 0.100, k = 10)``."""
    if abs(chance - 1 / n_classes) < 5e-4:
        return f"agreement at chance (1/k = {chance:.3f}, k = {n_classes})"
    return f"agreement at chance (sum of squared class shares = {chance:.3f})"


def history_figure(result: dict[str, Any]) -> Any:
    """A matplotlib figure of mean test metrics (and coupling agreement) per round.

    Rounds are integer ticks; with a coupling agreement, a dotted line marks its
    chance level (:func:`agreement_chance`), labelled as such. Drawn on the Agg
    canvas, without pyplot's global state.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    history = result["history"]
    rounds = [h["round"] for h in history]
    fig = Figure(figsize=(6, 4))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for key in METRIC_KEYS:
        values = [h.get(key) for h in history]
        if any(v is not None for v in values):
            ax.plot(rounds, values, marker="o", label=key.upper())
    _draw_agreement(ax, result)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("round")
    ax.set_ylabel("mean over agents (test)")
    ax.set_title(f"{result['method']} on {result['dataset']} (seed {result['seed']})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def plot_history(result: dict[str, Any], path: str | Path) -> Path:
    """Write :func:`history_figure` of ``result`` as a PNG to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    history_figure(result).savefig(path, dpi=120, bbox_inches="tight", format="png")
    return path


def _draw_agreement(ax: Any, result: dict[str, Any]) -> None:
    """The coupling agreement per round (dashed) and its chance level (dotted)."""
    agreement = result.get("coupling_agreement_history") or []
    if not agreement:
        return
    ax.plot(
        [a["round"] for a in agreement],
        [a["mean"] for a in agreement],
        linestyle="--",
        label="coupling agreement",
    )
    chance = agreement_chance(result)
    if chance is not None:
        ax.axhline(chance[0], color="grey", linestyle=":", label=chance_label(*chance))
