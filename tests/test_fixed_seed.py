"""Fixed-seed metrics on the embedded default stay what they were.

``tests/data/fixed_seed_metrics.json`` holds the metrics of the cases below,
measured with ``python tests/test_fixed_seed.py --write`` (first on version 0.1.0,
before the 2026-12 redesign of the strategy, mixer and apps). A refactoring that changes
no behaviour keeps them identical; a deliberate change of behaviour rewrites the
file and says why in CHANGELOG.md. Metrics added later (keys the file does not
hold) are ignored; every value the file holds must be reproduced exactly. The
cases run the paper's reference settings (``preset = "paper"``), which every
release keeps reachable.

Training amplifies float round-off, and round-off depends on the CPU's vector
unit, the thread count and the numeric libraries: the file records the platform
it was measured on (``_platform``), and on another platform the comparison is
skipped with both named (rewrite the file there to check a change).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

GOLDEN = Path(__file__).parent / "data" / "fixed_seed_metrics.json"
BASE = {
    "dataset": "handwritten",
    "num-server-rounds": 2,
    "local-epochs": 1,
    "seed": 3,
    "diagnostics-dir": "auto",
    "preset": "paper",
}
CASES: dict[str, dict[str, Any]] = {
    "otm": {},
    "otm-exact": {"solver": "exact"},
    "otm-anchored-own": {
        "anchor-rate": 0.05,
        "mix-frame": "own",
        "weight-mix": 1.0,
        "weight-reg": 3.0,
    },
    "otm-anchored-own-no-feedback": {
        "anchor-rate": 0.05,
        "mix-frame": "own",
        "weight-mix": 1.0,
        "weight-reg": 3.0,
        "link-feedback": False,
    },
    "otm-head": {
        "method": "otm-head",
        "task": "classification",
        "mix-frame": "own",
        "weight-reg": 3.0,
    },
    "otm-nomix": {"method": "otm-nomix"},
    "otm-w": {"method": "otm-w"},
    "otm-fedavg-labelcost": {
        "method": "otm-fedavg",
        "task": "classification",
        "label-cost-weight": 10.0,
    },
    "fedavg": {"method": "fedavg"},
    "local": {"method": "local"},
}
KEPT = (
    "agents",
    "mean",
    "history",
    "bytes_up",
    "bytes_down",
    "coupling_agreement",
    "coupling_agreement_history",
    "rejected",
)


PLATFORM_KEY = "_platform"


def numeric_platform() -> dict[str, str]:
    """What decides the float round-off of a run: vector unit, threads, libraries."""
    import numpy
    import ot
    import scipy
    import sklearn
    import torch

    return {
        "cpu-capability": str(torch.backends.cpu.get_cpu_capability()),
        "cpus": str(os.cpu_count()),
        "torch-threads": str(torch.get_num_threads()),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
        "pot": ot.__version__,
    }


def restricted(value: Any, like: Any) -> Any:
    """``value`` with only the dict keys that ``like`` has (new metrics may appear)."""
    if isinstance(value, dict) and isinstance(like, dict):
        return {k: restricted(value.get(k), like[k]) for k in like}
    if isinstance(value, list) and isinstance(like, list) and len(value) == len(like):
        return [restricted(v, w) for v, w in zip(value, like, strict=True)]
    return value


def run_case(name: str, folder: Path) -> dict[str, Any]:
    """The kept metrics of one case, run in process."""
    from otm_flower.config import parse_run_config
    from simulations.cli import simulate

    values = {**BASE, **CASES[name], "out": str(folder / f"{name}.json")}
    result = simulate(parse_run_config(values), runtime="inprocess")
    return json.loads(json.dumps({key: result.get(key) for key in KEPT}))


#: Torch threads every case starts with (other tests and the trainers change the
#: process-wide count, and the fingerprint must not depend on what ran before).
THREADS = 2


def pin_threads() -> None:
    """Start a case from :data:`THREADS` torch threads."""
    import torch

    torch.set_num_threads(THREADS)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_fixed_seed_metrics_unchanged(name: str, tmp_path: Path) -> None:
    golden = json.loads(GOLDEN.read_text())
    pin_threads()
    measured_on, here = golden.get(PLATFORM_KEY), numeric_platform()
    if measured_on != here:
        there = measured_on or {}
        differ = {k: (there.get(k), v) for k, v in here.items() if there.get(k) != v}
        pytest.skip(f"reference measured on another platform (there, here): {differ}")
    expected = golden[name]
    assert restricted(run_case(name, tmp_path), expected) == expected


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        raise SystemExit("usage: python tests/test_fixed_seed.py --write")
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        metrics = {}
        for name in CASES:
            pin_threads()
            metrics[name] = run_case(name, Path(tmp))
    pin_threads()
    metrics[PLATFORM_KEY] = numeric_platform()
    GOLDEN.write_text(json.dumps(metrics, indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
