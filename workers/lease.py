"""Leases on running stages: who runs a stage, and until when that claim holds.

A worker renews its lease while the stage runs.  A lease that has expired, or whose owner is a
process on this host that no longer exists, belongs to a lost worker.
"""

from __future__ import annotations

import contextvars
import os
import socket
import threading
from collections.abc import Callable

HOST = socket.gethostname()


def owner_id() -> str:
    return f"{HOST}:{os.getpid()}"


def alive(owner: str | None, expires: float | None, now: float) -> bool:
    if owner is None or expires is None or expires <= now:
        return False
    host, _, pid = owner.rpartition(":")
    if host == HOST and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
    return True


class Renewer:
    """Calls ``renew`` every ``interval`` seconds until stopped (a context manager)."""

    def __init__(self, renew: Callable[[], None], interval: float) -> None:
        self._renew = renew
        self._interval = interval
        self._stop = threading.Event()
        # In the caller's context, so that its log lines name the caller's job.
        self._thread = threading.Thread(target=contextvars.copy_context().run, args=(self._loop,),
                                        name="wasmbot-lease", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._renew()

    def __enter__(self) -> Renewer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
