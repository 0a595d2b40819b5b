"""Wasserstein autoencoder (WAE) per modality, and its prior-matching term."""

from __future__ import annotations

import torch
from torch import nn


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers += [nn.BatchNorm1d(n_out), nn.ReLU()]
    return nn.Sequential(*layers)


class WAE(nn.Module):
    """MLP Wasserstein autoencoder for one modality.

    Parameters
    ----------
    input_dim : int
        Feature dimension of the agent's view.
    latent_dim : int
        Latent dimension, shared by every agent of a run.
    hidden_dim : int
        Width of the hidden layers (two per side).
    num_classes : int
        When > 0, adds a linear task head on the codes (classification task).
    """

    def __init__(
        self,
        input_dim: int,
        latent_dim: int,
        hidden_dim: int = 256,
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        if min(input_dim, latent_dim, hidden_dim) < 1:
            raise ValueError(
                f"WAE sizes must be >= 1, got input_dim={input_dim}, "
                f"latent_dim={latent_dim}, hidden_dim={hidden_dim}"
            )
        self.input_dim = input_dim
        self.latent_dim = latent_dim
        self.encoder = _mlp([input_dim, hidden_dim, hidden_dim, latent_dim])
        self.decoder = _mlp([latent_dim, hidden_dim, hidden_dim, input_dim])
        self.head = nn.Linear(latent_dim, num_classes) if num_classes > 0 else None

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Map features (n x input_dim) to latent codes (n x latent_dim)."""
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Map latent codes back to feature space."""
        return self.decoder(z)

    def modality_keys(self) -> set[str]:
        """State-dict keys whose shapes depend on the modality (first encoder layer,
        last decoder layer): these stay local under parameter averaging."""
        last = len(self.decoder) - 1
        return {
            key
            for key in self.state_dict()
            if key.startswith(("encoder.0.", f"decoder.{last}."))
        }

    def shared_state(self) -> dict[str, torch.Tensor]:
        """The parameters and buffers every agent's WAE has in the same shape.

        That is everything but :meth:`modality_keys` and BatchNorm's integer step
        counters: the latent-side layers and the task head, which FedAvg averages.
        """
        local = self.modality_keys()
        return {
            key: value.detach().clone()
            for key, value in self.state_dict().items()
            if key not in local and not key.endswith("num_batches_tracked")
        }

    def load_shared_state(self, state: dict[str, torch.Tensor]) -> None:
        """Load what :meth:`shared_state` returns (e.g. averaged over agents).

        Raises
        ------
        ValueError
            When keys are missing or unexpected, or a shape differs.
        """
        _check_state("shared state", self.shared_state(), state)
        self.load_state_dict(state, strict=False)

    def head_state(self) -> dict[str, torch.Tensor]:
        """The task head's parameters (``head.*`` keys), as ``otm-head`` averages.

        Raises
        ------
        ValueError
            When the model has no task head (``num_classes`` 0, clustering).
        """
        if self.head is None:
            raise ValueError("this WAE has no task head (num_classes=0)")
        return {
            key: value.detach().clone()
            for key, value in self.state_dict().items()
            if key.startswith("head.")
        }

    def load_head_state(self, state: dict[str, torch.Tensor]) -> None:
        """Load what :meth:`head_state` returns (e.g. averaged over agents).

        Raises
        ------
        ValueError
            When the model has no head, or keys or shapes differ from its head's.
        """
        own = self.head_state()
        _check_state("head state", own, state)
        self.load_state_dict(state, strict=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(codes, reconstruction)``."""
        z = self.encode(x)
        return z, self.decode(z)


def _check_state(
    what: str, own: dict[str, torch.Tensor], state: dict[str, torch.Tensor]
) -> None:
    """Raise ValueError unless ``state`` has exactly ``own``'s keys and shapes."""
    missing, unexpected = own.keys() - state.keys(), state.keys() - own.keys()
    if missing or unexpected:
        raise ValueError(
            f"{what} mismatch: missing {sorted(missing)}, "
            f"unexpected {sorted(unexpected)}"
        )
    for key, value in state.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise ValueError(
                f"{what} {key!r}: shape {tuple(value.shape)}, "
                f"expected {tuple(own[key].shape)}"
            )


def mmd_imq(z: torch.Tensor, prior: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Unbiased MMD^2 between codes and prior samples, inverse multiquadratic kernel.

    The WAE-MMD penalty of Tolstikhin et al. (ICLR 2018): kernels
    ``C / (C + ||x - y||^2)`` summed over ``C = 2 d scale * s`` for several ``s``.

    Parameters
    ----------
    z, prior : torch.Tensor
        Codes and prior samples, both (n x d), n >= 2.
    scale : float
        Variance of the Gaussian prior.
    """
    n, d = z.shape
    if n < 2 or prior.shape != z.shape:
        raise ValueError(
            f"mmd_imq needs two (n>=2, d) tensors, got {z.shape}, {prior.shape}"
        )
    zz = torch.cdist(z, z).pow(2)
    pp = torch.cdist(prior, prior).pow(2)
    zp = torch.cdist(z, prior).pow(2)
    off_diag = 1.0 - torch.eye(n, device=z.device, dtype=z.dtype)
    total = z.new_zeros(())
    for s in (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0):
        c = 2.0 * d * scale * s
        total = total + ((c / (c + zz)) * off_diag).sum() / (n * (n - 1))
        total = total + ((c / (c + pp)) * off_diag).sum() / (n * (n - 1))
        total = total - 2.0 * (c / (c + zp)).mean()
    return total
