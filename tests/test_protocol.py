"""The protocol module and the plug-in helper: one home for wire names, light import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import otm_flower
from otm_flower import averaging
from otm_flower import protocol as P

ROOT = Path(__file__).resolve().parents[1]

LOADED = (
    "import json, sys, clients.otm_messages; "
    "print(json.dumps(sorted(m for m in sys.modules "
    "if m.split('.')[0] in ('ot', 'sklearn', 'torch', 'otm_flower'))))"
)


def test_plugin_helper_imports_no_pot_sklearn_or_run_config() -> None:
    run = subprocess.run(
        [sys.executable, "-c", LOADED],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    loaded = json.loads(run.stdout)
    assert not [m for m in loaded if m.split(".")[0] in ("ot", "sklearn")], loaded
    assert "otm_flower.config" not in loaded, loaded
    light = {"otm_flower", "otm_flower.protocol", "otm_flower.wire_arrays"}
    assert set(loaded) <= light, loaded


def test_averaging_reexports_the_protocol_names() -> None:
    assert averaging.SHARED_RECORD is P.SHARED_RECORD == "shared"
    assert averaging.KEY_SHARING is P.KEY_SHARING == "shared-parameters"
    assert averaging.HEAD_PREFIX is P.HEAD_PREFIX == "head."


def test_package_names_load_lazily_and_all_resolve() -> None:
    for name in otm_flower.__all__:
        assert getattr(otm_flower, name) is not None, name
    assert set(otm_flower.__all__) <= set(dir(otm_flower))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        otm_flower.nope  # noqa: B018
