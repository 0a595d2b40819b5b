"""The warm executor's preloaded ClientApp: reused for its own FAB only."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from clients import warm_app


def _fab(home: Path, name: str, marker_time: float) -> Path:
    """An installed app folder with a module ``<name>_mod`` and its install marker."""
    folder = home / "apps" / name
    folder.mkdir(parents=True)
    (folder / "pyproject.toml").write_text(
        f'[tool.flwr.app.components]\nclientapp = "{name}_mod:app"\n'
    )
    (folder / f"{name}_mod.py").write_text(f"app = object()\nNAME = {name!r}\n")
    marker = home / "apps" / f".installed-{name}"
    marker.write_text(str(folder))
    os.utime(marker, (marker_time, marker_time))
    return folder.resolve()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(warm_app, "_warm", None)
    yield tmp_path
    for name in [n for n in sys.modules if n.startswith(("one_mod", "two_mod"))]:
        del sys.modules[name]
    sys.path[:] = [p for p in sys.path if not p.startswith(str(tmp_path))]


def test_the_newest_install_is_imported_once(home: Path) -> None:
    assert warm_app.warm_newest(home, lambda: None) is None  # nothing installed
    one = _fab(home, "one", 1000.0)
    forgotten: list[int] = []
    warm = warm_app.warm_newest(home, lambda: forgotten.append(1))
    assert warm is not None and warm.folder == one
    assert warm.app is sys.modules["one_mod"].app and forgotten == [1]
    assert warm_app.warm_newest(home, lambda: forgotten.append(1)) is warm
    assert forgotten == [1]  # the same FAB: nothing imported or dropped again
    two = _fab(home, "two", 2000.0)
    again = warm_app.warm_newest(home, lambda: None)
    assert again is not None and again.folder == two
    assert "one_mod" not in sys.modules and str(one) not in sys.path


def test_a_child_reuses_the_warm_app_only_for_its_own_fab(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    one = _fab(home, "one", 1000.0)
    two = _fab(home, "two", 500.0)  # older: one is the warm app
    warm = warm_app.warm_newest(home, lambda: None)
    assert warm is not None and warm.folder == one
    import flwr.common.config

    folders = {"one-hash": one, "two-hash": two}
    monkeypatch.setattr(
        flwr.common.config, "get_project_dir", lambda _i, _v, h: folders[h]
    )
    flower_loads: list[str] = []

    def flowers_loader(*_args: object, **_kwargs: object):
        return lambda _i, _v, fab_hash: flower_loads.append(fab_hash) or fab_hash

    dropped: list[int] = []
    load = warm_app.reuse_warm_app(flowers_loader, lambda: dropped.append(1))()
    assert load("id", "1.0", "one-hash") is warm.app
    assert flower_loads == [] and dropped == []
    assert load("id", "1.0", "two-hash") == "two-hash"  # another FAB: Flower loads it
    assert flower_loads == ["two-hash"] and dropped == [1]
    assert "one_mod" not in sys.modules  # after the warm app's modules were dropped


def test_an_app_that_fails_to_import_is_left_to_the_children(home: Path) -> None:
    folder = _fab(home, "one", 1000.0)
    (folder / "one_mod.py").write_text("import not_a_module_anywhere\n")
    assert warm_app.warm_newest(home, lambda: None) is None
    assert str(folder) not in sys.path
