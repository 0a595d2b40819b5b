"""Local WAE training for one agent: reconstruction, mix, alignment, prior, task.

Pure PyTorch; the Flower client wraps it. Only codes leave this module's owner.
The label block on uploaded codes (:mod:`otm_flower.label_block`) and the
hybrids' parameter exchange (:mod:`otm_flower.model_sharing`) are re-exported
here, as is :class:`~otm_flower.protocol.MixTargets`.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .cluster_loss import cluster_gw_loss
from .label_block import append_label_block, drop_label_block
from .model_sharing import load_shared_parameters, shared_parameters
from .models import WAE, mmd_imq
from .protocol import MixTargets
from .term_guard import TermGuard, codes_silhouette, holdout_size

__all__ = [
    "LocalTrainer",
    "LossWeights",
    "MixTargets",
    "append_label_block",
    "drop_label_block",
    "load_shared_parameters",
    "otm_loss_terms",
    "shared_parameters",
]


def otm_loss_terms(
    encode: Callable[[torch.Tensor], torch.Tensor],
    decode: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    mixed: torch.Tensor,
    barycenter: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """OTM's two cross-agent terms for rows ``x`` of an agent's own data.

    ``mix``: mean squared error of ``decode(mixed)`` against ``x`` (reconstruct own
    samples from the server's mixed codes); ``reg`` (with ``barycenter``): mean
    squared error of ``encode(x)`` against the pulled-back barycenter (alignment).
    The server's codes are constants: no gradient flows to other agents.
    Works with any torch encoder/decoder.
    """
    terms = {"mix": F.mse_loss(decode(mixed.detach()), x)}
    if barycenter is not None:
        terms["reg"] = F.mse_loss(encode(x), barycenter.detach())
    return terms


_EXCHANGE_STREAM = 1_000_003
"""Offset of the exchange stream's seed from the training stream's."""


@dataclass(frozen=True)
class LossWeights:
    """Weights of the local objective's terms.

    ``rec * ||dec(enc(x)) - x||^2 + mix * ||dec(z_mix) - x||^2
    + reg * ||enc(x) - z_bar||^2 + mmd * MMD(enc(x), prior) + task * CE
    + cluster * GW(enc(x), k-block graph)`` (see :mod:`otm_flower.cluster_loss`).
    """

    rec: float = 1.0
    mix: float = 1.0
    reg: float = 0.1
    mmd: float = 1.0
    task: float = 1.0
    cluster: float = 0.0


class LocalTrainer:
    """Trains one agent's WAE on its own modality.

    Parameters
    ----------
    x_train : np.ndarray
        The agent's training features (n x input_dim).
    y_train : np.ndarray, optional
        Labels, used only when ``num_classes > 0`` (classification task).
    latent_dim, hidden_dim : int
        Model sizes.
    num_classes : int
        > 0 adds a task head trained with cross-entropy on the agent's own labels.
    learning_rate : float
        Adam step size.
    batch_size : int
        Minibatch size of local epochs.
    weights : LossWeights
        Loss term weights.
    num_clusters : int
        k of the clustering term (needed when ``weights.cluster > 0``).
    seed : int
        Seeds model initialisation, the training stream (minibatch order, prior
        samples) and a separate *exchange* stream (which rows are uploaded, which
        mixed rows join a minibatch). Keeping the two apart makes an OTM agent
        whose cross-agent terms are off (``weights.mix == weights.reg == 0``)
        train exactly as it would alone, step for step, so OTM-versus-local
        comparisons measure the terms, not a reshuffled random stream.
    guard : TermGuard, optional
        Weights the cross-agent terms down when they cost the agent's own
        objective (:mod:`otm_flower.term_guard`); ``None``: terms at full weight.
    """

    def __init__(
        self,
        x_train: np.ndarray,
        y_train: np.ndarray | None = None,
        *,
        latent_dim: int = 32,
        hidden_dim: int = 256,
        num_classes: int = 0,
        learning_rate: float = 1e-3,
        batch_size: int = 128,
        weights: LossWeights | None = None,
        num_clusters: int = 0,
        seed: int = 0,
        guard: TermGuard | None = None,
    ) -> None:
        if x_train.ndim != 2 or len(x_train) < 2:
            raise ValueError(
                f"x_train must be (n >= 2, dim), got shape {x_train.shape}"
            )
        if num_classes > 0 and (y_train is None or len(y_train) != len(x_train)):
            raise ValueError("classification needs y_train with one label per row")
        weights = weights or LossWeights()
        if weights.cluster > 0 and num_clusters < 2:
            raise ValueError(
                f"the clustering term needs num_clusters >= 2, got {num_clusters}"
            )
        torch.manual_seed(seed)
        self.x = torch.as_tensor(np.asarray(x_train, dtype=np.float32))
        self.y = (
            None
            if y_train is None
            else torch.as_tensor(np.asarray(y_train), dtype=torch.long)
        )
        self.model = WAE(self.x.shape[1], latent_dim, hidden_dim, num_classes)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=learning_rate)
        self.batch_size = batch_size
        self.weights = weights
        self.num_clusters = num_clusters
        self.generator = torch.Generator().manual_seed(seed)
        self.exchange_generator = torch.Generator().manual_seed(seed + _EXCHANGE_STREAM)
        self.guard = guard
        self.term_scale = 1.0
        self.criterion_rows = _criterion_rows(self.n_train, guard, seed)
        #: rows the party trains on (``None``: all; a held-out criterion keeps
        #: its criterion rows out)
        self.fit_rows = _fit_rows(self.n_train, self.criterion_rows, guard)

    @property
    def n_train(self) -> int:
        """Number of training rows."""
        return len(self.x)

    def train(self, epochs: int, targets: MixTargets | None = None) -> dict[str, float]:
        """Run local epochs; returns the mean of each loss term over all steps.

        With ``targets``, every step also draws a minibatch of the mixed rows and adds
        the mix term (decode the server's mixed codes back to the agent's own
        samples) and the alignment term (codes toward the pulled-back barycenter).
        The server's codes are constants: no gradient leaves the agent. With a
        guard (and terms that are on), the round is trained with and without the
        terms and the guard keeps one (:mod:`otm_flower.term_guard`); the losses
        then also report ``guard-scale`` (the scale used) and ``guard-kept``.
        """
        if self.guard is None or targets is None or not self._terms_on():
            return self._epochs(epochs, targets)
        return self._guarded_epochs(epochs, targets, self.guard)

    def _terms_on(self) -> bool:
        return self.weights.mix > 0 or self.weights.reg > 0

    def _epochs(self, epochs: int, targets: MixTargets | None) -> dict[str, float]:
        """``epochs`` passes over the training rows (the terms at ``term_scale``)."""
        self.model.train()
        rows, mixed, barycenter = _target_tensors(targets, self.fit_rows)
        sums: dict[str, float] = {}
        steps = 0
        for _ in range(epochs):
            order = self._epoch_order()
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                if len(idx) < 2:
                    continue
                terms = self._step_terms(idx, rows, mixed, barycenter)
                loss = self._step(terms)
                for name, value in terms.items():
                    sums[name] = sums.get(name, 0.0) + float(value.detach())
                sums["loss"] = sums.get("loss", 0.0) + float(loss.detach())
                steps += 1
        return {name: total / max(steps, 1) for name, total in sums.items()}

    def _epoch_order(self) -> torch.Tensor:
        """One epoch's minibatch order over the rows the party trains on."""
        if self.fit_rows is None:
            return torch.randperm(self.n_train, generator=self.generator)
        order = torch.randperm(len(self.fit_rows), generator=self.generator)
        return self.fit_rows[order]

    def _guarded_epochs(
        self, epochs: int, targets: MixTargets, guard: TermGuard
    ) -> dict[str, float]:
        """Train alone and with the terms from the same state; keep what the
        guard chooses (the exchange stream stays as the terms' run left it)."""
        start = self._snapshot()
        alone_losses = self._epochs(epochs, None)
        alone_value, alone = self.guard_criterion(), self._snapshot()
        self._restore(start)
        self.term_scale = guard.scale
        losses = self._epochs(epochs, targets)
        used = guard.scale
        keep = guard.update(self.guard_criterion(), alone_value)
        if not keep:
            self._restore(alone)
            losses = alone_losses
        return {**losses, "guard-scale": used, "guard-kept": float(keep)}

    def guard_criterion(self) -> float:
        """What the guard scores the current model with (lower is better):
        :meth:`own_objective`, or minus :meth:`criterion_silhouette`."""
        if self.guard is not None and self.guard.criterion == "silhouette":
            return -self.criterion_silhouette()
        return self.own_objective()

    @torch.no_grad()
    def criterion_silhouette(self) -> float:
        """Silhouette of the k-means clustering of the criterion rows' codes
        (k: ``num_clusters``, or 2 without one)."""
        codes = self.encode(self.x[self.criterion_rows].numpy())
        return codes_silhouette(codes, max(self.num_clusters, 2))

    @torch.no_grad()
    def own_objective(self) -> float:
        """The agent's label-free local objective on its criterion rows (eval mode).

        ``rec * reconstruction + cluster * clustering term`` (clustering) or
        ``rec * reconstruction + task * cross-entropy`` on its own labels
        (classification); no prior term (it is a random draw).
        """
        self.model.eval()
        x = self.x[self.criterion_rows]
        z, x_hat = self.model(x)
        w = self.weights
        value = w.rec * F.mse_loss(x_hat, x)
        if w.cluster > 0 and len(z) > self.num_clusters:
            value = value + w.cluster * cluster_gw_loss(z, self.num_clusters)
        if self.model.head is not None and self.y is not None:
            y = self.y[self.criterion_rows]
            value = value + w.task * F.cross_entropy(self.model.head(z), y)
        self.model.train()
        return float(value)

    def _snapshot(self) -> dict[str, Any]:
        """Deep copies of the model, optimiser and training stream."""
        return {
            "model": copy.deepcopy(self.model.state_dict()),
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "generator": self.generator.get_state(),
        }

    def _restore(self, snapshot: dict[str, Any]) -> None:
        self.model.load_state_dict(snapshot["model"])
        self.optimizer.load_state_dict(copy.deepcopy(snapshot["optimizer"]))
        self.generator.set_state(snapshot["generator"])

    def _step(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """One optimiser step on the weighted sum of ``terms``; returns that sum."""
        w = self.weights
        loss = (
            w.rec * terms["rec"]
            + w.mmd * terms.get("mmd", 0.0)
            + w.task * terms.get("task", 0.0)
            + self.term_scale * w.mix * terms.get("mix", 0.0)
            + self.term_scale * w.reg * terms.get("reg", 0.0)
            + w.cluster * terms.get("cluster", 0.0)
        )
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return loss

    def _step_terms(
        self,
        idx: torch.Tensor,
        rows: torch.Tensor | None,
        mixed: torch.Tensor | None,
        barycenter: torch.Tensor | None,
    ) -> dict[str, torch.Tensor]:
        x = self.x[idx]
        z, x_hat = self.model(x)
        terms = {"rec": F.mse_loss(x_hat, x)}
        if self.weights.mmd > 0:
            prior = torch.randn(z.shape, generator=self.generator)
            terms["mmd"] = mmd_imq(z, prior)
        if self.weights.cluster > 0 and len(z) > self.num_clusters:
            terms["cluster"] = cluster_gw_loss(z, self.num_clusters)
        if self.model.head is not None and self.y is not None:
            terms["task"] = F.cross_entropy(self.model.head(z), self.y[idx])
        if rows is not None and mixed is not None:
            terms.update(self._exchange_terms(len(idx), rows, mixed, barycenter))
        return terms

    def _exchange_terms(
        self,
        batch: int,
        rows: torch.Tensor,
        mixed: torch.Tensor,
        barycenter: torch.Tensor | None,
    ) -> dict[str, torch.Tensor]:
        """Mix (and alignment) terms on up to ``batch`` rows drawn from the targets."""
        pick = torch.randint(
            len(rows),
            (min(batch, len(rows)),),
            generator=self.exchange_generator,
        )
        if not self._terms_on():
            # both weights 0: no pass to pay for (the draw above still keeps the
            # exchange stream, and so the uploads, as with the terms on)
            return {}
        # with weight-reg 0 the alignment term is skipped: its extra encoder
        # pass would move BatchNorm's running statistics for nothing
        target = barycenter if self.weights.reg > 0 else None
        return otm_loss_terms(
            self.model.encode,
            self.model.decode,
            self.x[rows[pick]],
            mixed[pick],
            None if target is None else target[pick],
        )

    @torch.no_grad()
    def encode(self, x: np.ndarray | None = None) -> np.ndarray:
        """Codes of ``x`` (default: the training data), float32 (n x latent_dim)."""
        self.model.eval()
        data = self.x if x is None else torch.as_tensor(np.asarray(x, dtype=np.float32))
        return self.model.encode(data).numpy()

    def sample_rows(self, n: int) -> np.ndarray:
        """Draw ``min(n, n_train)`` distinct training rows for the next upload."""
        n = min(n, self.n_train)
        order = torch.randperm(self.n_train, generator=self.exchange_generator)
        return order[:n].numpy()

    def state_bytes(self) -> bytes:
        """Serialise model, optimiser and random stream (to keep across rounds)."""
        buffer = io.BytesIO()
        torch.save(
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "generator": self.generator.get_state(),
                "exchange_generator": self.exchange_generator.get_state(),
                "guard_scale": None if self.guard is None else self.guard.scale,
            },
            buffer,
        )
        return buffer.getvalue()

    def load_state_bytes(self, data: bytes) -> None:
        """Restore what :meth:`state_bytes` saved."""
        state = torch.load(io.BytesIO(data), weights_only=True)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        if "exchange_generator" in state:  # absent in states saved by earlier versions
            self.exchange_generator.set_state(state["exchange_generator"])
        if self.guard is not None and state.get("guard_scale") is not None:
            self.guard.scale = float(state["guard_scale"])


def _criterion_rows(n_train: int, guard: TermGuard | None, seed: int) -> torch.Tensor:
    """The training rows a guard scores its candidates on (all rows without a
    guard: unused), drawn once from their own stream so training is unchanged;
    a held-out criterion takes :func:`~otm_flower.term_guard.holdout_size` rows."""
    size = n_train if guard is None else guard.rows
    if guard is not None and guard.holds_out:
        size = holdout_size(n_train, guard.rows)
    if n_train <= size:
        return torch.arange(n_train)
    generator = torch.Generator().manual_seed(seed + 2 * _EXCHANGE_STREAM)
    return torch.randperm(n_train, generator=generator)[:size].sort().values


def _fit_rows(
    n_train: int, criterion_rows: torch.Tensor, guard: TermGuard | None
) -> torch.Tensor | None:
    """The rows a party trains on: all (``None``) unless its guard holds the
    criterion rows out."""
    if guard is None or not guard.holds_out:
        return None
    keep = torch.ones(n_train, dtype=torch.bool)
    keep[criterion_rows] = False
    return torch.nonzero(keep).flatten()


def _target_tensors(
    targets: MixTargets | None, fit_rows: torch.Tensor | None = None
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """The rows, mixed codes and barycenter of ``targets`` as tensors (or ``None``),
    without the entries of rows outside ``fit_rows`` (``None``: keep all); no
    entry left is no targets."""
    if targets is None:
        return None, None, None
    rows = torch.as_tensor(targets.rows, dtype=torch.long)
    mixed = torch.as_tensor(targets.mixed, dtype=torch.float32)
    barycenter = None
    if targets.barycenter is not None:
        barycenter = torch.as_tensor(targets.barycenter, dtype=torch.float32)
    if fit_rows is not None:
        kept = torch.isin(rows, fit_rows)
        if not kept.any():
            return None, None, None
        rows, mixed = rows[kept], mixed[kept]
        barycenter = None if barycenter is None else barycenter[kept]
    return rows, mixed, barycenter
