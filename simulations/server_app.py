"""The OTM ServerApp (``flwr run .``): runs OTMStrategy and writes the result."""

from __future__ import annotations

import shutil
import time
from logging import INFO, WARNING
from pathlib import Path
from typing import Any, cast

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid, ServerApp
from flwr.supercore import log

from otm_flower import protocol as P
from otm_flower.config import (
    BASELINE_METHODS,
    OTM_METHODS,
    ConfigError,
    RunConfig,
    parse_run_config,
)
from otm_flower.data import load_dataset
from otm_flower.diagnostics import diagnostics_dir, load_upload_labels
from otm_flower.metrics import coupling_agreement
from otm_flower.mixer import BarycenterResult
from otm_flower.results import (
    build_result,
    format_summary,
    plot_history,
    run_folder,
    write_result,
)
from strategies.otm import OTMStrategy


def expected_agents(config: RunConfig) -> int:
    """Agents of the run: ``num-agents``, or one per view x ``agents-per-modality``.

    With ``num-agents`` 0 the server reads the data set's view count (possible in a
    simulation; in a deployment, where the data stays at the agents, set
    ``num-agents``).
    """
    if config.num_agents > 0:
        return config.num_agents
    return load_dataset(config.dataset).n_views * config.agents_per_modality


class AgreementTracker:
    """Records the couplings' class agreement after each mixing (simulation only).

    Reads the labels that agents kept locally for their uploaded rows (see
    :mod:`otm_flower.diagnostics`); reports nothing where those files are absent.
    """

    def __init__(self, folder: Path, strategy: OTMStrategy) -> None:
        self.folder = folder
        self.strategy = strategy
        self.history: list[dict[str, Any]] = []

    def __call__(
        self, server_round: int, node_ids: list[int], result: BarycenterResult
    ) -> None:
        """Score the round's plans against the uploaded rows' labels."""
        agents = [self.strategy.node_agents.get(n) for n in node_ids]
        labels = [
            None if a is None else load_upload_labels(self.folder, a, server_round)
            for a in agents
        ]
        if any(y is None for y in labels):
            return
        mean, pairs = coupling_agreement(
            result.plans, [y for y in labels if y is not None]
        )
        per_agent = {
            str(a): round(float(np.nanmean(pairs[i])), 4) for i, a in enumerate(agents)
        }
        self.history.append(
            {"round": server_round, "mean": round(mean, 4), "per_agent": per_agent}
        )
        log(
            INFO,
            "round %d: coupling class agreement %.3f (mean over agent pairs)",
            server_round,
            mean,
        )


def wait_for_agents(grid: Grid, num_agents: int, timeout: float) -> None:
    """Block until ``num_agents`` nodes are connected (raises after ``timeout`` s)."""
    start = time.monotonic()
    hint = (
        f"start one SuperNode per agent (simulation: flwr run . --federation-config "
        f'"num-supernodes={num_agents}"), or set num-agents'
    )
    while (connected := len(list(grid.get_node_ids()))) < num_agents:
        waited = time.monotonic() - start
        if waited > timeout:
            raise TimeoutError(
                f"only {connected} of {num_agents} agents connected after "
                f"{timeout:.0f} s: {hint}"
            )
        if int(waited) % 10 == 0:
            log(
                INFO,
                "waiting for agents: %d of %d connected; %s",
                connected,
                num_agents,
                hint,
            )
        time.sleep(1.0)


def identify_agents(grid: Grid, timeout: float) -> dict[int, int]:
    """Ask every node which agent it holds (``query.identify``): node id -> agent.

    Used when resuming, so that checkpointed mix targets reach the right agents
    before any of them has replied in the new run.
    """
    config = ConfigRecord({P.KEY_VERSION: P.PROTOCOL_VERSION})
    messages = [
        Message(
            RecordDict({P.CONFIG_RECORD: config}),
            dst_node_id=node_id,
            message_type="query.identify",
        )
        for node_id in grid.get_node_ids()
    ]
    agents = {}
    for reply in grid.send_and_receive(messages, timeout=timeout):
        if reply.has_error() or P.METRICS_RECORD not in reply.content.metric_records:
            log(WARNING, "node %d did not identify itself", reply.metadata.src_node_id)
            continue
        agent = reply.content.metric_records[P.METRICS_RECORD][P.KEY_AGENT]
        agents[reply.metadata.src_node_id] = int(cast(int, agent))
    return agents


def make_strategy(config: RunConfig, num_agents: int) -> OTMStrategy:
    """The OTMStrategy a run config describes.

    Rounds go on with whoever is connected, as long as ``min-agents`` are. The
    hybrids ``otm-fedavg`` / ``otm-head`` also average shared parameters
    (``share``); ``label-cost-weight`` > 0 makes uploads carry a label block.
    """
    min_agents = min(config.min_agents, num_agents)
    return OTMStrategy(
        fraction_train=config.fraction_train,
        min_available_nodes=min_agents,
        min_agents=min_agents,
        outlier_factor=config.outlier_factor,
        mix_batch_size=config.mix_batch_size,
        latent_dim=config.latent_dim,
        alpha=config.fgw_alpha,
        variant=config.variant,
        barycenter_iterations=config.barycenter_iterations,
        solver=config.solver,
        device=config.mixer_device,
        concentration=config.dirichlet_concentration,
        own_only=config.method == "otm-nomix",
        align_frames=config.mix_frame == "own",
        anchor_weight=config.anchor_weight,
        seed=config.seed,
        share=config.shared_parameters,
        label_cost=config.label_cost,
    )


def run_otm(grid: Grid, config: RunConfig) -> dict[str, Any]:
    """Run a federated OTM job on ``grid`` and return its result document."""
    num_agents = expected_agents(config)
    strategy = make_strategy(config, num_agents)
    log(
        INFO,
        "OTM on %s: %d agents, %d rounds",
        config.dataset,
        num_agents,
        config.num_server_rounds,
    )
    wait_for_agents(grid, num_agents, config.round_timeout)
    folder = diagnostics_dir(config.diagnostics_dir, grid.run.run_id)
    tracker = AgreementTracker(folder, strategy) if folder is not None else None
    strategy.on_mix = tracker
    done = 0
    if config.checkpoint_dir:
        strategy.checkpoint_dir = config.checkpoint_dir
    if config.resume:
        done = strategy.resume_from(config.checkpoint_dir)
        strategy.bind_agents(identify_agents(grid, config.round_timeout))
        log(INFO, "resuming after round %d from %s", done, config.checkpoint_dir)
    start = time.perf_counter()
    if config.num_server_rounds > done:
        strategy.start(
            grid=grid,
            initial_arrays=ArrayRecord(),
            num_rounds=config.num_server_rounds - done,
            timeout=config.round_timeout,
            train_config=ConfigRecord(),
            evaluate_config=ConfigRecord(),
        )
    result = build_result(
        config.to_dict(),
        strategy.agent_metrics,
        wall_s=time.perf_counter() - start,
        bytes_up=strategy.bytes_up,
        bytes_down=strategy.bytes_down,
        extra={
            "coupling_agreement": tracker.history[-1]["mean"]
            if tracker and tracker.history
            else None,
            "coupling_agreement_history": tracker.history if tracker else [],
            "privacy": _privacy_report(config, strategy),
            "mix_seconds": [round(s, 4) for s in strategy.mix_seconds],
            "rejected": [list(r) for r in strategy.rejected],
        },
    )
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
    finish_run(result, config, grid.run.run_id)
    return result


def finish_run(result: dict[str, Any], config: RunConfig, run_id: int) -> None:
    """Log a run's summary and write its result (``out``) and output folder."""
    log(INFO, "\n%s", format_summary(result))
    if config.out:
        log(INFO, "result written to %s", write_result(result, config.out))
    if config.output_dir:
        run_dir = run_folder(config.output_dir, config.to_dict(), run_id)
        write_result(result, run_dir / "result.json")
        plot_history(result, run_dir / "history.png")
        log(INFO, "results and plots in %s", run_dir)


def run_method(grid: Grid, config: RunConfig) -> dict[str, Any]:
    """Run ``config.method`` on ``grid`` and return its result document.

    OTM, its ablations and the hybrids ``otm-fedavg`` / ``otm-head`` (OTM mixing
    plus per-round averaging of shared parameters) run :func:`run_otm`;
    ``fedavg`` runs Flower's FedAvg over the agents' shared layers; the
    non-federated baselines (``local``, ``raw``, ``oracle``) need no agents and
    run in this process on the simulation's data.

    Raises
    ------
    ConfigError
        On a method none of these covers.
    """
    if config.method == "fedavg":
        from simulations.fedavg_server import run_fedavg

        return run_fedavg(grid, config)
    if config.method in BASELINE_METHODS:
        from otm_flower.baselines import run_baseline

        log(
            INFO,
            "%s: a non-federated baseline, computed in the ServerApp",
            config.method,
        )
        result = run_baseline(config, progress=lambda line: log(INFO, "%s", line))
        finish_run(result, config, grid.run.run_id)
        return result
    if config.method in OTM_METHODS:
        return run_otm(grid, config)
    raise ConfigError(f"no server for method {config.method!r}")


def _privacy_report(config: RunConfig, strategy: OTMStrategy) -> dict[str, Any] | None:
    """(epsilon, delta) of local DP per agent, as the agents last reported it."""
    if config.dp_clip <= 0:
        return None
    per_agent = {
        str(agent): metrics["train-dp-epsilon"]
        for agent, metrics in sorted(strategy.train_metrics.items())
        if "train-dp-epsilon" in metrics
    }
    return {
        "clip": config.dp_clip,
        "noise_multiplier": config.dp_noise,
        "delta": config.dp_delta,
        "epsilon_max": max(per_agent.values(), default=None),
        "epsilon_per_agent": per_agent,
    }


def build_server_app(config: RunConfig | None = None) -> ServerApp:
    """Create the OTM ServerApp.

    Parameters
    ----------
    config : RunConfig, optional
        Settings to use; by default the run config Flower passes in the context.
    """
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        run_method(
            grid, config if config is not None else parse_run_config(context.run_config)
        )

    return app


app = build_server_app()
