"""A local stand-in for Slack: the Web API methods wasmbot calls, response URLs, and request signing.

It speaks Slack's wire format (``POST /api/METHOD`` with a form or JSON body and a bearer
token; ``{"ok": …}`` answers; HTTP 429 ``ratelimited`` with ``Retry-After``), so the real
``slack_sdk`` client talks to it through ``base_url``.  Every call is recorded; tests wait
for calls on a condition variable, never by sleeping.
"""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import blockkit
import slackcontract
from aiohttp import web
from apicontract import contract_middleware
from loopback import LoopbackServer
from slack_sdk.signature import SignatureVerifier

BOT_TOKEN = "xoxb-wasmbot-test"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
PAYLOADS = Path(__file__).parent / "testdata" / "slack"


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    at: float = field(default_factory=time.monotonic)
    token: str = ""


class SlackStandIn(LoopbackServer):
    def __init__(self, token: str = BOT_TOKEN) -> None:
        self.tokens = {token}  # bot tokens it accepts; an OAuth install adds its own
        self.client_id, self.client_secret = "111.222", "oauth-client-secret"
        self.calls: list[Call] = []
        self.responses: list[tuple[str, dict[str, Any]]] = []  # posts to response URLs
        self.messages: dict[tuple[str, str], dict[str, Any]] = {}
        self.groups: dict[str, list[str]] = {}
        self.ratelimit: dict[str, int] = {}  # method -> how many calls to refuse with 429
        self.retry_after = 1
        self.app_token = "xapp-1-wasmbot-test"
        self.socket_acks: list[dict[str, Any]] = []
        self._sockets: list[web.WebSocketResponse] = []
        self._changed = threading.Condition()
        self._seq = 0

    # -- lifecycle -------------------------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[contract_middleware("slack", slackcontract.check_request)])
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/api/{method}", self._api)
        app.router.add_get("/socket", self._socket)
        app.router.add_post("/response/{rest:.*}", self._response)
        return app

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    def response_url(self, name: str) -> str:
        return f"{self.url}/response/{name}"

    # -- what tests look at ----------------------------------------------------------------

    def called(self, method: str) -> list[Call]:
        with self._changed:
            return [c for c in self.calls if c.method == method]

    def recent_calls(self) -> str:
        return str([c.method for c in self.calls])

    # -- the API ---------------------------------------------------------------------------

    async def _args(self, request: web.Request) -> dict[str, Any]:
        body = await request.read()
        if request.method == "GET":
            return dict(request.query)
        if request.content_type == "application/json":
            return json.loads(body or b"{}")
        parsed = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode()).items()}
        for key in ("blocks", "attachments"):
            if isinstance(parsed.get(key), str):
                parsed[key] = json.loads(parsed[key])
        return parsed

    def _record(self, method: str, args: dict[str, Any]) -> None:
        with self._changed:
            self.calls.append(Call(method, args))
            self._changed.notify_all()

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args = await self._args(request)
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if method == "oauth.v2.access":  # client credentials as HTTP Basic auth, or form fields
            basic = request.headers.get("Authorization", "").removeprefix("Basic ")
            given = tuple(base64.b64decode(basic).decode().split(":", 1)) if basic else \
                (args.get("client_id"), args.get("client_secret"))
            if given != (self.client_id, self.client_secret):
                return web.json_response({"ok": False, "error": "invalid_client_id"})
        elif token not in ({self.app_token} if method == "apps.connections.open" else self.tokens):
            return web.json_response({"ok": False, "error": "invalid_auth"})
        if self.ratelimit.get(method, 0) > 0:
            self.ratelimit[method] -= 1
            self._record(method + ":ratelimited", args)
            return web.json_response({"ok": False, "error": "ratelimited"}, status=429,
                                     headers={"Retry-After": str(self.retry_after)})
        invalid = blockkit.problems(method, args)  # every message is checked against Slack's rules
        if invalid:
            self._record(method + ":invalid_blocks", args | {"errors": invalid})
            return web.json_response({"ok": False, "error": "invalid_blocks", "errors": invalid})
        answer = self._answer(method, args)
        with self._changed:
            self.calls.append(Call(method, args, token=token))
            self._changed.notify_all()
        return web.json_response(answer)

    def _answer(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        if method == "auth.test":
            return {"ok": True, "url": "https://wasmbot-test.slack.com/", "team": "Test", "user": "wasmbot",
                    "team_id": "T111", "user_id": "W0BOT", "bot_id": "B0BOT", "is_enterprise_install": False}
        if method == "chat.postMessage":
            self._seq += 1
            channel = args["channel"]
            channel = "C0ANNOUNCE" if channel.startswith("#") else channel
            ts = f"{int(time.time())}.{self._seq:06d}"
            self.messages[(channel, ts)] = args
            return {"ok": True, "channel": channel, "ts": ts, "message": {"text": args.get("text", "")}}
        if method == "chat.update":
            key = (args["channel"], args["ts"])
            if key not in self.messages:
                return {"ok": False, "error": "message_not_found"}
            self.messages[key] = args
            return {"ok": True, "channel": args["channel"], "ts": args["ts"], "text": args.get("text", "")}
        if method == "oauth.v2.access":
            token = f"xoxb-installed-{args['code']}"
            self.tokens.add(token)
            return {"ok": True, "access_token": token, "token_type": "bot", "scope": "commands,chat:write",
                    "bot_user_id": "U0BOT", "app_id": "A111", "team": {"id": "T111", "name": "Test"},
                    "enterprise": {"id": "E111", "name": "Org Name"}, "is_enterprise_install": False,
                    "authed_user": {"id": "W111"}}
        if method == "apps.connections.open":
            return {"ok": True, "url": f"ws://127.0.0.1:{self.port}/socket"}
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": f"{int(time.time())}.000001"}
        if method == "usergroups.users.list":
            group = args.get("usergroup", "")
            if group not in self.groups:
                return {"ok": False, "error": "no_such_subteam"}
            return {"ok": True, "users": self.groups[group]}
        return {"ok": False, "error": "unknown_method"}

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        """Socket Mode: say hello, then relay envelopes; record the app's acknowledgements."""
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_json({"type": "hello", "num_connections": 1,
                            "connection_info": {"app_id": "A111"}, "debug_info": {"host": "stand-in"}})
        with self._changed:
            self._sockets.append(ws)
            self._changed.notify_all()
        async for message in ws:
            if message.type.name == "TEXT":
                with self._changed:
                    self.socket_acks.append(json.loads(message.data))
                    self._changed.notify_all()
        return ws

    def send_envelope(self, kind: str, payload: dict[str, Any]) -> str:
        """Deliver ``payload`` over the open Socket Mode connection; return its envelope id."""
        envelope_id = f"env-{time.monotonic_ns()}"
        envelope = {"envelope_id": envelope_id, "type": kind, "payload": payload,
                    "accepts_response_payload": kind == "slash_commands"}
        ws = self.wait_for(lambda api: api._sockets and api._sockets[-1], timeout=30)
        asyncio.run_coroutine_threadsafe(ws.send_json(envelope), self.loop).result(10)
        return envelope_id

    async def _response(self, request: web.Request) -> web.Response:
        args = await self._args(request)
        invalid = blockkit.problems("response_url", args)
        if invalid:
            self._record("response_url:invalid_blocks", args | {"errors": invalid})
            return web.Response(status=400, text="invalid_blocks\n" + "\n".join(invalid))
        with self._changed:
            self.responses.append((request.match_info["rest"], args))
            self._changed.notify_all()
        return web.Response(text="ok")


def signed_headers(body: str, content_type: str, *, secret: str = SIGNING_SECRET,
                   timestamp: int | None = None) -> dict[str, str]:
    """The headers Slack sends: ``X-Slack-Signature`` = v0 HMAC of ``v0:TIMESTAMP:BODY``."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
    return {"Content-Type": content_type, "X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature}


def slash_command(text: str, response_url: str, *, user: str = "W111", trigger: str | None = None) -> str:
    """The form body Slack posts for ``/wasm TEXT``: the vendored payload with these fields."""
    fields = json.loads((PAYLOADS / "slash_command.json").read_text())
    fields.update(command="/wasm", text=text, user_id=user, trigger_id=trigger or uuid.uuid4().hex,
                  response_url=response_url)
    return urllib.parse.urlencode(fields)
