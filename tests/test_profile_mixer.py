"""The mixer profile times every piece of one fast solve."""

from __future__ import annotations

from simulations.bench_mixer import clustered_clouds
from simulations.profile_mixer import PIECES, instrumented, profile, to_markdown


def test_profile_times_the_pieces_and_restores_them():
    before = [getattr(owner, attr) for _, owner, attr in PIECES]
    clouds = clustered_clouds(48, 3, 4, seed=0)
    timers, total, objective = profile(clouds, alpha=0.5, n_iter=3, options={})
    assert objective > 0 and total > 0
    # the Sinkhorn step, gradient, products and polish all ran
    for label in ("Sinkhorn", "gradient", "products", "polish"):
        assert any(label in k for k in timers.calls), label
    assert sum(timers.seconds.values()) <= total + 1e-6  # exclusive times
    assert [getattr(owner, attr) for _, owner, attr in PIECES] == before
    table = to_markdown(timers, total)
    assert table.count("\n") == len(timers.seconds) + 3


def test_instrumented_restores_after_an_error():
    from simulations.profile_mixer import Timers

    before = [getattr(owner, attr) for _, owner, attr in PIECES]
    try:
        with instrumented(Timers()):
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert [getattr(owner, attr) for _, owner, attr in PIECES] == before


def test_assignment_times_solve_each_polish_problem_raw_and_reduced():
    from otm_flower.barycenter import linear_steps
    from simulations.profile_mixer import assignment_times

    reduce = linear_steps.reduce_costs
    clouds = clustered_clouds(48, 3, 4, seed=0)
    rows = assignment_times(clouds, alpha=0.5, n_iter=3, threads=1)
    assert len(rows) == 3  # 3 clouds, polished once (before the polished update)
    assert all(r["same_cost"] for r in rows)  # the same optimum either way
    assert all(r["raw_s"] > 0 and r["reduced_s"] > 0 for r in rows)
    assert linear_steps.reduce_costs is reduce  # restored
