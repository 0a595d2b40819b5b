"""The ClientApp of the newest installed FAB, imported once by the warm executor.

Flower loads the ClientApp in every ``flwr-clientapp`` process: it imports the
app's modules from the installed FAB (:func:`flwr.supercore.object_ref.load_app`),
a cost paid again for every message. The warm executor
(:mod:`clients.warm_exec`) calls :func:`warm_newest` before it forks: that
imports the app of the FAB its children installed last (each install is recorded
by :func:`clients.warm_exec.install_once`), so a child whose task is for that FAB
finds its app loaded (:func:`reuse_warm_app`). A child whose task is for another
FAB drops the warm app's modules and loads its own, as Flower does.
"""

from __future__ import annotations

import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from logging import INFO, WARNING
from pathlib import Path
from typing import Any

__all__ = ["WarmApp", "forget_modules_under", "reuse_warm_app", "warm_newest"]


@dataclass(frozen=True)
class WarmApp:
    """A ClientApp imported from an installed FAB's folder."""

    folder: Path
    app: Any


_warm: WarmApp | None = None


def newest_install(home: Path) -> Path | None:
    """The folder of the newest FAB recorded under ``<home>/apps`` that still
    exists (``None``: none)."""
    markers = list((home / "apps").glob(".installed-*"))
    for marker in sorted(markers, key=_mtime, reverse=True):
        try:
            folder = Path(marker.read_text())
        except OSError:
            continue
        if (folder / "pyproject.toml").is_file():
            return folder.resolve()
    return None


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def clientapp_reference(folder: Path) -> str:
    """The ``module:attribute`` of the app's ClientApp (its pyproject.toml)."""
    config = tomllib.loads((folder / "pyproject.toml").read_text())
    return config["tool"]["flwr"]["app"]["components"]["clientapp"]


def forget_modules_under(folder: Path) -> list[str]:
    """Drop every module imported from ``folder`` from ``sys.modules`` (and the
    folder from ``sys.path``); the names dropped."""
    names = [name for name, module in sys.modules.items() if _is_under(module, folder)]
    for name in names:
        del sys.modules[name]
    while str(folder) in sys.path:
        sys.path.remove(str(folder))
    return names


def _is_under(module: Any, folder: Path) -> bool:
    file = getattr(module, "__file__", None)
    if not isinstance(file, str) or not file:
        return False
    return Path(file).resolve().is_relative_to(folder)


def warm_newest(home: Path, forget_own: Callable[[], Any]) -> WarmApp | None:
    """Import the ClientApp of the newest installed FAB, unless it is the warm one.

    ``forget_own`` drops the executor's own copy of the app's packages first,
    as a child does before Flower loads the app. An app that fails to import is
    left to the children (Flower reports the error there).
    """
    global _warm
    from flwr.supercore import log
    from flwr.supercore.object_ref import load_app

    folder = newest_install(home)
    if folder is None or (_warm is not None and _warm.folder == folder):
        return _warm
    if _warm is not None:
        forget_modules_under(_warm.folder)
    forget_own()
    try:
        _warm = WarmApp(
            folder, load_app(clientapp_reference(folder), ImportError, folder)
        )
        log(INFO, "warm executor: imported the ClientApp of %s", folder)
    except Exception as err:  # noqa: BLE001 - any import error: children report it
        log(
            WARNING,
            "warm executor: could not preload the ClientApp of %s: %s",
            folder,
            err,
        )
        forget_modules_under(folder)
        _warm = None
    return _warm


def reuse_warm_app(
    get_load_fn: Callable[..., Callable[..., Any]], forget_own: Callable[[], Any]
) -> Callable[..., Any]:
    """Flower's ``get_load_client_app_fn`` whose loader returns the warm app when
    the task's FAB is the warm one, and otherwise drops the warm app's modules
    and the executor's own packages (``forget_own``) and loads the task's app
    as Flower does."""
    from flwr.common.config import get_project_dir

    def get_load(*args: Any, **kwargs: Any) -> Callable[[str, str, str], Any]:
        load = get_load_fn(*args, **kwargs)

        def load_client_app(fab_id: str, fab_version: str, fab_hash: str) -> Any:
            folder = Path(get_project_dir(fab_id, fab_version, fab_hash)).resolve()
            if _warm is not None and _warm.folder == folder:
                return _warm.app
            if _warm is not None:
                forget_modules_under(_warm.folder)
            forget_own()
            return load(fab_id, fab_version, fab_hash)

        return load_client_app

    return get_load
