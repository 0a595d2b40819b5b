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

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(codes, reconstruction)``."""
        z = self.encode(x)
        return z, self.decode(z)


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
