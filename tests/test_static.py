"""Static checks run with the tests: ruff (lint) and mypy (types)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff not installed")
def test_ruff_is_clean() -> None:
    run = subprocess.run(
        ["ruff", "check", "."], cwd=ROOT, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_mypy_is_clean() -> None:
    pytest.importorskip("mypy")
    packages = ["otm_flower", "strategies", "clients", "simulations"]
    run = subprocess.run(
        [sys.executable, "-m", "mypy", *packages],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr
