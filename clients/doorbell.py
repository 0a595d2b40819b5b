"""A same-host wake-up call from a SuperNode to its warm executor.

The executor learns of a new ClientApp task only by polling the SuperNode's
Runtime API, so a task can wait up to one poll interval before its process
starts. When both run on one host, the SuperNode launcher
(:mod:`clients.supernode`) rings this doorbell as soon as it stores a message
for a task, and the executor (:mod:`clients.warm_exec`), which waits on it
between polls, polls at once. The doorbell is a Unix datagram socket named
after the Runtime API port; a ring nobody listens for is dropped, and polling
stays the fallback (an executor on another host, a lost datagram).
"""

from __future__ import annotations

import os
import select
import socket
import tempfile
from pathlib import Path

__all__ = ["Doorbell", "doorbell_path", "ring"]


def doorbell_path(port: int, folder: Path | None = None) -> Path:
    """The doorbell's socket for the Runtime API on ``port`` (``folder``:
    default a per-user folder in the system's temporary directory)."""
    base = folder or Path(tempfile.gettempdir()) / f"otm-flower-{os.getuid()}"
    return base / f"doorbell-{int(port)}"


def ring(path: Path) -> bool:
    """Ring the doorbell at ``path``; ``False`` when nobody listens there."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.sendto(b"!", str(path))
    except OSError:
        return False
    return True


class Doorbell:
    """The listening end: :meth:`wait` returns early when the doorbell rings.

    It has the ``wait``/``clear`` pair of :class:`threading.Event`, so a
    :class:`clients.backoff.Backoff` can wait on it.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.unlink(missing_ok=True)  # a socket left by an executor that died
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)

    def wait(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds for a ring; whether one came."""
        ready, _, _ = select.select([self.sock], [], [], max(timeout, 0.0))
        return bool(ready)

    def clear(self) -> None:
        """Forget the rings so far."""
        while True:
            try:
                self.sock.recv(64)
            except (BlockingIOError, InterruptedError):
                return

    def close(self) -> None:
        """Stop listening and remove the socket."""
        self.sock.close()
        self.path.unlink(missing_ok=True)
