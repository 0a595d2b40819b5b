"""Plans stay where the solver computed them (otm_flower.barycenter.transport)."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import MetricRecord

from otm_flower.barycenter.engine import BarycenterResult
from otm_flower.barycenter.transport import DenseTransport, TorchTransport
from otm_flower.code_mixer import CodeMixer
from otm_flower.mixer import fgw_barycenter, mix_targets
from strategies import OTMStrategy
from strategies.replies import Upload


def _clouds(sizes=(30, 30, 24), d=4, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(n, d)) + k for k, n in enumerate(sizes)]


def _as_dense(result: BarycenterResult) -> BarycenterResult:
    """The same result with its plans copied into numpy (the dense path)."""
    plans = [t.copy() for t in result.plans]
    fields = {**vars(result), "transport": DenseTransport(plans)}
    return BarycenterResult(**fields)


def test_fast_solver_keeps_plans_in_torch_until_asked():
    clouds = _clouds()
    res = fgw_barycenter(clouds, n_iter=2, seed=0)
    assert isinstance(res.transport, TorchTransport)
    assert not res.transport.materialised
    mix_targets(res, clouds, rng=0)
    assert not res.transport.materialised  # mixing used products only
    plans = res.plans
    assert res.transport.materialised
    for t, z in zip(plans, clouds, strict=True):
        assert t.dtype == np.float64 and t.shape == (30, len(z))
        np.testing.assert_allclose(t.sum(1), 1 / 30, rtol=1e-9)
        np.testing.assert_allclose(t.sum(0), 1 / len(z), rtol=1e-9)


@pytest.mark.parametrize(
    ("own_only", "align"), [(False, False), (True, False), (False, True)]
)
def test_device_pull_back_equals_dense_path(own_only, align):
    clouds = _clouds()
    res = fgw_barycenter(clouds, n_iter=2, seed=1)
    dense = _as_dense(res)
    got = mix_targets(res, clouds, rng=3, own_only=own_only, align=align)
    want = mix_targets(dense, clouds, rng=3, own_only=own_only, align=align)
    for a, b in zip(got[0] + got[1], want[0] + want[1], strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    z = res.barycenter
    for a, b, t in zip(
        res.transport.pull_back([z] * 3),
        dense.transport.pull_back([z] * 3),
        dense.plans,
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(a, t.shape[1] * t.T @ z, rtol=1e-10, atol=1e-12)


def test_transport_rejects_misshaped_values():
    res = fgw_barycenter(_clouds(), n_iter=1, seed=0)
    with pytest.raises(ValueError, match=r"values\[2\]"):
        res.transport.project([np.ones((30, 2)), np.ones((30, 2)), np.ones((30, 2))])
    with pytest.raises(ValueError, match="3 plans"):
        res.transport.pull_back([np.ones((30, 2))])


def _upload(node_id: int, codes: np.ndarray) -> Upload:
    return Upload(node_id, codes, MetricRecord({}), None, None, 1.0, codes.nbytes)


def test_strategy_mixing_leaves_plans_on_the_solver_device():
    clouds = _clouds(sizes=(32, 32, 32, 32))
    seen = []
    strategy = OTMStrategy(mixer=CodeMixer(iterations=2))
    strategy._mix(1, [_upload(10 + k, z) for k, z in enumerate(clouds)])
    assert set(strategy.state.targets) == {10, 11, 12, 13}
    assert strategy.state.mix_seconds
    traced = OTMStrategy(
        mixer=CodeMixer(iterations=2), on_mix=lambda r, ids, res: seen.append(res)
    )
    traced._mix(1, [_upload(10 + k, z) for k, z in enumerate(clouds)])
    (res,) = seen
    assert not res.transport.materialised  # the callback gets them on request
    assert len(res.plans) == 4 and res.transport.materialised


def test_strategy_targets_do_not_form_dense_plans(monkeypatch):
    calls = []
    original = TorchTransport.dense

    def spy(self):
        calls.append(self)
        return original(self)

    monkeypatch.setattr(TorchTransport, "dense", spy)
    strategy = OTMStrategy(mixer=CodeMixer(iterations=2))
    clouds = _clouds(sizes=(32, 32, 32))
    strategy._mix(1, [_upload(k, z) for k, z in enumerate(clouds)])
    assert len(strategy.state.targets) == 3 and calls == []
