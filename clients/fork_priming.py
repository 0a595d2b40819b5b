"""Per-process caches filled once in the warm executor, before it forks.

Some libraries the ClientApp uses build a cache on first use in each process:
scikit-learn's thread-pool controller (:mod:`threadpoolctl` scans every loaded
shared library, ~40 ms) and narwhals' plugin discovery (every installed
package's entry points, ~13 ms). A forked child inherits what its parent
built, so filling them before the fork takes that cost off every message.
Only caches of already loaded libraries are filled: nothing here starts a
thread pool.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["prime_caches"]


def _sklearn_threadpools() -> None:
    from sklearn.utils.parallel import _get_threadpool_controller

    _get_threadpool_controller()


def _narwhals_plugins() -> None:
    from narwhals.plugins import _discover_entrypoints

    list(_discover_entrypoints())


PRIMERS: tuple[Callable[[], None], ...] = (_sklearn_threadpools, _narwhals_plugins)


def prime_caches(primers: tuple[Callable[[], None], ...] = PRIMERS) -> list[str]:
    """Fill each cache of ``primers`` whose library is installed; the names of
    those filled (a library without that private helper is left alone)."""
    filled = []
    for primer in primers:
        try:
            primer()
        except (ImportError, AttributeError):
            continue
        filled.append(primer.__name__.lstrip("_"))
    return filled
