"""How wasmbot's PyGithub clients reach GitHub: the headers GitHub asks for, conditional reads,
and the installation's pacer (workers/github_pacing.py) around every request.

PyGithub sends neither ``Accept: application/vnd.github+json`` nor ``X-GitHub-Api-Version`` by
default, re-reads what it read a moment ago, and paces writes per client object only.  Its one
hook for the HTTP layer is ``Requester.injectConnectionClasses``, which this module uses (for the
whole process, on import of workers.github_client); a connection object is made per request, so
the real state, a ``requests`` session per host with CacheControl's adapter, lives in the
client's ``Transport``, which the client's retry policy carries (``PacedRetry.transport``).

Conditional requests: CacheControl keeps each GET answer with its ``ETag`` and asks again with
``If-None-Match``; GitHub answers 304, which does not count against the rate limit, and the
kept body is used.  Every read is revalidated (GitHub's ``max-age=60`` is not trusted), so
wasmbot never acts on an answer older than the request.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from datetime import datetime
from typing import Any

import requests
from cachecontrol import CacheControlAdapter
from cachecontrol.cache import BaseCache
from cachecontrol.heuristics import BaseHeuristic
from github.Requester import (
    HTTPRequestsConnectionClass,
    HTTPSRequestsConnectionClass,
    Requester,
    RequestsResponse,
)
from urllib3 import HTTPResponse
from urllib3.util.retry import Retry

from workers.github_pacing import Pacer

API_VERSION = "2022-11-28"
MEDIA_TYPE = "application/vnd.github+json"
CACHE_ENTRIES = 512  # answers kept per client for revalidation


def standard_headers(headers: dict[str, str]) -> dict[str, str]:
    """GitHub's recommended headers; a media type a call needs (octet-stream, raw, diff) stays,
    PyGithub's obsolete preview and v3 types give way to ``application/vnd.github+json``."""
    accept = headers.get("Accept", "")
    if not accept or accept == "*/*" or accept.endswith("-preview") or "-preview+" in accept \
            or accept.startswith("application/vnd.github.v3+"):
        accept = MEDIA_TYPE
    return headers | {"Accept": accept, "X-GitHub-Api-Version": API_VERSION}


class BoundedCache(BaseCache):
    """CacheControl's store, least recently used entries dropped past ``entries``."""

    def __init__(self, entries: int = CACHE_ENTRIES) -> None:
        self.entries = entries
        self._data: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def set(self, key: str, value: bytes, expires: int | datetime | None = None) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.entries:
                self._data.popitem(last=False)

    def delete(self, key: str) -> None:
        with self._lock:
            self._data.pop(key, None)

    def __len__(self) -> int:
        return len(self._data)


class Revalidate(BaseHeuristic):
    """Keep answers only to revalidate them: never serve one without asking GitHub."""

    def update_headers(self, response: HTTPResponse) -> dict[str, str]:
        return {"cache-control": "no-cache"}

    def warning(self, response: HTTPResponse) -> str | None:
        return None


class Transport:
    """What one client's requests share: its pacer, its answers kept for revalidation, and one
    session (connection pool) per host."""

    def __init__(self, pacer: Pacer | None = None, entries: int = CACHE_ENTRIES) -> None:
        self.pacer = pacer
        self.cache = BoundedCache(entries)
        self._sessions: dict[tuple[str, str, int], requests.Session] = {}
        self._lock = threading.Lock()

    def session(self, scheme: str, host: str, port: int, retry: int | Retry,
                pool_size: int) -> requests.Session:
        key = (scheme, host, port)
        with self._lock:
            found = self._sessions.get(key)
            if found is None:
                found = self._sessions[key] = requests.Session()
                found.auth = Requester.noopAuth  # no ~/.netrc: PyGithub's own setting
                found.mount(f"{scheme}://", CacheControlAdapter(
                    cache=self.cache, heuristic=Revalidate(), max_retries=retry,
                    pool_connections=pool_size, pool_maxsize=pool_size))
            return found

    def send(self, verb: str, url: str, headers: dict[str, str], data: Any, timeout: Any, verify: Any,
             session: requests.Session) -> requests.Response:
        """One request, in its turn; the answer tells the pacer of any rate limit."""
        with self.pacer.turn(verb) if self.pacer is not None else contextlib.nullcontext():
            answer = session.request(verb, url, headers=headers, data=data, timeout=timeout, verify=verify,
                                     allow_redirects=False)
        if self.pacer is not None:
            self.pacer.observe(answer.status_code, answer.headers)
        return answer


_UNPACED = Transport()  # for a retry policy that carries no transport (not made by github_client)


class _Connection:
    """PyGithub's connection interface (request, then getresponse) over a client's Transport."""

    protocol = "https"
    default_port = 443

    def __init__(self, host: str, port: int | None = None, strict: bool = False, timeout: int | None = None,
                 retry: int | Retry | None = None, pool_size: int | None = None, **kwargs: Any) -> None:
        self.host, self.port, self.timeout = host, port or self.default_port, timeout
        self.verify = kwargs.get("verify", True)
        self.retry = retry if retry is not None else requests.adapters.DEFAULT_RETRIES
        self.pool_size = pool_size or requests.adapters.DEFAULT_POOLSIZE
        self.transport: Transport = getattr(retry, "transport", None) or _UNPACED

    def request(self, verb: str, url: str, input: Any, headers: dict[str, str], stream: bool = False) -> None:
        self.verb, self.url, self.input, self.headers, self.stream = verb, url, input, headers, stream

    def getresponse(self) -> RequestsResponse:
        session = self.transport.session(self.protocol, self.host, self.port, self.retry, self.pool_size)
        answer = self.transport.send(self.verb, f"{self.protocol}://{self.host}:{self.port}{self.url}",
                                     standard_headers(self.headers), self.input, self.timeout, self.verify,
                                     session)
        return RequestsResponse(answer)

    def close(self) -> None:
        """The session is the transport's, kept for the next request."""


class HTTPSConnection(_Connection, HTTPSRequestsConnectionClass):
    protocol, default_port = "https", 443


class HTTPConnection(_Connection, HTTPRequestsConnectionClass):  # type: ignore[misc]
    protocol, default_port = "http", 80


def install() -> None:
    """Route every PyGithub request of this process through the classes above."""
    Requester.injectConnectionClasses(HTTPConnection, HTTPSConnection)
