"""GitHub's rate-limit guidance for one installation's requests, within one process.

GitHub asks integrations to make writes (POST, PATCH, PUT, DELETE) one at a time with a pause
between them, to wait ``Retry-After`` seconds after a secondary rate limit (403 or 429), and to
send nothing while ``x-ratelimit-remaining`` is 0 until ``x-ratelimit-reset``.  A ``Pacer`` does
that for every request of one client (one installation): writes take turns, and a rate limit
seen by any request holds back all of them.  ``PacedRetry`` is PyGithub's retry policy with its
wait before a rate-limited retry done by the pacer, so concurrent requests wait with it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

from github.GithubRetry import GithubRetry

log = logging.getLogger(__name__)
READS = frozenset({"GET", "HEAD", "OPTIONS"})
RATE_LIMITED = (403, 429)


class Pacer:
    """One installation's turn-taking: writes one at a time, ``interval`` apart; nothing before
    the end of a rate limit."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._writes = threading.RLock()  # a write's token refresh is a write of the same thread
        self._state = threading.Condition()
        self._last_write = float("-inf")  # time.monotonic() when the last write ended
        self._resume = float("-inf")  # time.monotonic() before which nothing is sent

    def hold_off(self, seconds: float) -> None:
        """Send nothing for ``seconds`` (a longer hold already in place stays)."""
        with self._state:
            self._resume = max(self._resume, time.monotonic() + seconds)
            self._state.notify_all()
        log.warning("GitHub rate limit: requests of this installation wait %.1f s", seconds)

    def wait(self) -> None:
        """Return once no rate limit holds requests back (a hold may grow while waiting)."""
        with self._state:
            while (left := self._resume - time.monotonic()) > 0:
                self._state.wait(left)

    def wait_held(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for a rate limit to hold requests back; whether one does."""
        with self._state:
            return self._state.wait_for(lambda: self._resume > time.monotonic(), timeout)

    def observe(self, status: int, headers: Mapping[str, str]) -> None:
        """Hold off as an answer asks: Retry-After on a rate limit, or until x-ratelimit-reset at 0."""
        wait = limit_wait(status, headers)
        if wait is not None:
            self.hold_off(wait)

    @contextlib.contextmanager
    def turn(self, verb: str) -> Iterator[None]:
        """Around one request: reads only wait out a rate limit; writes also take turns."""
        if verb.upper() in READS:
            self.wait()
            yield
            return
        with self._writes:
            self.wait()
            pause = self._last_write + self.interval - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            try:
                yield
            finally:
                self._last_write = time.monotonic()


def limit_wait(status: int, headers: Mapping[str, str]) -> float | None:
    """Seconds an answer says to wait before the next request, or None if it says nothing."""
    lower = {k.lower(): v for k, v in headers.items()}
    if status in RATE_LIMITED and "retry-after" in lower:
        with contextlib.suppress(ValueError):
            return max(0.0, float(lower["retry-after"]))
    if lower.get("x-ratelimit-remaining") == "0" and "x-ratelimit-reset" in lower:
        with contextlib.suppress(ValueError):
            return max(0.0, float(lower["x-ratelimit-reset"]) - time.time())
    return None


class PacedRetry(GithubRetry):
    """GithubRetry (5xx, and 403/429 rate limits) whose wait before a rate-limited retry is the pacer's.

    PyGithub hands its connection classes nothing of the client but this retry policy, so it also
    carries the client's ``transport`` (workers/github_http.py) to them.
    """

    def __init__(self, transport: Any = None, **kwargs: Any) -> None:
        self.transport = transport
        super().__init__(**kwargs)

    def new(self, **kw: Any) -> PacedRetry:
        kw["transport"] = self.transport
        return super().new(**kw)

    def sleep(self, response: Any = None) -> None:
        pacer: Pacer | None = getattr(self.transport, "pacer", None)
        if pacer is None or response is None or response.status not in RATE_LIMITED:
            super().sleep(response)  # 5xx and connection errors: exponential backoff
            return
        # GitHub: Retry-After, else wait for x-ratelimit-reset, else (secondary) a minute or more;
        # GithubRetry's backoff already holds the latter two for 403 (secondary_rate_wait).
        told = limit_wait(response.status, response.headers)
        pacer.hold_off(max(told or 0.0, self.get_backoff_time(), 0.0 if told is not None else
                           self.secondary_rate_wait))
        pacer.wait()
