"""``KEY=VALUE`` command-line items (``--set``, ``--fast-option``) as a mapping."""

from __future__ import annotations

from collections.abc import Iterable

from otm_flower.config import ConfigError


def split_key_value(item: str, option: str = "--set") -> tuple[str, str]:
    """``"KEY=VALUE"`` as ``(KEY, VALUE)``, both stripped; split at the first ``=``.

    Raises
    ------
    ConfigError
        If ``item`` holds no ``=``; the message names ``option``.
    """
    key, sep, value = item.partition("=")
    if not sep:
        raise ConfigError(f"{option} expects KEY=VALUE, got {item!r}")
    return key.strip(), value.strip()


def parse_set(items: Iterable[str], option: str = "--set") -> dict[str, str]:
    """``KEY=VALUE`` items as ``{KEY: VALUE}`` (later items win).

    Raises
    ------
    ConfigError
        If an item holds no ``=``.
    """
    return dict(split_key_value(item, option) for item in items)
