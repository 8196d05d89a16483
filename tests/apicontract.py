"""The contract ledger: every call a stand-in receives is checked against the published API spec.

The stand-ins (tests/githubapi.py, tests/slackapi.py) run ``contract_middleware`` in front of
their handlers; it asks the API's checker (tests/githubcontract.py, tests/slackcontract.py) about
each request and records what was checked and any violation here, module-wide, because many
tests make their own stand-ins.  tests/conftest.py fails the test during which a violation was
recorded and prints the counts at the end of the session.  Webhook bodies the tests send are
checked the same way (tests/webhookcontract.py, through ``githubapi.webhook_headers``).

The specs come from npm, pinned in deploy/tools/api-specs.txt and fetched by
deploy/tools/api-specs.sh (run by deploy/setup.sh) into ~/.cache/wasmbot/specs/, outside the clone;
Slack's is vendored in tests/testdata/slack/schemas/.  A missing spec raises ``SpecMissing``:
the check never silently turns itself off.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
PINS = ROOT / "deploy" / "tools" / "api-specs.txt"

violations: list[str] = []
checked: Counter[str] = Counter()  # spec name -> calls checked against it
_lock = threading.Lock()


class SpecMissing(RuntimeError):
    """A pinned spec is not in the cache: the contract check cannot run, so nothing may pass."""


def pinned(package: str) -> tuple[str, Path]:
    """The pinned version of npm ``package`` and the cached ``package/`` directory it unpacks to."""
    for line in PINS.read_text().splitlines():
        fields = line.split()
        if fields and fields[0] == package:
            version = fields[1]
            cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
            directory = cache / "wasmbot" / "specs" / f"{package.lstrip('@').replace('/', '-')}-{version}"
            if not (directory / "package" / "package.json").is_file():
                raise SpecMissing(f"{package}@{version} is not in {directory}: run `bash deploy/tools/api-specs.sh` "
                                  "(deploy/setup.sh does); the API contract tests need it")
            return version, directory / "package"
    raise SpecMissing(f"{package} is not pinned in {PINS}")


def record(spec: str, call: str, problems: list[str]) -> None:
    """Count one call checked against ``spec``; keep each problem, prefixed with the call."""
    with _lock:
        checked[spec] += 1
        violations.extend(f"{call}: {problem}" for problem in problems)


Checker = Callable[[web.Request, bytes], Awaitable[tuple[str, list[str]] | None]]


def contract_middleware(spec: str, check: Checker) -> Any:
    """An aiohttp middleware that checks each request with ``check`` before the answer is sent.

    ``check`` returns None for a request that is explicitly not part of the API (it says why),
    else the call's description and its problems.
    """
    @web.middleware
    async def middleware(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await handler(request)
            return response
        finally:  # after the handler, which may read the body in its own way; read() keeps it
            try:
                body = await request.read() if request.body_exists else b""
            except ConnectionResetError:  # the client died mid-request: no call was made to check
                return
            try:
                result = await check(request, body)
            except Exception as exc:  # e.g. SpecMissing: an unchecked call must not pass
                result = f"{spec} {request.method} {request.path_qs}", [f"not checked: {type(exc).__name__}: {exc}"]
            if result is not None:
                record(spec, *result)
    return middleware


def describe(value: Any, limit: int = 120) -> str:
    """A short repr of an offending value for a violation message."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"
