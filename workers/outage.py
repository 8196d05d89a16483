"""Riding out a job store that is briefly unreachable (a Redis restart, a failover).

A stage that has done its work should not lose it because the store did not answer for a few
seconds: its writes are retried with backoff for up to ``OUTAGE_SECONDS``.  Past that the error
is raised as before, and the stage is recovered like any lost one (its lease lapses).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar

import redis

T = TypeVar("T")
OUTAGE_SECONDS = 120.0
log = logging.getLogger(__name__)


def transient(exc: BaseException) -> bool:
    """An error that waiting can cure: Redis unreachable, or SQLite busy past its own timeout."""
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        return True
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)


def retrying(write: Callable[[], T], what: str, seconds: float = OUTAGE_SECONDS) -> T:
    """``write()``, tried again on a transient store error until ``seconds`` have passed."""
    deadline, pause = time.monotonic() + seconds, 0.2
    while True:
        try:
            return write()
        except Exception as exc:
            if not transient(exc) or time.monotonic() + pause > deadline:
                raise
            log.warning("the job store did not take %s (%s: %s); trying again in %.1f s",
                        what, type(exc).__name__, exc, pause)
            time.sleep(pause)  # backoff between attempts at an unreachable server
            pause = min(pause * 2, 5.0)
