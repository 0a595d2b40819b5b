"""A curious server reconstructs a party's features from its uploaded codes.

The party (one Handwritten view, preprocessed as the product does it) trains its
WAE with the product's trainer, ``local-epochs`` per round and no OTM terms, and
uploads codes every round through the product's upload path
(:func:`clients.upload.choose_rows`, then :func:`clients.upload.privatize_codes`
under local DP), in the privacy table's regime (docs/privacy.md: 5% linked
records, ``mix-batch-size`` 256, ``dp-clip`` 3, ``dp-delta`` 1e-5, the noise
multiplier calibrated by :func:`research.privacy_sweep.calibrate`).

Attacker (the strongest realistic one): half of the party's training rows are
public, features and all, and the server knows which uploaded codes are theirs
(known-plaintext pairs). It fits decoders codes -> features on the public rows'
uploads of the last ``--window`` rounds (ridge regression and an MLP,
scikit-learn) and applies them to the private rows' uploads of those rounds.
Under DP both the pairs and the targets are the noised uploads. Scored by the
MSE on the party's standardised features, and by ``R2 = 1 - MSE / MSE_mean``,
against two trivial baselines: the public rows' mean (``R2 = 0``) and the
features of the nearest public upload in code space.

Run: ``python -m research.reconstruction_attack --seeds 0 1 2`` (prints a
Markdown table).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
from sklearn.linear_model import RidgeCV
from sklearn.neighbors import KNeighborsRegressor
from sklearn.neural_network import MLPRegressor

from clients.upload import choose_rows, privatize_codes
from otm_flower.agent import agent_anchor_ids, build_trainer, load_agents
from otm_flower.config import RunConfig, parse_run_config
from research.privacy_sweep import ANCHORED, calibrate

EPSILONS = (16.0, 8.0, 4.0, 1.0)
CLIP = 3.0
DELTA = 1e-5
#: Decoders and baselines, in the table's column order.
METHODS = ("mean", "nearest", "ridge", "mlp")


@dataclasses.dataclass
class Uploads:
    """What a party uploaded over a run, one entry per uploaded code.

    Attributes
    ----------
    rows : ndarray
        The training row of each code.
    rounds : ndarray
        The round it went up in.
    codes : ndarray
        The codes as they left the party (what the server sees).
    clean : ndarray
        The encoder's codes before DP (the party's own; never used by the attack).
    epsilon : float or None
        The epsilon the party reported after the last round (``None``: no DP).
    """

    rows: np.ndarray
    rounds: np.ndarray
    codes: np.ndarray
    clean: np.ndarray
    epsilon: float | None


def run_config(seed: int, noise: float | None, **overrides: str) -> RunConfig:
    """The party's run config: the privacy table's regime, DP when ``noise``."""
    settings = {**ANCHORED, "seed": str(seed), **overrides}
    if noise is not None:
        settings.update(
            {"dp-clip": str(CLIP), "dp-noise": f"{noise:.6f}", "dp-delta": str(DELTA)}
        )
    return parse_run_config(settings)


def party_uploads(config: RunConfig, agent_id: int) -> Uploads:
    """Train one agent as the product does (no OTM terms) and keep its uploads.

    Parameters
    ----------
    config : RunConfig
        The run (rounds, local epochs, upload size, DP settings, seed).
    agent_id : int
        The party (Handwritten: one agent per view).
    """
    agents, n_classes = load_agents(config)
    agent = agents[agent_id]
    trainer = build_trainer(config, agent, n_classes)
    ids = agent_anchor_ids(agent, config)
    n_linked = 0 if ids is None else int(np.sum(ids >= 0))
    size = max(1, min(config.mix_batch_size, agent.n_train))
    releases = np.zeros(agent.n_train, dtype=np.int64)
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    epsilon = None
    for server_round in range(1, config.num_server_rounds + 1):
        trainer.train(config.local_epochs)
        rows = choose_rows(
            trainer,
            agent,
            config,
            size=size,
            anchor_ids=ids,
            server_round=server_round,
        )
        clean = trainer.encode(agent.x_train[rows])
        codes = clean
        if config.dp_clip > 0:
            codes, epsilon = privatize_codes(
                clean,
                rows,
                releases,
                config,
                agent_id=agent.agent_id,
                server_round=server_round,
                n_linked=n_linked,
            )
        parts.append((rows, clean, codes))
    rounds = np.concatenate(
        [np.full(len(rows), r + 1) for r, (rows, _, _) in enumerate(parts)]
    )
    return Uploads(
        rows=np.concatenate([p[0] for p in parts]),
        rounds=rounds,
        codes=np.concatenate([p[2] for p in parts]).astype(np.float64),
        clean=np.concatenate([p[1] for p in parts]).astype(np.float64),
        epsilon=epsilon,
    )


def decoders(seed: int) -> dict[str, object]:
    """The attacker's decoders and the nearest-public-code baseline, unfitted."""
    return {
        "nearest": KNeighborsRegressor(n_neighbors=1),
        "ridge": RidgeCV(alphas=np.logspace(-3, 3, 13)),
        "mlp": MLPRegressor(
            hidden_layer_sizes=(256, 256),
            alpha=1e-3,
            max_iter=300,
            early_stopping=True,
            random_state=seed,
        ),
    }


def attack(
    uploads: Uploads,
    x: np.ndarray,
    public: np.ndarray,
    *,
    window: int,
    seed: int,
) -> dict[str, float]:
    """Reconstruction MSE of each method on the private rows' uploads.

    Parameters
    ----------
    uploads : Uploads
        The party's uploads; only ``rows``, ``rounds`` and ``codes`` are used.
    x : ndarray
        The party's (preprocessed) training features, ``n_train x dim``.
    public : ndarray
        Boolean mask of the public training rows.
    window : int
        The attack uses the uploads of the last ``window`` rounds.
    seed : int
        Seeds the MLP.
    """
    recent = uploads.rounds > uploads.rounds.max() - window
    known = recent & public[uploads.rows]
    target = recent & ~public[uploads.rows]
    z_fit, x_fit = uploads.codes[known], x[uploads.rows[known]]
    z_new, x_new = uploads.codes[target], x[uploads.rows[target]]
    errors = {"mean": mse(np.broadcast_to(x[public].mean(0), x_new.shape), x_new)}
    for name, decoder in decoders(seed).items():
        decoder.fit(z_fit, x_fit)
        errors[name] = mse(decoder.predict(z_new), x_new)
    return errors


def mse(predicted: np.ndarray, actual: np.ndarray) -> float:
    """Mean squared error over all entries."""
    return float(np.mean((np.asarray(predicted) - actual) ** 2))


def public_rows(n_train: int, seed: int) -> np.ndarray:
    """A uniform half of the training rows, as a boolean mask (the public copy)."""
    mask = np.zeros(n_train, dtype=bool)
    mask[np.random.default_rng([seed, 91]).permutation(n_train)[: n_train // 2]] = True
    return mask


def one_cell(
    seed: int, noise: float | None, agent_id: int, window: int, **overrides: str
) -> dict[str, float | None]:
    """One seed at one DP setting: each method's MSE and the party's epsilon."""
    config = run_config(seed, noise, **overrides)
    agent = load_agents(config)[0][agent_id]
    uploads = party_uploads(config, agent_id)
    public = public_rows(agent.n_train, seed)
    x = agent.x_train.astype(np.float64)
    errors: dict[str, float | None] = dict(
        attack(uploads, x, public, window=window, seed=seed)
    )
    errors["epsilon"] = uploads.epsilon
    return errors


def summarise(runs: list[dict[str, float | None]]) -> dict[str, tuple[float, float]]:
    """Mean and std over seeds of each method's MSE and R2 (``r2-<method>``)."""
    out: dict[str, tuple[float, float]] = {}
    for name in METHODS:
        values = np.array([r[name] for r in runs], dtype=float)
        r2 = 1.0 - values / np.array([r["mean"] for r in runs], dtype=float)
        out[name] = (float(values.mean()), float(values.std()))
        out[f"r2-{name}"] = (float(r2.mean()), float(r2.std()))
    return out


def table(cells: list[tuple[str, str, dict[str, tuple[float, float]]]]) -> str:
    """A Markdown table: one row per DP setting, MSE and R2 per method."""
    head = ["local DP", "dp-noise"] + [f"MSE {m}" for m in METHODS]
    head += [f"R2 {m}" for m in METHODS[1:]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, noise, stats in cells:
        values = [f"{stats[m][0]:.3f} ± {stats[m][1]:.3f}" for m in METHODS]
        values += [
            f"{stats['r2-' + m][0]:+.3f} ± {stats['r2-' + m][1]:.3f}"
            for m in METHODS[1:]
        ]
        lines.append("| " + " | ".join([label, noise, *values]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run the attack over seeds and DP settings; print the table, save JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epsilons", type=float, nargs="+", default=list(EPSILONS))
    parser.add_argument("--agent", type=int, default=1, help="Handwritten view (fou)")
    parser.add_argument("--window", type=int, default=5, help="rounds attacked")
    parser.add_argument("--out", type=Path, default=Path("outputs/attack.json"))
    args = parser.parse_args(argv)
    settings = [("none", None)] + [
        (f"epsilon {e:g}", calibrate(e, dict(ANCHORED), DELTA)) for e in args.epsilons
    ]
    cells, raw = [], {}
    for label, noise in settings:
        runs = [one_cell(s, noise, args.agent, args.window) for s in args.seeds]
        raw[label] = {"dp-noise": noise, "runs": runs}
        print(json.dumps({label: runs}), flush=True)
        cells.append((label, "-" if noise is None else f"{noise:.2f}", summarise(runs)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(raw, indent=1))
    print(table(cells))


if __name__ == "__main__":
    main()
