"""Round benchmark: OTM against FedAvg per round, and server time against agents.

Two measurements, both through :func:`simulations.runner.simulate_inprocess` (the
real ServerApp and ClientApp code on an in-process grid, agents one after another
in this process with one thread each):

``rounds``
    OTM and FedAvg with the same run config (data set, rounds, local epochs,
    seed): wall time per round, split into the agents' time (measured by a client
    mod around every ClientApp call) and the rest (server: strategy, mixing,
    message (de)serialisation), OTM's mixing seconds, and the payload bytes up
    and down per round; then the OTM / FedAvg round-time ratio.
``scale``
    OTM with ``agents-per-modality`` 1, 2, 5, 10 (Handwritten: 6, 12, 30, 60
    agents): server seconds per round (mean of the strategy's mixing seconds, and
    wall minus agents' time) against the number of agents, compared with linear
    growth from the smallest run; optionally the server's mixer alone
    (:class:`otm_flower.code_mixer.CodeMixer` built from the run config) on K
    Gaussian clouds of a fixed size, where codes per agent do not shrink as the
    agents multiply. Writes a PNG plot.

Tables are printed, and written as JSON (and the plot) under ``--out``.
Run ``python -m simulations.bench_rounds --help``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from flwr.app import Context, Message

from otm_flower import protocol as P
from otm_flower.config import ConfigError
from otm_flower.data import DataError
from simulations.overrides import parse_set

if TYPE_CHECKING:
    from otm_flower.code_mixer import CodeMixer

METHODS = ("otm", "fedavg")
DEFAULT_APM = (1, 2, 5, 10)


class ClientClock:
    """A Flower client mod that adds up the seconds spent in the ClientApp.

    Everything the agents do (restore, train, encode, evaluate) runs inside it; what
    remains of a run's time is the server's (strategy, mixing) and the in-process
    transport's (message serialisation). It keeps wall seconds
    (``time.perf_counter``) and CPU seconds of this process
    (``time.process_time``; everything runs in this process, one thread each, so
    on an idle machine the two agree, and on a shared one CPU seconds are the
    less disturbed by other jobs). Per server round (read from the message's
    ``config`` record, as both OTM and FedAvg send it) it keeps the agents'
    seconds and the first call's start and last call's end, from which
    :meth:`round_walls` gives each round's time.
    """

    def __init__(self) -> None:
        self.seconds = 0.0
        self.cpu_seconds = 0.0
        self.by_type: dict[str, float] = {}
        self.by_round: dict[int, float] = {}
        self.spans: dict[int, list[float]] = {}
        self.cpu_spans: dict[int, list[float]] = {}
        self.calls = 0

    def __call__(
        self,
        message: Message,
        context: Context,
        call_next: Callable[[Message, Context], Message],
    ) -> Message:
        """Time ``call_next`` (the ClientApp or the next mod)."""
        rnd = _server_round(message)
        start, cpu_start = time.perf_counter(), time.process_time()
        try:
            return call_next(message, context)
        finally:
            end, cpu_end = time.perf_counter(), time.process_time()
            elapsed = end - start
            self.seconds += elapsed
            self.cpu_seconds += cpu_end - cpu_start
            kind = message.metadata.message_type
            self.by_type[kind] = self.by_type.get(kind, 0.0) + elapsed
            self.by_round[rnd] = self.by_round.get(rnd, 0.0) + elapsed
            for spans, t0, t1 in (
                (self.spans, start, end),
                (self.cpu_spans, cpu_start, cpu_end),
            ):
                span = spans.setdefault(rnd, [t0, t1])
                span[0], span[1] = min(span[0], t0), max(span[1], t1)
            self.calls += 1

    def round_walls(self, *, cpu: bool = False) -> list[float]:
        """Seconds of each round (wall, or with ``cpu`` CPU), in round order.

        Round r runs from its first ClientApp call to round r+1's first call (so
        it holds its train calls, the server's aggregation and mixing, its
        evaluate calls and the next round's configuration); the last round ends
        with its last call.
        """
        spans = self.cpu_spans if cpu else self.spans
        rounds = sorted(spans)
        walls = []
        for i, rnd in enumerate(rounds):
            end = spans[rounds[i + 1]][0] if i + 1 < len(rounds) else spans[rnd][1]
            walls.append(end - spans[rnd][0])
        return walls


def _server_round(message: Message) -> int:
    """The ``server-round`` of a message's ``config`` record (0 if absent)."""
    try:
        value = message.content.config_records[P.CONFIG_RECORD][P.KEY_ROUND]
        return int(value)  # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError):
        return 0


def base_settings(
    dataset: str, rounds: int, seed: int, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Run-config keys shared by every benchmark run (no files written)."""
    return {
        "dataset": dataset,
        "num-server-rounds": rounds,
        "seed": seed,
        "output-dir": "",
        "diagnostics-dir": "",
        "out": "",
        **(extra or {}),
    }


def measure_run(settings: dict[str, Any]) -> dict[str, Any]:
    """Run one simulation in process; return its per-round timing and bytes row.

    The data set is loaded (and split among agents) before the clock starts, so
    the times are those of the rounds.
    """
    from otm_flower.agent import load_agents
    from otm_flower.config import parse_run_config
    from simulations.runner import simulate_inprocess

    config = parse_run_config(settings)
    load_agents(config)  # cached per process: the rounds do not pay for loading
    clock = ClientClock()
    result, grid = simulate_inprocess(config, mods=[clock])
    return {
        **_run_fields(config, result, len(list(grid.get_node_ids()))),
        **_time_fields(result, clock, int(config.num_server_rounds)),
        **_byte_fields(result, clock, int(config.num_server_rounds)),
    }


def _run_fields(config: Any, result: dict[str, Any], agents: int) -> dict[str, Any]:
    """The run's settings in a :func:`measure_run` row."""
    n_train = [int(a["n_train"]) for a in result["agents"]]
    return {
        "method": config.method,
        "agents": agents,
        "agents_per_modality": config.agents_per_modality,
        "rounds": int(config.num_server_rounds),
        "local_epochs": config.local_epochs,
        "codes_per_agent": min(min(n_train), config.mix_batch_size)
        if n_train
        else None,
    }


def _time_fields(
    result: dict[str, Any], clock: ClientClock, rounds: int
) -> dict[str, Any]:
    """Wall and CPU seconds per round in a :func:`measure_run` row."""
    wall = float(result["wall_s"])
    mix = [float(s) for s in result.get("mix_seconds") or []]
    walls = clock.round_walls()
    cpu_walls = clock.round_walls(cpu=True)
    steady = walls[1:] or walls
    cpu_round = float(np.mean(cpu_walls)) if cpu_walls else 0.0
    phases = {
        f"phase_{name}_round_s": float(sec) / rounds
        for name, sec in (result.get("phase_seconds") or {}).items()
    }
    return {
        **phases,
        "wall_s": wall,
        "round_s": wall / rounds,
        "client_round_s": clock.seconds / rounds,
        "client_train_round_s": clock.by_type.get("train", 0.0) / rounds,
        "client_evaluate_round_s": clock.by_type.get("evaluate", 0.0) / rounds,
        "server_round_s": max(wall - clock.seconds, 0.0) / rounds,
        "mix_round_s": float(np.mean(mix)) if mix else None,
        "round_walls": walls,
        "client_by_round": [clock.by_round[r] for r in sorted(clock.by_round)],
        "steady_round_s": float(np.mean(steady)) if steady else None,
        "cpu_round_s": cpu_round,
        "cpu_steady_round_s": float(np.mean(cpu_walls[1:] or cpu_walls))
        if cpu_walls
        else None,
        "client_cpu_round_s": clock.cpu_seconds / rounds,
        "server_cpu_round_s": max(cpu_round - clock.cpu_seconds / rounds, 0.0),
        "cpu_round_walls": cpu_walls,
        "mix_seconds": mix,
    }


def _byte_fields(
    result: dict[str, Any], clock: ClientClock, rounds: int
) -> dict[str, Any]:
    """Payload bytes, client calls and the final score in a :func:`measure_run` row."""
    return {
        "bytes_up": int(result["bytes_up"]),
        "bytes_down": int(result["bytes_down"]),
        "bytes_up_round": result["bytes_up"] / rounds,
        "bytes_down_round": result["bytes_down"] / rounds,
        "client_calls": clock.calls,
        "acc": result["mean"].get("acc"),
    }


def rounds_table(
    dataset: str,
    *,
    rounds: int,
    seed: int,
    extra: dict[str, Any] | None = None,
    methods: Sequence[str] = METHODS,
    repeats: int = 1,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """OTM and FedAvg with the same settings; rows and the OTM / FedAvg ratios.

    With ``repeats`` > 1 the method order alternates (OTM, FedAvg, FedAvg, OTM,
    ...) so that warm-up and drifting machine load fall on both; each method's row
    is the mean of its runs (every run is kept under ``runs``).
    """
    runs = []
    for rep in range(max(repeats, 1)):
        order = list(methods) if rep % 2 == 0 else list(reversed(methods))
        for method in order:
            settings = base_settings(dataset, rounds, seed, {**(extra or {})})
            settings["method"] = method
            row = measure_run(settings)
            row["repeat"] = rep
            progress(json.dumps({k: v for k, v in row.items() if k != "mix_seconds"}))
            runs.append(row)
    rows = [average_runs([r for r in runs if r["method"] == m]) for m in methods]
    return {
        "rows": rows,
        "runs": runs,
        "repeats": max(repeats, 1),
        **round_ratios(rows),
    }


def average_runs(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One row from repeated runs of a method: floats and float lists averaged."""
    out = dict(runs[0])
    for key, value in runs[0].items():
        values = [r.get(key) for r in runs]
        if any(v is None for v in values) or isinstance(value, bool):
            continue
        if isinstance(value, float):
            out[key] = float(np.mean(np.asarray(values, dtype=float)))
        elif isinstance(value, list) and all(
            isinstance(v, list) and len(v) == len(value) for v in values
        ):
            out[key] = [float(x) for x in np.mean(np.asarray(values, float), axis=0)]
    out["runs"] = len(runs)
    out.pop("repeat", None)
    return out


def round_ratios(rows: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    """OTM / FedAvg ratios of round time, server time and bytes (None if absent).

    ``ratio_round``: mean round time over all rounds; ``ratio_steady``: over
    rounds 2 on, where OTM's agents train with the server's mixed codes; the
    ``_cpu`` ratios: the same with CPU seconds.
    """
    keys = (
        "ratio_round",
        "ratio_steady",
        "ratio_client",
        "ratio_server",
        "ratio_round_cpu",
        "ratio_steady_cpu",
    )
    by = {r["method"]: r for r in rows}
    if "otm" not in by or "fedavg" not in by:
        return dict.fromkeys((*keys, "ratio_bytes"))
    otm, fed = by["otm"], by["fedavg"]

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b is not None and b > 0 else None

    return {
        "ratio_round": ratio(otm["round_s"], fed["round_s"]),
        "ratio_steady": ratio(otm["steady_round_s"], fed["steady_round_s"]),
        "ratio_client": ratio(otm["client_round_s"], fed["client_round_s"]),
        "ratio_server": ratio(otm["server_round_s"], fed["server_round_s"]),
        "ratio_round_cpu": ratio(otm.get("cpu_round_s"), fed.get("cpu_round_s")),
        "ratio_steady_cpu": ratio(
            otm.get("cpu_steady_round_s"), fed.get("cpu_steady_round_s")
        ),
        "ratio_bytes": ratio(
            otm["bytes_up_round"] + otm["bytes_down_round"],
            fed["bytes_up_round"] + fed["bytes_down_round"],
        ),
    }


def mixer_times(
    ks: Sequence[int],
    n: int,
    mixer: CodeMixer,
    *,
    dim: int,
    seed: int,
    repeats: int = 1,
) -> list[dict[str, Any]]:
    """Seconds of one server mixing step on K Gaussian clouds ``(n, dim)``, per K.

    ``mixer`` is the server's (:meth:`CodeMixer.from_run_config`); repeat ``r``
    mixes as round ``r``. The repeats go round the K values in turn (so drifting
    machine load falls on all of them); each row has the median wall and CPU
    seconds, one thread.

    Raises
    ------
    RuntimeError
        If every barycenter variant of the mixer fails.
    """
    from threadpoolctl import threadpool_limits

    clouds = _gaussian_clouds(ks, n, dim, seed)
    mixers = {"": mixer}
    if mixer.align_frames and mixer.partners is not None:
        # the same step with every agent mixing all agents, side by side
        mixers["_all_partners"] = dataclasses.replace(mixer, partners=None)
    walls: dict[tuple[str, int], list[float]] = {(t, k): [] for t in mixers for k in ks}
    cpus: dict[tuple[str, int], list[float]] = {(t, k): [] for t in mixers for k in ks}
    with threadpool_limits(1):
        for r in range(max(repeats, 1)):
            for k in ks:
                for tag, m in mixers.items():
                    start, cpu_start = time.perf_counter(), time.process_time()
                    mixed = m.mix(r, range(k), clouds[k])
                    walls[tag, k].append(time.perf_counter() - start)
                    cpus[tag, k].append(time.process_time() - cpu_start)
                    if mixed.result is None:
                        raise RuntimeError(
                            f"mixing {k} clouds failed: {mixed.failures}"
                        )
    rows = []
    for k in ks:
        row = _mixer_row(k, n, walls["", k], cpus["", k])
        for tag in list(mixers)[1:]:
            row[f"mix_s{tag}"] = float(np.median(walls[tag, k]))
            row[f"mix_cpu_s{tag}"] = float(np.median(cpus[tag, k]))
        rows.append(row)
    return rows


def _gaussian_clouds(
    ks: Sequence[int], n: int, dim: int, seed: int
) -> dict[int, list[np.ndarray]]:
    """Per K, K standard Gaussian clouds ``(n, dim)`` (seeded by seed, K, index)."""
    return {
        k: [
            np.random.default_rng([seed, k, j]).standard_normal((n, dim))
            for j in range(k)
        ]
        for k in ks
    }


def _mixer_row(k: int, n: int, walls: list[float], cpus: list[float]) -> dict[str, Any]:
    """One :func:`mixer_times` row: median wall and CPU seconds, every wall."""
    return {
        "agents": k,
        "n": n,
        "mix_s": float(np.median(walls)),
        "mix_cpu_s": float(np.median(cpus)),
        "mix_s_all": walls,
    }


def fit_growth(agents: Sequence[float], seconds: Sequence[float]) -> dict[str, Any]:
    """How ``seconds`` grows with ``agents``: log-log slope and largest/smallest.

    ``exponent`` is the least-squares slope of log(seconds) on log(agents) (1:
    linear); ``ratio`` is seconds at the most agents over seconds at the fewest,
    ``linear_ratio`` the same for agents; ``per_agent`` is seconds / agents.
    """
    a = np.asarray(agents, dtype=float)
    s = np.asarray(seconds, dtype=float)
    ok = (a > 0) & (s > 0)
    out: dict[str, Any] = {
        "exponent": None,
        "ratio": None,
        "linear_ratio": None,
        "per_agent": [float(v) for v in s / np.where(a > 0, a, 1.0)],
    }
    if ok.sum() >= 2:
        out["exponent"] = float(np.polyfit(np.log(a[ok]), np.log(s[ok]), 1)[0])
    lo, hi = int(np.argmin(a)), int(np.argmax(a))
    if s[lo] > 0 and lo != hi:
        out["ratio"] = float(s[hi] / s[lo])
        out["linear_ratio"] = float(a[hi] / a[lo])
        out["at_most_linear"] = bool(s[hi] / s[lo] <= a[hi] / a[lo])
    return out


def scale_table(
    dataset: str,
    *,
    apms: Sequence[int],
    rounds: int,
    seed: int,
    extra: dict[str, Any] | None = None,
    mixer_n: int = 0,
    mixer_repeats: int = 3,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """OTM runs for each agents-per-modality; growth of server time with agents.

    With ``mixer_n`` > 0, also times the mixer alone (:func:`mixer_times`,
    ``mixer_repeats`` each) for the same agent counts on Gaussian clouds of
    ``mixer_n`` codes of the run's latent dimension.
    """
    rows = []
    for apm in apms:
        settings = base_settings(
            dataset,
            rounds,
            seed,
            {**(extra or {}), "method": "otm", "agents-per-modality": apm},
        )
        row = measure_run(settings)
        progress(json.dumps({k: v for k, v in row.items() if k != "mix_seconds"}))
        rows.append(row)
    agents = [r["agents"] for r in rows]
    out: dict[str, Any] = {
        "rows": rows,
        "growth_mix": fit_growth(agents, [r["mix_round_s"] or 0.0 for r in rows]),
        "growth_server": fit_growth(agents, [r["server_round_s"] for r in rows]),
        "growth_server_cpu": fit_growth(
            agents, [r["server_cpu_round_s"] for r in rows]
        ),
        "growth_round": fit_growth(agents, [r["round_s"] for r in rows]),
    }
    if mixer_n > 0:
        settings = base_settings(dataset, rounds, seed, extra)
        out.update(
            _mixer_scale(settings, seed, agents, mixer_n, mixer_repeats, progress)
        )
    return out


def _mixer_scale(
    settings: dict[str, Any],
    seed: int,
    agents: list[int],
    mixer_n: int,
    mixer_repeats: int,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """The server's mixer alone (built from the run config) for each agent count;
    ``seed`` seeds the clouds."""
    from otm_flower.code_mixer import CodeMixer
    from otm_flower.config import latent_width, parse_run_config

    config = parse_run_config(settings)
    mixer_rows = mixer_times(
        agents,
        mixer_n,
        CodeMixer.from_run_config(config),
        dim=latent_width(config, n_clusters=0),  # clouds without classes
        seed=seed,
        repeats=mixer_repeats,
    )
    for row in mixer_rows:
        progress(json.dumps({k: v for k, v in row.items() if k != "mix_s_all"}))
    out = {
        "mixer_rows": mixer_rows,
        "growth_mixer": fit_growth(agents, [r["mix_s"] for r in mixer_rows]),
        "growth_mixer_cpu": fit_growth(agents, [r["mix_cpu_s"] for r in mixer_rows]),
    }
    if all("mix_cpu_s_all_partners" in r for r in mixer_rows):
        out["growth_mixer_cpu_all_partners"] = fit_growth(
            agents, [r["mix_cpu_s_all_partners"] for r in mixer_rows]
        )
    return out


def _scale_series(scale: dict[str, Any]) -> list[tuple[str, list[float]]]:
    """The labelled curves of :func:`plot_scale`: seconds per agent count."""
    rows = scale["rows"]
    series = [
        ("simulation: mixing wall s", [r["mix_round_s"] or 0.0 for r in rows]),
        ("simulation: server CPU s", [r["server_cpu_round_s"] for r in rows]),
    ]
    if scale.get("mixer_rows"):
        n = scale["mixer_rows"][0]["n"]
        series.append(
            (
                f"mixer alone, {n} codes/agent, CPU s",
                [r["mix_cpu_s"] for r in scale["mixer_rows"]],
            )
        )
    return series


def plot_scale(scale: dict[str, Any], path: Path) -> Path:
    """Server seconds per round against agents, with linear references (PNG)."""
    from simulations.benchmark.plots import new_figure

    fig = new_figure(6.4, 4.2)
    ax = fig.add_subplot()
    rows = scale["rows"]
    agents = np.array([r["agents"] for r in rows], dtype=float)
    grid = np.linspace(0, agents.max() * 1.05, 50)
    lo = int(np.argmin(agents))
    for (label, values), colour in zip(
        _scale_series(scale), ("C0", "C1", "C2"), strict=False
    ):
        y = np.asarray(values, dtype=float)
        ax.plot(agents, y, marker="o", color=colour, label=label)
        if y[lo] > 0:
            ax.plot(
                grid,
                y[lo] * grid / agents[lo],
                linestyle=":",
                color=colour,
                alpha=0.7,
                label=f"linear from {int(agents[lo])} agents",
            )
    codes = ", ".join(f"{r['agents']}:{r['codes_per_agent']}" for r in rows)
    ax.set_title(f"OTM server time per round (codes/agent {codes})", fontsize=9)
    ax.set_xlabel("agents")
    ax.set_ylabel("seconds per round")
    ax.set_xlim(0, agents.max() * 1.05)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def _kb(v: float) -> str:
    return f"{v / 1024:.1f}"


def _s(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def rounds_markdown(table: dict[str, Any]) -> str:
    """Markdown table of a :func:`rounds_table` result."""
    lines = [
        "| method | agents | rounds | round s | round s (rounds 2+) "
        "| agents s/round | server s/round | mixing s/round | round CPU s "
        "| agents CPU s/round | server CPU s/round "
        "| up KiB/round | down KiB/round |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table["rows"]:
        lines.append(
            f"| {r['method']} | {r['agents']} | {r['rounds']} | {_s(r['round_s'])} "
            f"| {_s(r['steady_round_s'])} "
            f"| {_s(r['client_round_s'])} | {_s(r['server_round_s'])} "
            f"| {_s(r['mix_round_s'])} | {_s(r['cpu_round_s'])} "
            f"| {_s(r['client_cpu_round_s'])} | {_s(r['server_cpu_round_s'])} "
            f"| {_kb(r['bytes_up_round'])} | {_kb(r['bytes_down_round'])} |"
        )
    lines.append("")
    for r in table["rows"]:
        walls = ", ".join(f"{w:.2f}" for w in r["round_walls"])
        agents = ", ".join(f"{w:.2f}" for w in r["client_by_round"])
        cpu = ", ".join(f"{w:.2f}" for w in r["cpu_round_walls"])
        lines.append(
            f"- {r['method']}: round walls [{walls}] s (agents' part [{agents}]); "
            f"round CPU [{cpu}] s"
        )

    def fmt(key: str, unit: str = "x", digits: int = 2) -> str:
        value = table.get(key)
        return "-" if value is None else f"{value:.{digits}f}{unit}"

    lines.append(
        f"- OTM / FedAvg: round time {fmt('ratio_round')} (rounds 2+: "
        f"{fmt('ratio_steady')}); round CPU {fmt('ratio_round_cpu')} (rounds 2+: "
        f"{fmt('ratio_steady_cpu')}); agents' time {fmt('ratio_client')}; server "
        f"time {fmt('ratio_server', digits=1)}; bytes {fmt('ratio_bytes', digits=3)}"
    )
    return "\n".join(lines)


#: Growth entries of a :func:`scale_table` result and their labels.
GROWTHS = (
    ("growth_mix", "mixing (wall)"),
    ("growth_server", "server (wall - agents)"),
    ("growth_server_cpu", "server CPU"),
    ("growth_round", "whole round"),
    ("growth_mixer", "mixer alone (wall)"),
    ("growth_mixer_cpu", "mixer alone (CPU)"),
    ("growth_mixer_cpu_all_partners", "mixer alone, every agent mixing all (CPU)"),
)


def _growth_lines(scale: dict[str, Any]) -> list[str]:
    """One line per growth of a :func:`scale_table` result that has a ratio."""
    lines = []
    for key, label in GROWTHS:
        g = scale.get(key)
        if not g or g.get("ratio") is None:
            continue
        lines.append(
            f"- {label}: x{g['ratio']:.2f} from fewest to most agents "
            f"(linear: x{g['linear_ratio']:.0f}); log-log slope "
            f"{g['exponent']:.2f}"
        )
    return lines


def scale_markdown(scale: dict[str, Any]) -> str:
    """Markdown table of a :func:`scale_table` result."""
    mixer = {r["agents"]: r for r in scale.get("mixer_rows") or []}
    lines = [
        "| agents | codes/agent | round s | agents s/round | server s/round "
        "| server CPU s/round | mixing s/round | mixing s/agent "
        "| up KiB/round | down KiB/round"
        + (
            " | mixer alone s | mixer alone CPU s | mixer alone CPU s, all partners |"
            if mixer
            else " |"
        ),
        "|---|---|---|---|---|---|---|---|---|---"
        + ("|---|---|---|" if mixer else "|"),
    ]
    for r in scale["rows"]:
        per_agent = (r["mix_round_s"] or 0.0) / r["agents"]
        line = (
            f"| {r['agents']} | {r['codes_per_agent']} | {_s(r['round_s'])} "
            f"| {_s(r['client_round_s'])} | {_s(r['server_round_s'])} "
            f"| {_s(r['server_cpu_round_s'])} "
            f"| {_s(r['mix_round_s'])} | {per_agent:.3f} "
            f"| {_kb(r['bytes_up_round'])} | {_kb(r['bytes_down_round'])}"
        )
        if mixer:
            m = mixer.get(r["agents"]) or {}
            line += f" | {_s(m.get('mix_s'))} | {_s(m.get('mix_cpu_s'))}"
            line += f" | {_s(m.get('mix_cpu_s_all_partners'))}"
        lines.append(line + " |")
    return "\n".join([*lines, "", *_growth_lines(scale)])


def versions() -> dict[str, Any]:
    """Machine and package versions for the report."""
    import os

    import flwr
    import ot
    import torch

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "pot": ot.__version__,
        "flwr": getattr(flwr, "__version__", "?"),
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "load_average": list(os.getloadavg()),
    }


def _extra(items: Sequence[str]) -> dict[str, str]:
    """``--set`` items as run-config keys; a malformed item ends the command."""
    try:
        return parse_set(items)
    except ConfigError as err:
        raise SystemExit(str(err)) from err


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def build_parser() -> argparse.ArgumentParser:
    """The ``bench-rounds`` argument parser."""
    ap = argparse.ArgumentParser(
        prog="bench-rounds", description=(__doc__ or "").split("\n")[0]
    )
    ap.add_argument("what", choices=("rounds", "scale", "all"))
    ap.add_argument("--dataset", default="handwritten")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of `rounds`")
    ap.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="rounds: runs per method, order alternating (OTM, FedAvg, FedAvg, OTM)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="run-config key for every run (e.g. local-epochs=3)",
    )
    ap.add_argument("--apm", type=_ints, default=list(DEFAULT_APM))
    ap.add_argument("--scale-rounds", type=int, default=2)
    ap.add_argument(
        "--scale-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="run-config key for the scale runs only (default local-epochs=1)",
    )
    ap.add_argument(
        "--mixer-n",
        type=int,
        default=256,
        help="scale: also time the mixer alone on this many codes per agent (0: off)",
    )
    ap.add_argument("--mixer-repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=None, help="folder for JSON and PNG")
    return ap


def _rounds_part(
    args: argparse.Namespace, extra: dict[str, str], meta: dict[str, Any]
) -> dict[str, Any]:
    """``rounds``: measure, print the table, write ``OUT/rounds.json``."""
    table = rounds_table(
        args.dataset,
        rounds=args.rounds,
        seed=args.seed,
        extra=extra,
        repeats=args.repeats,
    )
    print(rounds_markdown(table), flush=True)
    if args.out is not None:
        _write(args.out / "rounds.json", {"meta": meta, **table})
    return table


def _scale_part(
    args: argparse.Namespace, extra: dict[str, str], meta: dict[str, Any]
) -> dict[str, Any]:
    """``scale``: measure, print the table, write ``OUT/scale.json`` and the plot."""
    scale_extra = {"local-epochs": "1", **extra, **_extra(args.scale_set)}
    scale = scale_table(
        args.dataset,
        apms=args.apm,
        rounds=args.scale_rounds,
        seed=args.seed,
        extra=scale_extra,
        mixer_n=args.mixer_n,
        mixer_repeats=args.mixer_repeats,
    )
    print(scale_markdown(scale), flush=True)
    if args.out is not None:
        _write(args.out / "scale.json", {"meta": meta, **scale})
        print(f"plot: {plot_scale(scale, args.out / 'scale.png')}")
    return scale


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = build_parser().parse_args(argv)
    extra = _extra(args.set)
    meta = {"argv": list(sys.argv if argv is None else argv), **versions()}
    try:
        if args.what in ("rounds", "all"):
            _rounds_part(args, extra, meta)
        if args.what in ("scale", "all"):
            _scale_part(args, extra, meta)
    except (ConfigError, DataError) as err:
        print(f"bench-rounds: error: {err}", file=sys.stderr)
        return 2
    return 0


def _write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=_jsonable))


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


if __name__ == "__main__":
    raise SystemExit(main())
