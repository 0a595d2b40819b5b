"""Install paths: Flower's runtime install resolves a CPU torch, the FAB keeps the
uv settings, CI runs the README's test command verbatim, the README's main
command stops the SuperLink it started."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import tomli_w

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def _bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def _uv() -> str:
    uv = shutil.which("uv", path=str(Path(sys.executable).parent))
    if uv is None:
        pytest.skip("uv (a dependency of flwr) is not installed next to python")
    return uv


def test_uv_resolves_torch_from_the_cpu_index(tmp_path: Path) -> None:
    """``uv`` (what Flower's runtime install runs) asks the PyTorch CPU index for
    torch on Linux and PyPI only for macOS, with this project's uv tables."""
    tool = tomllib.loads(PYPROJECT.read_text())["tool"]
    probe = {
        "project": {
            "name": "probe",
            "version": "0",
            "requires-python": ">=3.11",
            "dependencies": ["torch==2.13.0"],
        },
        "tool": {"uv": tool["uv"]},
    }
    (tmp_path / "pyproject.toml").write_text(tomli_w.dumps(probe))
    proc = subprocess.run(
        [_uv(), "lock", "--offline", "--no-cache", "-v"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    log = proc.stdout + proc.stderr
    assert f"{CPU_INDEX}/torch/" in log, log[-2000:]
    assert "split (markers: sys_platform != 'darwin')" in log, log[-2000:]


def test_the_fab_keeps_the_uv_settings() -> None:
    """Flower's runtime install reads the FAB's pyproject: the uv tables survive;
    the FAB holds the apps' code and nothing of the studies or docs."""
    from flwr.cli.build import build_fab_from_disk

    fab = build_fab_from_disk(ROOT)
    with zipfile.ZipFile(io.BytesIO(fab)) as archive:
        shipped = tomllib.loads(archive.read("pyproject.toml").decode())
        tops = {name.split("/")[0] for name in archive.namelist()}
    assert {"clients", "otm_flower", "simulations", "strategies", "configs"} <= tops
    assert not tops & {"research", "docs", "examples", "tests"}, tops
    uv = shipped["tool"]["uv"]
    assert uv["sources"]["torch"][0]["index"] == uv["index"][0]["name"]
    assert uv["index"][0]["url"] == CPU_INDEX and uv["index"][0]["explicit"]


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    blocks = _bash_blocks((ROOT / "README.md").read_text())
    commands = [b.strip() for b in blocks if b.strip().endswith("pytest -q -n 2")]
    (test_command,) = commands
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci


def test_readme_main_command_stops_the_superlink_it_starts() -> None:
    blocks = _bash_blocks((ROOT / "README.md").read_text())
    main = blocks[0].strip()
    assert "\n" not in main and " flwr run . " in main
    run, _, stop = main.rpartition("; ")
    assert stop == 'pkill -f "flower-superlink --insecure --simulation"'
    assert "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1 flwr run" in run
    # the pattern matches the command Flower starts its local SuperLink with
    from flwr.cli import local_superlink

    source = Path(local_superlink.__file__).read_text()
    assert re.search(r'"flower-superlink",\s*"--insecure",\s*"--simulation"', source), (
        "Flower's local SuperLink command line changed"
    )
