"""The JSON result of one federated run, built from per-agent metrics."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .protocol import KEY_MODALITY, KEY_N_TEST, KEY_N_TRAIN

METRIC_KEYS = ("acc", "nmi", "ari", "accuracy")


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
    """A short human-readable table of per-agent and mean test metrics."""
    lines = [
        f"{result['method']} on {result['dataset']} ({result['task']}, seed "
        f"{result['seed']}, {result['rounds']} rounds, {result['wall_s']:.1f} s)",
        "agent modality  n_test    ACC    NMI    ARI  accuracy",
    ]
    rows = result["agents"] + [
        {"id": "mean", "modality": "", "n_test": "", **result["mean"]}
    ]
    for a in rows:
        acc = "-" if a.get("accuracy") is None else f"{a['accuracy']:.3f}"
        lines.append(
            f"{a['id']!s:>5} {a['modality']!s:>8} {a['n_test']!s:>7} "
            + " ".join(_fmt(a.get(k)) for k in ("acc", "nmi", "ari"))
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


def plot_history(result: dict[str, Any], path: str | Path) -> Path:
    """Plot mean test metrics (and coupling agreement) per round to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = result["history"]
    rounds = [h["round"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in METRIC_KEYS:
        values = [h.get(key) for h in history]
        if any(v is not None for v in values):
            ax.plot(rounds, values, marker="o", label=key.upper())
    agreement = result.get("coupling_agreement_history") or []
    if agreement:
        ax.plot(
            [a["round"] for a in agreement],
            [a["mean"] for a in agreement],
            linestyle="--",
            label="coupling agreement",
        )
    ax.set_xlabel("round")
    ax.set_ylabel("mean over agents (test)")
    ax.set_title(f"{result['method']} on {result['dataset']} (seed {result['seed']})")
    ax.grid(alpha=0.3)
    ax.legend()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path
