"""The wheel carries what the installed commands read: built, installed into a fresh
venv (reusing this environment's dependencies, no network), ``otm-flower bench``
runs one round on the embedded default from outside the source checkout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: The wheel's copy of the hyperparameter file (pyproject ``force-include``).
PACKAGED = "simulations/benchmark/hyperparameters.toml"

pytestmark = pytest.mark.slow


def _clean_env() -> dict[str, str]:
    """This environment without the variables that would point at the checkout."""
    drop = {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def _build_wheel(out: Path) -> Path:
    pytest.importorskip("hatchling", reason="the test extra installs hatchling")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
        + ["--no-index", "-q", "-w", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = out.glob("otm_flower-*.whl")
    return wheel


def _fresh_venv(folder: Path) -> Path:
    """A venv that sees this environment's packages through a plain path entry
    (so the source checkout's editable hook is not processed); its python."""
    venv.EnvBuilder(with_pip=False).create(folder)
    python = folder / "bin" / "python"
    site = subprocess.run(
        [
            str(python),
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(site) / "host-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def test_wheel_installs_and_bench_runs_on_the_embedded_default(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path / "dist")
    with zipfile.ZipFile(wheel) as archive:
        assert (
            archive.read(PACKAGED)
            == (ROOT / "configs/hyperparameters.toml").read_bytes()
        )
    python = _fresh_venv(tmp_path / "venv")
    subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q"]
        + [str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = subprocess.run(
        [
            str(python),
            "-c",
            "import simulations.benchmark.hyperparameters as h; "
            "print(h.__file__); print(h.DEFAULT_HYPERPARAMETERS)",
        ],
        cwd=work,
        env=_clean_env(),
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert all(str(tmp_path / "venv") in line for line in where), where
    bench = subprocess.run(
        [str(tmp_path / "venv" / "bin" / "otm-flower"), "bench"]
        + ["--datasets", "handwritten", "--methods", "otm", "--regimes", "unaligned"]
        + ["--seeds", "1", "--rounds", "1", "--set", "local-epochs=1"]
        + ["--out", str(work / "bench")],
        cwd=work,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert bench.returncode == 0, bench.stderr[-3000:]
    runs = list((work / "bench" / "runs").glob("*.json"))
    assert len(runs) == 1, bench.stdout[-2000:]
    result = json.loads(runs[0].read_text())
    assert result["dataset"] == "handwritten" and len(result["agents"]) == 6
    assert result["mean"]["acc"] > 0.3  # 10 classes: chance is about 0.1
