"""Leases on running stages: who runs a stage, and until when that claim holds.

A worker renews its lease while the stage runs.  A lease that has expired, or whose owner is a
process on this host that no longer exists, belongs to a lost worker.
"""

from __future__ import annotations

import contextvars
import logging
import os
import socket
import threading
from collections.abc import Callable, Collection
from pathlib import Path

HOST = socket.gethostname()
RETRY_EVERY = 1.0  # seconds between renewals while the store does not answer
log = logging.getLogger(__name__)


def owner_id() -> str:
    return f"{HOST}:{os.getpid()}"


def _local_process_gone(owner: str) -> bool | None:
    """Whether ``owner``'s process is gone, if it is on this host (None: another host's)."""
    host, _, pid = owner.rpartition(":")
    if host != HOST or not pid.isdigit():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _zombie(int(pid))


def _zombie(pid: int) -> bool:
    """A killed process nobody has reaped yet still answers signal 0, but it is dead.  (A killed
    worker's pool process is reparented to init, which may reap it late.)"""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False  # no /proc (not Linux), or it was reaped meanwhile: signal 0 said it lived
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def path_tag() -> str:
    """``owner_id()`` as a file name may hold it (podman's ``--volume`` splits at colons)."""
    return owner_id().replace(":", "@")


def from_path_tag(tag: str) -> str:
    host, _, pid = tag.rpartition("@")
    return f"{host}:{pid}"


def alive(owner: str | None, expires: float | None, now: float) -> bool:
    if owner is None or expires is None or expires <= now:
        return False
    return not _local_process_gone(owner)


def gone(owner: str, live_workers: Collection[str]) -> bool:
    """Whether what ``owner`` made may be removed: its process on this host has exited, or it is
    not an owner id at all, or its host has no live worker (``live_workers``: the store's)."""
    local = _local_process_gone(owner)
    if local is not None:
        return local
    host, _, pid = owner.rpartition(":")
    return not host or not pid.isdigit() or host not in {w.rpartition(":")[0] for w in live_workers}


class Renewer:
    """Calls ``renew`` every ``interval`` seconds until stopped (a context manager).

    A renewal that fails (the store is down) is tried again every second until one goes
    through: the lease set before the outage still holds for ``lease_ttl``, so an outage
    shorter than about two thirds of it costs nothing.  A thread that died on the first
    connection error would let the lease lapse while the stage still runs.
    """

    def __init__(self, renew: Callable[[], None], interval: float) -> None:
        self._renew = renew
        self._interval = interval
        self._stop = threading.Event()
        # In the caller's context, so that its log lines name the caller's job.
        self._thread = threading.Thread(target=contextvars.copy_context().run, args=(self._loop,),
                                        name="wasmbot-lease", daemon=True)

    def _loop(self) -> None:
        wait, failing = self._interval, False
        while not self._stop.wait(wait):
            try:
                self._renew()
            except Exception as exc:  # the store is unreachable: keep trying, never give up
                if not failing:
                    log.warning("lease renewal failed (%s: %s); retrying every %.0f s",
                                type(exc).__name__, exc, RETRY_EVERY)
                failing, wait = True, min(RETRY_EVERY, self._interval)
                continue
            if failing:
                log.info("lease renewed again after a store outage")
            failing, wait = False, self._interval

    def __enter__(self) -> Renewer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
