"""Process logging: one handler on the root logger, text or JSON lines, secrets redacted.

Every wasmbot process (server, worker, dev) calls ``configure`` once at start-up; Celery's,
kombu's and aiohttp's records propagate to the same handler.  The job a line is about comes
from a context variable that the pipeline sets while it runs a stage and the front ends set
while they submit or report a job, so library lines emitted meanwhile carry it too.

Redaction works on the finished text (message with its arguments, exception, stack), so a
secret is hidden however it got into a line.  Job log lines written to the store go through
the same ``redact``, since those reach Slack and pull request comments.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import sys
import threading
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Any
from urllib.parse import quote

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
FORMATS = ("text", "json")
MASK = "***"
# Shorter values are not masked: hiding every "abc" would mangle the logs and hide nothing.
MIN_SECRET = 4
# Variables that hold credentials, read whether or not the settings use them.
SECRET_ENV = ("SLACK_SIGNING_SECRET", "SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_CLIENT_SECRET",
              "GITHUB_TOKEN", "GITHUB_WEBHOOK_SECRET", "GITHUB_APP_PRIVATE_KEY")
# Token shapes masked even when wasmbot was not told about the token.  Each pattern starts with
# a lookahead for the first character its matches can have: re tries a pattern at every
# position, and rejecting most positions on one character makes a line's redaction (the access
# log redacts one per request) about four times faster, with the same matches.
_TOKENS = re.compile(
    r"(?=[xg-])(?:\bxox[abposr]-[A-Za-z0-9-]{6,}|\bxapp-[A-Za-z0-9-]{6,}"  # Slack bot, user, app-level tokens
    r"|\bgh[pousr]_[A-Za-z0-9]{16,}|\bgithub_pat_[A-Za-z0-9_]{20,}"  # GitHub tokens
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z))")
# An Authorization header's value, as a header line, a dict entry or a keyword argument.
_HEADER = re.compile(r"(?i)(?=[pa])\b((?:proxy-)?authorization['\"]?\s*[:=]\s*['\"]?"
                     r"(?:(?:bearer|basic|token)\s+)?)[^\s'\",;}]+")
# "Bearer X" / "Basic X" elsewhere; X must look like a credential (a digit or a symbol), not a word.
_SCHEME = re.compile(r"(?=B)\b(Bearer|Basic)\s+(?=[A-Za-z]*[0-9+/=._~-])[A-Za-z0-9._~+/=-]{8,}")
_URL_PASSWORD = re.compile(r"(://[^/\s:@]*:)[^/\s@]+@")
# Credentials in query strings, e.g. the signature of a job's log link in the access log.
_QUERY = re.compile(r"([?&](?:sig|signature|token|access_token|client_secret|code)=)[^&\s\"']+")

# The token shapes in the order they are masked: each with what replaces a match, and texts
# (in lower case) one of which every match contains.  A line holding none of them is not
# scanned for that shape (re steps through every position; most lines hold no shape at all,
# and the access log redacts one per request).  The answer is the same: a mask adds only
# asterisks, which no needle has, so masking never makes a needle that was not there.
_SHAPES: tuple[tuple[re.Pattern[str], Any, tuple[str, ...]], ...] = (
    (_TOKENS, MASK, ("xox", "xapp-", "gh", "github_pat_", "-----begin")),
    (_HEADER, lambda m: m.group(1) + MASK, ("authorization",)),
    (_SCHEME, lambda m: f"{m.group(1)} {MASK}", ("bearer", "basic")),
    (_QUERY, lambda m: m.group(1) + MASK, ("=",)),
    (_URL_PASSWORD, lambda m: m.group(1) + MASK + "@", ("://",)),
)

JOB_ID: ContextVar[str | None] = ContextVar("wasmbot_job_id", default=None)
STAGE: ContextVar[str | None] = ContextVar("wasmbot_stage", default=None)


class Redactor:
    """Masks known secret values and token shapes in text."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def add(self, values: Iterable[str | None]) -> None:
        with self._lock:
            for value in values:
                if value is None:
                    continue
                # A multi-line secret (a PEM key) also shows up line by line, and any secret
                # may show up quoted for JSON or a URL.
                for part in (value.strip(), *value.strip().splitlines()):
                    for form in (part.strip(), json.dumps(part.strip())[1:-1], quote(part.strip(), safe="")):
                        if len(form) >= MIN_SECRET:
                            self._secrets.add(form)
            longest_first = sorted(self._secrets, key=len, reverse=True)
            self._pattern = re.compile("|".join(map(re.escape, longest_first))) if longest_first else None

    def __call__(self, text: str) -> str:
        pattern = self._pattern
        if pattern is not None:
            text = pattern.sub(MASK, text)
        lowered = text.lower()
        for shape, replacement, needles in _SHAPES:
            for needle in needles:  # a loop, not any(): half the time of a generator per line
                if needle in lowered:
                    text = shape.sub(replacement, text)
                    break
        return text


redact = Redactor()


def add_secrets(values: Iterable[str | None]) -> None:
    """Mask these values (and the secret environment variables) in every line from now on."""
    redact.add([*values, *(os.environ.get(n) for n in SECRET_ENV),
                *(os.environ.get(f"WASMBOT_{n}") for n in SECRET_ENV)])


@contextlib.contextmanager
def job_context(job_id: str, stage: str | None = None) -> Iterator[None]:
    """Lines logged in this block (and in tasks and copied contexts started from it) are about ``job_id``."""
    job_token, stage_token = JOB_ID.set(job_id), STAGE.set(stage)
    try:
        yield
    finally:
        STAGE.reset(stage_token)
        JOB_ID.reset(job_token)


class JobFilter(logging.Filter):
    """Adds ``job_id`` and ``stage`` to each record, from ``extra=`` or else the context."""

    def filter(self, record: logging.LogRecord) -> bool:
        job_id = getattr(record, "job_id", None) or JOB_ID.get()
        stage = getattr(record, "stage", None) or (STAGE.get() if job_id == JOB_ID.get() else None)
        record.__dict__.update(job_id=job_id, stage=stage)
        return True


class RedactFilter(logging.Filter):
    """Renders the record's message, exception and stack once, masked, so no handler sees a secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # arguments that do not fit the format: keep both, masked
            message = f"{record.msg!r} % {record.args!r}"
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.exc_info = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_second: tuple[int, str] = (-1, "")  # the last second stamped, and its text


def _timestamp(record: logging.LogRecord) -> str:
    """RFC 3339 in UTC with milliseconds (the text up to the second is made once a second: the
    access log stamps a line per request)."""
    global _second
    fraction, whole = math.modf(record.created)  # rounded to the microsecond as datetime does
    second, micro = divmod(int(whole) * 1_000_000 + round(fraction * 1e6), 1_000_000)
    if second != _second[0]:
        _second = (second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{_second[1]}.{micro // 1000:03d}Z"


class TextFormatter(logging.Formatter):
    """``TIME LEVEL LOGGER [job ID STAGE] message`` for people reading a terminal.

    The formatters add only what wasmbot itself names (time, level, logger, job id): the
    handler's ``RedactFilter`` has masked the rest already, so a line is redacted once (the
    access log writes one per request)."""

    def format(self, record: logging.LogRecord) -> str:
        job = getattr(record, "job_id", None)
        stage = getattr(record, "stage", None)
        where = f" [job {job}{' ' + stage if stage else ''}]" if job else ""
        line = f"{_timestamp(record)} {record.levelname} {record.name}{where} {record.getMessage()}"
        if record.exc_text:
            line += "\n" + record.exc_text
        if record.stack_info:
            line += "\n" + record.stack_info
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, job_id, stage, exception."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"time": _timestamp(record), "level": record.levelname,
                               "logger": record.name, "message": record.getMessage()}
        for key in ("job_id", "stage"):
            if getattr(record, key, None):
                out[key] = getattr(record, key)
        if record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        return json.dumps(out)


_handler: logging.Handler | None = None


def make_handler(fmt: str, stream: IO[str]) -> logging.Handler:
    """A handler writing ``fmt`` lines to ``stream``, with the job and redaction filters."""
    handler = logging.StreamHandler(stream)
    handler.addFilter(JobFilter())
    handler.addFilter(RedactFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    return handler


def configure(level: str = "INFO", fmt: str = "text", stream: IO[str] | None = None) -> logging.Handler:
    """Send every record at ``level`` or above to ``stream`` (stderr) in ``fmt``; replaces earlier setup."""
    global _handler
    level, fmt = level.upper(), fmt.lower()
    if level not in LEVELS:
        raise ValueError(f"log level {level!r}: choose one of {', '.join(LEVELS)}")
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r}: choose text or json")
    handler = make_handler(fmt, stream or sys.stderr)
    # No formatter here prints a record's thread or process: not collecting them saves a
    # microsecond a record (the logging HOWTO's "Optimization"), and the access log makes one
    # a request.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
    _handler = handler
    return handler


def handler() -> logging.Handler | None:
    """The handler ``configure`` installed, if any."""
    return _handler
