"""The server's mixing step as one object: settings in, per-agent targets out.

:class:`CodeMixer` holds the mixer settings of a run and mixes one round's code
clouds: a fused Gromov-Wasserstein barycenter (anchored on shared ids when the
agents upload them), a Dirichlet mix of the agents' projections, and the
pull-back onto each agent's own rows. When the configured barycenter fails, a
plain Wasserstein barycenter is tried instead. It knows nothing of Flower: the
keys of its targets are whatever ids the caller passes (node ids in
:class:`strategies.OTMStrategy`).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from otm_flower.anchored import anchored_fgw_barycenter
from otm_flower.mixer import (
    MIX_PARTNERS,
    BarycenterResult,
    mix_and_pull_back,
    mix_targets,
    resolve_device,
)

if TYPE_CHECKING:
    from otm_flower.config import RunConfig

Targets = tuple[np.ndarray, np.ndarray]
Outcome = tuple[BarycenterResult, list[np.ndarray], list[np.ndarray]]


@dataclass(frozen=True)
class MixedRound:
    """What one round's mixing produced.

    Attributes
    ----------
    targets : dict of int to (ndarray, ndarray)
        ``(mixed, barycenter)`` pulled back to each id's own rows; only finite
        targets are kept.
    withheld : tuple of int
        Ids whose targets were not finite (left out of ``targets``).
    result : BarycenterResult or None
        The barycenter used; ``None`` when every variant failed.
    seconds : float
        Wall time of the barycenter and mixing (0 when every variant failed).
    failures : tuple of (str, str)
        ``(variant, "ErrorType: message")`` of each barycenter that failed, in
        the order they were tried.
    anchoring : str or None
        How the anchored barycenter used the shared ids (``None`` unanchored).
    """

    targets: dict[int, Targets]
    withheld: tuple[int, ...] = ()
    result: BarycenterResult | None = None
    seconds: float = 0.0
    failures: tuple[tuple[str, str], ...] = ()
    anchoring: str | None = None


@dataclass(frozen=True)
class CodeMixer:
    """Mixer settings of a run, and the mixing of one round's code clouds.

    Parameters
    ----------
    alpha : float (default: 0.5)
        Weight of the structure (Gromov) term in the FGW cost.
    variant : {"fgw", "w", "gw"} (default: "fgw")
        Fused, Wasserstein-only or Gromov-Wasserstein-only barycenter.
    iterations : int (default: 5)
        Barycenter updates per round.
    solver : {"exact", "fast"} (default: "fast")
        The fast solver of :mod:`otm_flower.fast_fgw` or POT's exact
        conditional-gradient FGW.
    device : str (default: "cpu")
        Torch device of the fast solver (``"cpu"``, ``"cuda"``, ``"cuda:N"`` or
        ``"auto"``), resolved by :func:`otm_flower.mixer.resolve_device`.
    concentration : float (default: 0.5)
        Dirichlet concentration of the mixing weights.
    own_only : bool (default: False)
        Ablation ``otm-nomix``: each agent gets its own projection, not a mix.
    align_frames : bool (default: False)
        Mix in each agent's own latent frame (similarity Procrustes fit of the
        other agents' projections, :func:`otm_flower.mixer.align_projection`).
    anchor_weight : float (default: 30.0)
        Weight of the anchor-profile cost of
        :func:`otm_flower.anchored.anchored_fgw_barycenter`, used (with the
        exact solver) when anchor ids are given.
    seed : int (default: 0)
        Seeds the barycenter initialisation and the mixing weights per round.
    partners : int or None (default: :data:`otm_flower.mixer.MIX_PARTNERS`)
        With ``align_frames``, the most agents one agent's mix draws over
        (itself included; ``None``: all), see :func:`otm_flower.mixer.mix_targets`.
    """

    alpha: float = 0.5
    variant: str = "fgw"
    iterations: int = 5
    solver: str = "fast"
    device: str = "cpu"
    concentration: float = 0.5
    own_only: bool = False
    align_frames: bool = False
    anchor_weight: float = 30.0
    seed: int = 0
    partners: int | None = MIX_PARTNERS

    def __post_init__(self) -> None:
        object.__setattr__(self, "device", resolve_device(self.device, self.solver))

    @classmethod
    def from_run_config(cls, config: RunConfig) -> CodeMixer:
        """The mixer a run config describes (``otm-nomix``: ``own_only``)."""
        return cls(
            alpha=config.fgw_alpha,
            variant=config.variant,
            iterations=config.barycenter_iterations,
            solver=config.solver,
            device=config.mixer_device,
            concentration=config.dirichlet_concentration,
            own_only=config.method == "otm-nomix",
            align_frames=config.mix_frame == "own",
            anchor_weight=config.anchor_weight,
            seed=config.seed,
        )

    def mix(
        self,
        server_round: int,
        ids: Sequence[int],
        codes: Sequence[np.ndarray],
        anchors: Sequence[np.ndarray | None] | None = None,
    ) -> MixedRound:
        """Mix one round's clouds; return each id's targets.

        Parameters
        ----------
        server_round : int
            Round number (seeds this round's barycenter and weights).
        ids : sequence of int
            One id per cloud, the keys of the returned targets.
        codes : sequence of ndarray
            One ``(n_k, d)`` cloud per id.
        anchors : sequence of (ndarray or None), optional
            Per cloud, the shared anchor id of each row (``-1``: none) or
            ``None``; any given makes the configured barycenter anchored.

        Returns
        -------
        MixedRound
            Targets by id, with what failed or was withheld on the way.
        """
        start = time.perf_counter()
        outcome, failures, anchoring = self._first_success(server_round, codes, anchors)
        if outcome is None:
            return MixedRound(targets={}, failures=failures)
        result, mixed, barycenter = outcome
        seconds = time.perf_counter() - start
        targets: dict[int, Targets] = {}
        withheld = []
        for key, mixed_k, bary_k in zip(ids, mixed, barycenter, strict=True):
            if np.isfinite(mixed_k).all() and np.isfinite(bary_k).all():
                targets[key] = (mixed_k, bary_k)
            else:
                withheld.append(key)
        return MixedRound(
            targets, tuple(withheld), result, seconds, failures, anchoring
        )

    def _first_success(
        self,
        server_round: int,
        codes: Sequence[np.ndarray],
        anchors: Sequence[np.ndarray | None] | None,
    ) -> tuple[Outcome | None, tuple[tuple[str, str], ...], str | None]:
        """Try the configured barycenter, then a plain Wasserstein one."""
        linked = anchors is not None and any(a is not None for a in anchors)
        variants = [self.variant] + (["w"] if self.variant != "w" else [])
        failures: list[tuple[str, str]] = []
        anchoring = None
        for variant in variants:
            try:
                if linked and variant == self.variant:
                    assert anchors is not None
                    outcome, anchoring = self._anchored(
                        server_round, codes, anchors, variant
                    )
                else:
                    outcome = self._unanchored(server_round, codes, variant)
                return outcome, tuple(failures), anchoring
            except Exception as err:  # noqa: BLE001 - a solver failure must not end the run
                failures.append((variant, f"{type(err).__name__}: {err}"))
        return None, tuple(failures), anchoring

    def _unanchored(
        self, server_round: int, codes: Sequence[np.ndarray], variant: str
    ) -> Outcome:
        """Barycenter, Dirichlet mix and pull-back in one call."""
        return mix_and_pull_back(
            codes,
            rng=np.random.default_rng([self.seed, server_round]),
            concentration=self.concentration,
            own_only=self.own_only,
            align=self.align_frames,
            partners=self.partners,
            alpha=self.alpha,
            variant=variant,
            n_iter=self.iterations,
            solver=self.solver,
            device=self.device,
            seed=self.seed * 100_003 + server_round,
        )

    def _anchored(
        self,
        server_round: int,
        codes: Sequence[np.ndarray],
        anchors: Sequence[np.ndarray | None],
        variant: str,
    ) -> tuple[Outcome, str]:
        """Barycenter pinned on the shared anchor ids, then the usual mixing."""
        ids = [
            np.full(len(z), -1, dtype=np.int64) if a is None else a
            for z, a in zip(codes, anchors, strict=True)
        ]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # reported in `anchoring`
            result: Any = anchored_fgw_barycenter(
                codes,
                ids,
                alpha=self.alpha,
                variant=variant,  # type: ignore[arg-type]
                n_iter=self.iterations,
                seed=self.seed * 100_003 + server_round,
                anchor_weight=self.anchor_weight,
            )
        anchoring = (
            f"anchored on {len(result.anchor_ids)} shared ids"
            if result.anchored
            else f"too few shared ids ({result.fallback_reason}); unanchored"
        )
        mixed, barycenter = mix_targets(
            result,
            codes,
            concentration=self.concentration,
            rng=np.random.default_rng([self.seed, server_round]),
            own_only=self.own_only,
            align=self.align_frames,
            partners=self.partners,
        )
        return (result, mixed, barycenter), anchoring
