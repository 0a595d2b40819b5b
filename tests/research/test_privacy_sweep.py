"""The privacy sweep's cells: calibrated noise, overrides on the private cells only."""

from __future__ import annotations

import pytest

from research.privacy_sweep import ANCHORED, sweep_cells


@pytest.mark.parametrize("baselines", [True, False])
def test_overrides_reach_only_the_private_cells(baselines: bool) -> None:
    cells = sweep_cells([8.0, 16.0], 3.0, 1e-5, {"term-guard": "false"}, baselines)
    private = [c for c in cells if c[1] != "off"]
    assert [label for _, label, _ in private] == ["8", "16"]
    for method, _, settings in private:
        assert method == "otm" and settings["term-guard"] == "false"
        assert settings["anchor-rate"] == ANCHORED["anchor-rate"]
    noise = [float(settings["dp-noise"]) for _, _, settings in private]
    assert noise[0] > noise[1] > 0  # a smaller epsilon needs more noise
    baseline = [(m, s) for m, label, s in cells if label == "off"]
    assert [m for m, _ in baseline] == (["otm", "local"] if baselines else [])
    assert all("term-guard" not in s and "dp-noise" not in s for _, s in baseline)


def test_noise_is_calibrated_for_the_overridden_upload_size() -> None:
    def noise(overrides: dict[str, str]) -> float:
        (cell,) = sweep_cells([8.0], 3.0, 1e-5, overrides, baselines=False)
        return float(cell[2]["dp-noise"])

    # fewer rows drawn per round: more amplification by sampling, less noise
    assert noise({"mix-batch-size": "64"}) < noise({})
