"""`wasmbot serve`'s access line (bot/web.py ``JobAccessLogger``, written for a line per request)
says what aiohttp's own access logger says with its default format, and carries a job route's id."""

from __future__ import annotations

import logging
import re

from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from aiohttp.web_log import AccessLogger

from bot.web import JobAccessLogger

STAMP = re.compile(r" \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] ")


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def logged(kind: type[AccessLogger] | type[JobAccessLogger], request: web.BaseRequest,
           response: web.StreamResponse) -> logging.LogRecord:
    logger = logging.getLogger(f"test-access-{kind.__name__}")
    logger.setLevel(logging.INFO)
    lines = Lines()
    logger.addHandler(lines)
    access = kind(logger, AccessLogger.LOG_FORMAT)
    assert access.enabled
    access.log(request, response, 0.25)
    [record] = lines.records
    return record


def test_the_line_is_aiohttps_default_format() -> None:
    request = make_mocked_request("POST", "/github/webhook?x=1", headers={
        "User-Agent": "GitHub-Hookshot/0a1b2c", "Referer": "https://example.test/page"})
    response = web.Response(body=b'{"ok": true}', status=202)
    response._body_length = 12  # as written
    ours, theirs = logged(JobAccessLogger, request, response), logged(AccessLogger, request, response)
    assert STAMP.search(ours.getMessage()), ours.getMessage()
    assert STAMP.sub(" [] ", ours.getMessage()) == STAMP.sub(" [] ", theirs.getMessage())
    assert ours.getMessage().endswith('"POST /github/webhook?x=1 HTTP/1.1" 202 12 '
                                      '"https://example.test/page" "GitHub-Hookshot/0a1b2c"')
    assert getattr(ours, "job_id", None) is None


def test_headers_that_are_not_sent_are_a_dash_and_job_routes_name_their_job() -> None:
    request = make_mocked_request("GET", "/jobs/0123456789ab/log?sig=abc", headers={},
                                  match_info={"job": "0123456789ab"})
    response = web.Response(text="log")
    ours, theirs = logged(JobAccessLogger, request, response), logged(AccessLogger, request, response)
    assert STAMP.sub(" [] ", ours.getMessage()) == STAMP.sub(" [] ", theirs.getMessage())
    assert ours.getMessage().endswith('"-" "-"')
    assert ours.job_id == "0123456789ab"  # type: ignore[attr-defined]
