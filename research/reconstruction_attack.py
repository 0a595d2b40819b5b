"""A curious server reconstructs a party's features from its uploaded codes.

The party trains its WAE on all its rows and uploads their codes (clipped and
noised under local DP, or in the clear). Half of its records are also in a
public copy the server holds, and the server can tell which uploaded codes are
theirs (linked-record ids). It fits decoders from those codes to the public
features (ridge regression and k-nearest neighbours, the better one is kept) and
applies them to the codes of the party's other, private rows. The error is the
mean squared error over the private rows' standardised features (held out from
the decoder's fit); the trivial baseline predicts the public mean (error about
1). DP levels are the privacy table's noise multipliers (``dp-clip=3``).

Run: ``python -m research.reconstruction_attack --seeds 0 1 2``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.linear_model import RidgeCV
from sklearn.neighbors import KNeighborsRegressor

from otm_flower.data import load_dataset
from otm_flower.privacy import clip_and_noise
from otm_flower.training import LocalTrainer

#: epsilon -> noise multiplier of docs/privacy.md (20 rounds, q = 0.16).
NOISE_FOR_EPSILON = {1.0: 16.56, 4.0: 5.00, 8.0: 2.86, 16.0: 1.70}
CLIP = 3.0


def party_codes(x: np.ndarray, seed: int, epochs: int) -> np.ndarray:
    """The codes of every row of ``x`` after the party trains its WAE on ``x``."""
    trainer = LocalTrainer(x, latent_dim=16, hidden_dim=128, seed=seed)
    trainer.train(epochs)
    return trainer.encode(x)


def reconstruction_error(
    codes: np.ndarray, x: np.ndarray, public: np.ndarray, private: np.ndarray
) -> float:
    """MSE on the private rows of the better decoder fitted on the public rows."""
    errors = []
    for decoder in (RidgeCV(alphas=np.logspace(-3, 3, 7)), KNeighborsRegressor(10)):
        decoder.fit(codes[public], x[public])
        errors.append(
            float(np.mean((decoder.predict(codes[private]) - x[private]) ** 2))
        )
    return min(errors)


def one_seed(x: np.ndarray, seed: int, epochs: int) -> dict[str, float]:
    """Errors of the baseline and of the attack without and with DP, one seed."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    public, private = order[: len(x) // 2], order[len(x) // 2 :]
    mean, std = x[public].mean(0), x[public].std(0) + 1e-8
    z = (x - mean) / std
    codes = party_codes(z.astype(np.float32), seed, epochs)
    out = {"baseline": float(np.mean(z[private] ** 2))}
    out["no-dp"] = reconstruction_error(codes, z, public, private)
    for epsilon, noise in NOISE_FOR_EPSILON.items():
        noisy = clip_and_noise(codes, CLIP, noise, np.random.default_rng(seed + 1))
        out[f"epsilon-{epsilon:g}"] = reconstruction_error(noisy, z, public, private)
    clipped = clip_and_noise(codes, CLIP, 0.0, rng)
    out["clip-only"] = reconstruction_error(clipped, z, public, private)
    return out


def main(argv: list[str] | None = None) -> None:
    """Run the attack over seeds; print and save mean and spread per setting."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--view", type=int, default=1, help="Handwritten view")
    parser.add_argument("--out", type=Path, default=Path("outputs/attack.json"))
    args = parser.parse_args(argv)
    x = np.asarray(load_dataset("handwritten").views[args.view], dtype=np.float64)
    runs = [one_seed(x, seed, args.epochs) for seed in args.seeds]
    summary = {
        key: {
            "mean": float(np.mean([r[key] for r in runs])),
            "std": float(np.std([r[key] for r in runs])),
        }
        for key in runs[0]
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"runs": runs, "summary": summary}, indent=1))
    for key, value in summary.items():
        print(f"{key:>12}: {value['mean']:.3f} +- {value['std']:.3f}")


if __name__ == "__main__":
    main()
