"""Label-free matching study: class agreement of couplings found without labels.

For every pair of agents of a data set it measures the class agreement of
couplings found without labels or linked records, by several routes:

* ``gw``: POT's GW (conditional gradient) from the product coupling;
* ``gw-best``: the lowest-objective GW plan of ``--starts`` starts (the product
  coupling and random permutations);
* ``gw-kernel``: the same with Gaussian-kernel structure matrices
  ``exp(-D / median D)``;
* ``annealed``: entropic GW with epsilon annealed 0.1 -> 0.005, then GW;
* ``relabel``: the global optimum over all K! relabellings of the two clouds'
  k-means clusters (:mod:`research.matching`), with the *semantic*
  relabelling's agreement (the best any relabelling can do: a ceiling) and
  its rank among all relabellings by objective, as a share of them
  (``relabel-rank-share``; 0: the objective prefers it, ~0.5: indifferent).

on either the agents' preprocessed features (``--features raw``) or the codes
of WAEs each trained alone with the run-config defaults (``--features codes``:
the ``local`` method, 20 rounds x 3 epochs). Labels are used for scoring only.

Run ``python -m research.matching_study --help``.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import ot
import torch
from scipy.spatial.distance import cdist

from otm_flower.agent import build_trainer, load_agents
from otm_flower.config import RunConfig
from otm_flower.fast_fgw import round_to_coupling
from otm_flower.results import write_result
from research.matching import (
    MAX_EXHAUSTIVE_CLUSTERS,
    plan_agreement,
    relabelling_agreement,
    search_relabellings,
    semantic_relabelling,
)

ROUTES = ("gw", "gw-best", "gw-kernel", "annealed", "relabel")
FEATURES = ("raw", "codes")


def structure_matrix(z: np.ndarray, kernel: bool) -> np.ndarray:
    """Squared distances divided by their mean, or a Gaussian kernel of them."""
    d = cdist(z, z, "sqeuclidean")
    if kernel:
        return np.exp(-d / max(float(np.median(d)), 1e-12))
    return d / max(float(d.mean()), 1e-12)


def best_gw(c1: np.ndarray, c2: np.ndarray, starts: int, seed: int) -> np.ndarray:
    """Lowest-objective GW plan of the product start and ``starts - 1`` permutations."""
    n1, n2 = len(c1), len(c2)
    p, q = ot.unif(n1), ot.unif(n2)
    rng = np.random.default_rng(seed)
    best: tuple[float, np.ndarray] | None = None
    for s in range(starts):
        if s == 0 or n1 != n2:
            g0 = np.outer(p, q)
        else:
            g0 = np.eye(n1)[rng.permutation(n1)] / n1
        plan, log = ot.gromov.gromov_wasserstein(
            c1, c2, p, q, "square_loss", G0=g0, log=True
        )
        if best is None or log["gw_dist"] < best[0]:
            best = (float(log["gw_dist"]), plan)
    assert best is not None
    return best[1]


def annealed_gw(c1: np.ndarray, c2: np.ndarray) -> np.ndarray:
    """Entropic GW, epsilon 0.1 -> 0.005 (warm started), rounded, then exact GW."""
    p, q = ot.unif(len(c1)), ot.unif(len(c2))
    plan = np.outer(p, q)
    for eps in (0.1, 0.05, 0.02, 0.01, 0.005):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nxt = ot.gromov.entropic_gromov_wasserstein(
                c1, c2, p, q, "square_loss", epsilon=eps, G0=plan, max_iter=200
            )
        if not np.all(np.isfinite(nxt)) or abs(float(nxt.sum()) - 1.0) > 1e-3:
            break  # Sinkhorn underflow at this epsilon: keep the last good plan
        plan = nxt
    rounded = round_to_coupling(
        torch.as_tensor(plan)[None], torch.as_tensor(p)[None], torch.as_tensor(q)[None]
    )[0].numpy()
    return ot.gromov.gromov_wasserstein(c1, c2, p, q, "square_loss", G0=rounded)


def pair_routes(
    z1: np.ndarray,
    z2: np.ndarray,
    y1: np.ndarray,
    y2: np.ndarray,
    *,
    routes: Sequence[str],
    n_clusters: int,
    starts: int,
    seed: int,
) -> dict[str, float]:
    """Agreement of every route on one pair (``relabel`` adds ceiling and rank)."""
    out: dict[str, float] = {}
    c1, c2 = (structure_matrix(z, kernel=False) for z in (z1, z2))
    solvers: dict[str, Callable[[], np.ndarray]] = {
        "gw": lambda: best_gw(c1, c2, 1, seed),
        "gw-best": lambda: best_gw(c1, c2, starts, seed),
        "gw-kernel": lambda: best_gw(
            structure_matrix(z1, True), structure_matrix(z2, True), starts, seed
        ),
        "annealed": lambda: annealed_gw(c1, c2),
    }
    for route in routes:
        if route == "relabel":
            search = search_relabellings(z1, z2, n_clusters, seed=seed)
            semantic = semantic_relabelling(search, y1, y2)
            out["relabel"] = relabelling_agreement(search, search.best, y1, y2)
            out["relabel-ceiling"] = relabelling_agreement(search, semantic, y1, y2)
            out["relabel-rank-share"] = search.rank(semantic) / search.objectives.size
        else:
            out[route] = plan_agreement(solvers[route](), y1, y2)
    return out


def agent_clouds(
    dataset: str, features: str, seed: int, rows: int
) -> tuple[list[np.ndarray], list[np.ndarray], int, list[str]]:
    """``rows`` random training rows per agent (features or codes) and labels."""
    config = RunConfig(dataset=dataset, seed=seed, method="local")
    agents, n_classes = load_agents(config)
    rng = np.random.default_rng(seed)
    clouds, labels, names = [], [], []
    for agent in agents:
        if features == "codes":
            trainer = build_trainer(config, agent, n_classes)
            trainer.train(config.num_server_rounds * config.local_epochs)
            z = trainer.encode()
        else:
            z = agent.x_train
        pick = rng.choice(agent.n_train, min(rows, agent.n_train), replace=False)
        clouds.append(np.asarray(z, dtype=np.float64)[pick])
        labels.append(agent.y_train[pick])
        names.append(agent.modality_name)
    return clouds, labels, n_classes, names


def seed_pairs(
    clouds: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    names: Sequence[str],
    *,
    routes: Sequence[str],
    n_clusters: int,
    starts: int,
    seed: int,
    progress: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Every agent pair's agreement per route, for one seed's clouds."""
    pairs: list[dict[str, Any]] = []
    for i, j in itertools.combinations(range(len(clouds)), 2):
        scores = pair_routes(
            clouds[i],
            clouds[j],
            labels[i],
            labels[j],
            routes=routes,
            n_clusters=n_clusters,
            starts=starts,
            seed=seed,
        )
        pairs.append({"pair": f"{names[i]}-{names[j]}", **scores})
        progress(
            f"seed {seed} {names[i]}-{names[j]}: "
            + "  ".join(f"{k} {v:.3g}" for k, v in scores.items())
        )
    return pairs


def study(
    dataset: str,
    *,
    features: str,
    seeds: Sequence[int],
    rows: int,
    routes: Sequence[str],
    starts: int,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every pair's agreement per route and seed, with means over pairs."""
    _, n_classes = load_agents(RunConfig(dataset=dataset, method="local"))
    if "relabel" in routes and n_classes > MAX_EXHAUSTIVE_CLUSTERS:
        raise ValueError(
            f"{dataset} has {n_classes} classes: the relabel route enumerates K! "
            f"relabellings and allows K <= {MAX_EXHAUSTIVE_CLUSTERS}; leave it out "
            "of --routes"
        )
    runs = []
    for seed in seeds:
        start = time.perf_counter()
        clouds, labels, n_classes, names = agent_clouds(dataset, features, seed, rows)
        pairs = seed_pairs(
            clouds, labels, names, routes=routes, n_clusters=n_classes,
            starts=starts, seed=seed, progress=progress,
        )  # fmt: skip
        means = {
            key: float(np.mean([p[key] for p in pairs]))
            for key in pairs[0]
            if key != "pair"
        }
        runs.append({"seed": seed, "pairs": pairs, "mean": means})
        progress(
            f"seed {seed}, mean over {len(pairs)} pairs "
            f"({time.perf_counter() - start:.0f} s): "
            + "  ".join(f"{k} {v:.3f}" for k, v in means.items())
        )
    return {
        "dataset": dataset,
        "features": features,
        "rows": rows,
        "starts": starts,
        "runs": runs,
    }


def markdown(result: dict[str, Any]) -> str:
    """Mean ± std over seeds of the mean-over-pairs agreement, one row per route."""
    keys = list(result["runs"][0]["mean"])
    lines = [
        f"{result['dataset']}, {result['features']}, {result['rows']} rows per agent, "
        f"{len(result['runs'])} seed(s)",
        "",
        "| route | mean over pairs |",
        "|---|---|",
    ]
    for key in keys:
        values = np.array([run["mean"][key] for run in result["runs"]])
        spread = f" ± {values.std(ddof=1):.3f}" if len(values) > 1 else ""
        lines.append(f"| {key} | {values.mean():.3f}{spread} |")
    return "\n".join(lines)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m research.matching_study", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--dataset", default="handwritten")
    parser.add_argument("--features", choices=FEATURES, default="codes")
    parser.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1")
    parser.add_argument("--rows", type=int, default=256, help="rows per agent")
    parser.add_argument(
        "--routes", default=",".join(ROUTES), help=f"comma list of {ROUTES}"
    )
    parser.add_argument("--starts", type=int, default=10)
    parser.add_argument("--out", type=Path, help="write the JSON result here")
    args = parser.parse_args(argv)
    routes = [r.strip() for r in args.routes.split(",") if r.strip()]
    unknown = sorted(set(routes) - set(ROUTES))
    if unknown or not routes:
        parser.error(f"unknown routes {unknown}; choose from {ROUTES}")
    if args.seeds < 1 or args.rows < 2 or args.starts < 1:
        parser.error("--seeds and --starts must be >= 1, --rows >= 2")
    args.routes = routes
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    args = _parse(argv)
    try:
        result = study(
            args.dataset,
            features=args.features,
            seeds=range(args.seeds),
            rows=args.rows,
            routes=args.routes,
            starts=args.starts,
        )
    except ValueError as err:
        print(f"matching_study: error: {err}", file=sys.stderr)
        return 2
    print(markdown(result))
    if args.out is not None:
        write_result(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
