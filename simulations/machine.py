"""Where and when a figure was measured: the date, the platform and the CPU count."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime


def machine_stamp(now: datetime | None = None) -> str:
    """``2026-12-01 22:40 UTC on Linux-6.1-x86_64 (2 CPUs)``."""
    now = now or datetime.now(UTC)
    return (
        f"{now.astimezone(UTC):%Y-%m-%d %H:%M} UTC on {platform.platform()} "
        f"({os.cpu_count()} CPUs)"
    )
