"""Property-based tests of the two webhook endpoints: whatever arrives, signed or not, the
answer is a 2xx/3xx or a 4xx with a reason, never a 500.  The real aiohttp app (bot.web) is
served in-process on loopback with the Slack and GitHub stand-ins behind it, and requests go
over raw HTTP so that headers can be missing, duplicated or malformed."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import json
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from conftest import TESTDATA
from githubapi import TOKEN, WEBHOOK_SECRET, GitHubStandIn
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from loopback import LoopbackServer
from slackapi import BOT_TOKEN, SIGNING_SECRET, SlackStandIn

from bot.application import make_app
from bot.slack import blocks
from workers.config import Settings

SLACK_LIMIT = 2**20  # the default; the deepest bodies here are 600 kB
FUZZ = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


class WasmbotApp(LoopbackServer):
    """bot.web's application with both front ends, served in this process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def make_app(self) -> web.Application:
        return make_app(self.settings)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WasmbotApp]:
    slack, github = SlackStandIn(), GitHubStandIn()
    slack.start()
    github.start()
    data: Path = tmp_path_factory.mktemp("fuzz-data")
    server = WasmbotApp(Settings(
        data_dir=data, source_root=data / "sources", slack_signing_secret=SIGNING_SECRET,
        slack_bot_token=BOT_TOKEN, slack_api_url=slack.api_url, github_webhook_secret=WEBHOOK_SECRET,
        github_token=TOKEN, github_api_url=github.url, web_slack_max_body=SLACK_LIMIT))
    server.start()
    yield server
    server.stop()
    slack.stop()
    github.stop()


# -- bodies ----------------------------------------------------------------------------------

DEPTH = 100_000
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20)
SLACK_KEYS = ["command", "type", "user", "user_id", "actions", "event", "challenge", "channel", "team",
              "enterprise", "text", "trigger_id", "event_id", "response_url", "ssl_check", "payload"]
SLACK_TYPES = ["block_actions", "event_callback", "url_verification", "view_submission", "shortcut"]
slack_shaped = st.fixed_dictionaries(
    {"type": st.sampled_from(SLACK_TYPES) | json_values},
    optional={key: json_values for key in SLACK_KEYS if key != "type"})
deep = st.sampled_from([
    "[" * DEPTH + "]" * DEPTH,
    '{"a":' * DEPTH + "1" + "}" * DEPTH,
    '{"type": "block_actions", "actions": ' + "[" * DEPTH + "]" * DEPTH + "}",
])
json_text = st.one_of(json_values.map(json.dumps), slack_shaped.map(json.dumps), deep)
form_text = st.one_of(
    json_text.map(lambda text: urllib.parse.urlencode({"payload": text})),
    st.text(max_size=40).map(lambda text: urllib.parse.urlencode({"payload": text})),
    st.dictionaries(st.sampled_from(SLACK_KEYS), st.text(max_size=30), max_size=8).map(urllib.parse.urlencode),
    st.text(max_size=200),
)
COMMAND = json.loads((TESTDATA / "slack" / "slash_command.json").read_text())
BLOCK_ACTIONS = json.loads((TESTDATA / "slack" / "block_actions.json").read_text())
ACTION_IDS = [blocks.RETRY, blocks.CANCEL, blocks.APPROVE, blocks.DENY, blocks.DEPLOY]
# Real shapes with fuzzed values: these reach bolt and wasmbot's listeners.
commands = st.fixed_dictionaries({"text": st.text(max_size=60), "trigger_id": st.text(max_size=12)}).map(
    lambda fields: urllib.parse.urlencode(COMMAND | {"command": "/wasm", "response_url": "http://127.0.0.1:9/"}
                                          | fields))
clicks = st.fixed_dictionaries({"action_id": st.sampled_from(ACTION_IDS) | st.text(max_size=8),
                                "value": st.text(max_size=20)}).map(
    lambda action: urllib.parse.urlencode({"payload": json.dumps(
        BLOCK_ACTIONS | {"actions": [BLOCK_ACTIONS["actions"][0] | action],
                         "response_url": "http://127.0.0.1:9/"})}))
bodies = st.one_of(
    commands.map(str.encode),
    clicks.map(str.encode),
    json_text.map(str.encode),
    form_text.map(str.encode),
    st.binary(max_size=300),  # mostly not UTF-8
    st.text(max_size=100).map(lambda text: text.encode("utf-16")),
    st.just(b"x" * (SLACK_LIMIT + 1)),
)
content_types = st.sampled_from([
    "application/x-www-form-urlencoded", "application/json", "application/json; charset=utf-8",
    "application/json; charset=no-such-charset", "text/plain", "multipart/form-data; boundary=x",
    "APPLICATION/JSON", "", ";;;",
]) | st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30)
header_values = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40)


def post(server: WasmbotApp, path: str, body: bytes, headers: list[tuple[str, str]]) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.putrequest("POST", path)
        for name, value in headers:
            conn.putheader(name, value)
        conn.putheader("Content-Length", str(len(body)))
        # Answered and closed before the whole body was sent: read that answer.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            conn.endheaders(body)
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def assert_answered(status: int, text: bytes) -> None:
    event(f"{status} {text[:40]!r}")  # what was answered, in --hypothesis-show-statistics
    assert status < 500, (status, text[:300])
    if status >= 400:
        assert text.strip(), f"{status} without a reason"


# -- Slack -----------------------------------------------------------------------------------

def slack_signature(body: bytes, timestamp: str) -> str:
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(SIGNING_SECRET.encode(), base, hashlib.sha256).hexdigest()


@st.composite
def slack_requests(draw: Any) -> tuple[bytes, list[tuple[str, str]]]:
    body = draw(bodies)
    timestamp = draw(st.sampled_from([str(int(time.time()))]) | header_values)
    headers: list[tuple[str, str]] = []
    if draw(st.booleans()):
        headers.append(("Content-Type", draw(content_types)))
    if draw(st.booleans()):
        headers.append(("X-Slack-Request-Timestamp", timestamp))
    signature = draw(st.sampled_from([slack_signature(body, timestamp)]) | header_values)
    for _ in range(draw(st.integers(0, 2))):  # missing, once, or duplicated
        headers.append(("X-Slack-Signature", signature))
    return body, draw(st.permutations(headers))


@st.composite
def signed_slack_requests(draw: Any) -> tuple[bytes, list[tuple[str, str]]]:
    """Correctly signed and fresh: only the body and its content type are wrong, if anything."""
    body = draw(bodies)
    timestamp = str(int(time.time()))
    fitting = "application/json" if body.startswith((b"{", b"[")) else "application/x-www-form-urlencoded"
    content_type = fitting if draw(st.integers(0, 9)) < 8 else draw(content_types)
    return body, [("Content-Type", content_type),
                  ("X-Slack-Request-Timestamp", timestamp),
                  ("X-Slack-Signature", slack_signature(body, timestamp))]


@FUZZ
@given(request=slack_requests())
def test_slack_never_answers_500(app: WasmbotApp, request: tuple[bytes, list[tuple[str, str]]]) -> None:
    assert_answered(*post(app, "/slack/events", *request))


@FUZZ
@given(request=signed_slack_requests())
def test_signed_slack_bodies_never_get_500(app: WasmbotApp, request: tuple[bytes, list[tuple[str, str]]]) -> None:
    assert_answered(*post(app, "/slack/events", *request))


def test_slack_refuses_unsigned_bodies_before_parsing_them(app: WasmbotApp) -> None:
    """An unsigned body that would break a parser is refused for its signature, not its body."""
    for body in (b"[" * DEPTH, b"payload=%7B", b"\xff\xfe"):
        status, text = post(app, "/slack/events", body, [("Content-Type", "application/json")])
        assert (status, text) == (401, b"X-Slack-Signature and X-Slack-Request-Timestamp are required\n")
    signed = b'{"type": "block_actions", "user": "W1", "actions": [{"action_id": 1}]}'
    timestamp = str(int(time.time()))
    status, text = post(app, "/slack/events", signed, [
        ("Content-Type", "application/json"), ("X-Slack-Request-Timestamp", timestamp),
        ("X-Slack-Signature", slack_signature(signed, timestamp))])
    assert status == 400 and b"not shaped as Slack sends it" in text


# -- GitHub ----------------------------------------------------------------------------------

EVENTS = ["ping", "push", "pull_request", "issue_comment", "check_run", "release", "issues"]
GITHUB_ACTIONS = ["opened", "reopened", "synchronize", "created", "edited", "rerequested", "published"]
github_shaped = st.fixed_dictionaries(
    {}, optional={"action": st.sampled_from(GITHUB_ACTIONS) | json_values, "ref": json_values,
                  "after": json_values, "repository": json_values, "pull_request": json_values,
                  "comment": json_values, "release": json_values, "check_run": json_values,
                  "installation": json_values, "zen": json_values})
github_bodies = st.one_of(bodies, github_shaped.map(lambda data: json.dumps(data).encode()),
                          st.just(b'{"a":' * DEPTH + b"1" + b"}" * DEPTH))


@st.composite
def github_requests(draw: Any) -> tuple[bytes, list[tuple[str, str]]]:
    body = draw(github_bodies)
    headers: list[tuple[str, str]] = []
    for name, values in (("X-GitHub-Event", st.sampled_from(EVENTS) | header_values),
                         ("X-GitHub-Delivery", header_values),
                         ("Content-Type", content_types)):
        for _ in range(draw(st.sampled_from([1, 1, 1, 0, 2]))):
            headers.append((name, draw(values)))
    good = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    for _ in range(draw(st.sampled_from([1, 1, 1, 0, 2]))):
        headers.append(("X-Hub-Signature-256", draw(st.sampled_from([good]) | header_values)))
    return body, draw(st.permutations(headers))


@FUZZ
@given(request=github_requests())
def test_github_never_answers_500(app: WasmbotApp, request: tuple[bytes, list[tuple[str, str]]]) -> None:
    assert_answered(*post(app, "/github/webhook", *request))


@st.composite
def signed_github_requests(draw: Any) -> tuple[bytes, list[tuple[str, str]]]:
    """Correctly signed, with every header GitHub sends: only the event and body vary."""
    body = draw(github_bodies)
    signature = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return body, [("X-GitHub-Event", draw(st.sampled_from(EVENTS))), ("X-GitHub-Delivery", str(uuid.uuid4())),
                  ("Content-Type", "application/json"), ("X-Hub-Signature-256", signature)]


@FUZZ
@given(request=signed_github_requests())
def test_signed_github_bodies_never_get_500(app: WasmbotApp, request: tuple[bytes, list[tuple[str, str]]]) -> None:
    assert_answered(*post(app, "/github/webhook", *request))
