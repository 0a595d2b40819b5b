"""The one-hot label block on uploaded codes (``label-cost-weight``)."""

from __future__ import annotations

import numpy as np

from .protocol import MixTargets, ProtocolError

__all__ = ["append_label_block", "drop_label_block"]


def append_label_block(
    codes: np.ndarray, labels: np.ndarray, num_classes: int, weight: float
) -> np.ndarray:
    """Codes with ``weight * onehot(label)`` appended (``label-cost-weight``).

    The barycenter's feature cost then adds ``2 weight^2`` to every cross-class
    pair of codes, so the couplings prefer same-class matches. The block is in the
    clear: whoever receives the codes reads each code's class.

    Parameters
    ----------
    codes : np.ndarray
        Latent codes, ``n x d``.
    labels : np.ndarray
        The encoded rows' labels, ``n`` ints in ``[0, num_classes)``.
    num_classes : int
        Width of the one-hot block.
    weight : float
        Scale of the block (> 0).

    Returns
    -------
    np.ndarray
        ``n x (d + num_classes)`` float32.

    Raises
    ------
    ValueError
        On shapes that differ or labels out of range.
    """
    codes = np.asarray(codes, dtype=np.float32)
    labels = np.asarray(labels)
    if codes.ndim != 2 or labels.shape != (len(codes),):
        raise ValueError(
            f"need codes (n x d) and one label per code, got {codes.shape}, "
            f"{labels.shape}"
        )
    if num_classes < 1 or (labels < 0).any() or (labels >= num_classes).any():
        raise ValueError(f"labels must lie in [0, {num_classes})")
    block = np.zeros((len(codes), num_classes), dtype=np.float32)
    block[np.arange(len(codes)), labels.astype(np.int64)] = weight
    return np.concatenate([codes, block], axis=1)


def drop_label_block(
    targets: MixTargets, latent_dim: int, num_classes: int
) -> MixTargets:
    """The server's targets for label-extended uploads, cut to the latent columns.

    Raises
    ------
    ProtocolError
        When the mixed (or barycenter) codes do not have ``latent_dim +
        num_classes`` columns.
    """
    width = latent_dim + num_classes
    for name, codes in (("mixed", targets.mixed), ("barycenter", targets.barycenter)):
        if codes is not None and (codes.ndim != 2 or codes.shape[1] != width):
            raise ProtocolError(
                f"{name} codes of shape {codes.shape}: with label-cost-weight > 0 "
                f"they must have latent-dim + classes = {latent_dim} + "
                f"{num_classes} = {width} columns"
            )
    return MixTargets(
        targets.rows,
        targets.mixed[:, :latent_dim],
        None if targets.barycenter is None else targets.barycenter[:, :latent_dim],
    )
