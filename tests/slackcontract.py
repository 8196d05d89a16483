"""Check a Slack Web API call against Slack's published spec, with Slack's documented deviations.

The spec is slackapi/slack-api-specs ``web-api/slack_web_openapi_v2_without_examples.json``
(Swagger 2.0), vendored verbatim in tests/testdata/slack/schemas/ (source in tests/testdata/README.md).
A call is ``/api/METHOD`` with arguments in the query string, a form body or a JSON body: the
method must be in the spec, every required argument present, no argument unknown, each of its
declared type (form and query values are text, read as the type declared), and a JSON body only
where the method ``consumes`` JSON.  Parameter schemas are validated with jsonschema.

The spec's README warns that it "doesn't always tell the whole truth".  Where Slack's own
documentation says otherwise, ``DEVIATIONS`` lists it, one entry per difference with the reason
and the documentation page; nothing else is let through.

Not Web API calls, exempt in ``check_request``: posts to a ``response_url`` (``/response/…``:
Slack's "Handling user interaction" page, answers to slash commands and actions) and the Socket
Mode WebSocket (``/socket``: the URL that ``apps.connections.open`` hands out).
"""

from __future__ import annotations

import json
import re
import urllib.parse
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from aiohttp import web
from apicontract import describe
from githubcontract import escape

SPEC = Path(__file__).resolve().parent / "testdata" / "slack" / "schemas" / "slack_web_openapi_v2_without_examples.json"
SPEC_NAME = "slack-api-specs bc08db4 web-api/slack_web_openapi_v2_without_examples.json"
WEB_API_DOCS = "https://docs.slack.dev/apis/web-api"

# Where the real Web API differs from the spec.  Each: what is let through, why, and where Slack says so.
DEVIATIONS: dict[str, str] = {
    # 1. The spec gives each method one HTTP verb; every method takes GET with a query string or
    #    POST with a form (or, where the method consumes JSON, a JSON) body, or a mix.
    "any-verb": f"{WEB_API_DOCS} ('Using the Slack Web API', Basic overview: pass arguments as GET "
                "querystring parameters, POST parameters, or a mix)",
    # 2. The spec declares ``token`` as a header/query/form parameter; Slack prefers (and for JSON
    #    bodies requires) the token in ``Authorization: Bearer``, which slack_sdk always sends.
    "bearer-token": f"{WEB_API_DOCS} ('Authentication') and https://docs.slack.dev/changelog/"
                    "2017-10-keeping-up-with-the-jsons (token in the Authorization header)",
    # 3. The spec types ``blocks`` and ``attachments`` as form strings (JSON text); in a JSON body
    #    they are JSON arrays, as slack_sdk sends them for chat.* methods.
    "json-arrays": "https://docs.slack.dev/reference/methods/chat.postMessage (blocks: 'A JSON-based array "
                   f"of structured blocks') and {WEB_API_DOCS} ('JSON-encoded bodies')",
    # 4. ``team_id`` on any method: slack_sdk sends it with every call of a client made for an
    #    org-wide installation (bolt sets it from the request's team); Slack accepts it and ignores
    #    it where a workspace token makes it needless.  Still checked as a string.
    "team_id": "https://api.slack.com/enterprise/apps/changes-apis ('Organization-wide apps: changes to APIs', "
               "team_id: 'a shortcut is to always pass team_id ... the extra parameter will be accepted')",
    # 5. Methods newer than the spec (2021-09): described here from their reference page.
    "apps.connections.open": "https://docs.slack.dev/reference/methods/apps.connections.open (Socket Mode: "
                             "an app-level token in the Authorization header, no other argument)",
}
JSON_ARRAYS = ("blocks", "attachments")
ANY_METHOD_ARGUMENTS = {"team_id": {"name": "team_id", "in": "formData", "type": "string"}}  # deviation 4
NEWER_METHODS: dict[str, dict[str, Any]] = {  # deviation 5, in the spec's own shape
    "apps.connections.open": {"post": {"consumes": ["application/x-www-form-urlencoded"], "parameters": [
        {"name": "token", "in": "header", "type": "string", "required": True,
         "description": "An app-level token (xapp-…)"}]}},
}
SCHEMA_KEYS = ("type", "format", "enum", "items", "minimum", "maximum", "minLength", "maxLength", "pattern")


@cache
def spec() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(SPEC.read_text())
    return document


def operation(method: str) -> tuple[str, dict[str, Any]] | None:
    """The method's operation and its JSON pointer (in the spec, or among ``NEWER_METHODS``)."""
    item = spec()["paths"].get(f"/{method}") or NEWER_METHODS.get(method)
    if item is None:
        return None
    verb, op = next(iter(item.items()))  # each method has one operation (see deviation 1)
    where = "#" if f"/{method}" in spec()["paths"] else "NEWER_METHODS"
    return f"{where}/paths/{escape('/' + method)}/{verb}", op


def _typed(value: Any, param: dict[str, Any], in_json: bool) -> Any:
    """Form and query values are text: read them as the declared type; JSON values are as sent."""
    if in_json or not isinstance(value, str):
        return value
    kind = param.get("type")
    if kind == "boolean" and value in ("true", "false", "1", "0"):
        return value in ("true", "1")
    if kind == "integer" and re.fullmatch(r"-?\d+", value):
        return int(value)
    if kind == "number" and re.fullmatch(r"-?\d+(\.\d+)?", value):
        return float(value)
    return value


def check(method: str, text: dict[str, str], sent: dict[str, Any] | None, authorization: str) -> list[str]:
    """The ways this call of Web API ``method`` breaks the spec (empty when it keeps to it).

    ``text`` holds the query string's and a form body's arguments, ``sent`` a JSON body's (None without one).
    """
    in_json = sent is not None
    args: dict[str, Any] = text | (sent or {})
    found = operation(method)
    if found is None:
        return [f"unknown Web API method {method!r} (no #/paths/{escape('/' + method)} in {SPEC_NAME})"]
    pointer, op = found
    problems: list[str] = []
    if in_json and "application/json" not in op.get("consumes", []):
        problems.append(f"a JSON body, but the method consumes only {op.get('consumes')} ({pointer}/consumes)")
    params = {name: ("DEVIATIONS/team_id", p) for name, p in ANY_METHOD_ARGUMENTS.items()}
    params |= {p["name"]: (f"{pointer}/parameters/{i}", p) for i, p in enumerate(op.get("parameters", []))}
    for name, value in args.items():
        if name not in params:
            problems.append(f"unknown argument {name!r} = {describe(value)} (not among {pointer}/parameters)")
            continue
        where, param = params[name]
        schema = {k: v for k, v in param.items() if k in SCHEMA_KEYS}
        from_json = sent is not None and name in sent
        if from_json and name in JSON_ARRAYS and isinstance(value, list):
            continue  # deviation "json-arrays"
        for error in jsonschema.Draft4Validator(schema).iter_errors(_typed(value, param, from_json)):
            problems.append(f"argument {name!r} = {describe(value)}: {error.message} "
                            f"(schema {where}/{'/'.join(map(str, error.schema_path))})")
    bearer = authorization.startswith("Bearer ")  # deviation "bearer-token"
    for name, (where, param) in params.items():
        if param.get("required") and name not in args and not (name == "token" and bearer):
            problems.append(f"missing required argument {name!r} ({where})")
    return problems


async def check_request(request: web.Request, body: bytes) -> tuple[str, list[str]] | None:
    """The apicontract checker for the Slack stand-in."""
    if request.path.startswith("/response/") or request.path == "/socket":
        return None  # not Web API: response_url answers, and the Socket Mode WebSocket
    call = f"Slack {request.method} {request.path}"
    if not request.path.startswith("/api/"):
        return call, [f"not a Web API path (they are /api/METHOD; {WEB_API_DOCS})"]
    method = request.path.removeprefix("/api/")
    text = dict(request.query)
    sent: dict[str, Any] | None = None
    if request.content_type == "application/json" and body:
        try:
            sent = json.loads(body)
        except ValueError as exc:
            return call, [f"the JSON body does not parse ({exc})"]
        if not isinstance(sent, dict):
            return call, [f"the JSON body is not an object: {describe(sent)}"]
    elif body:
        text |= {k: v[-1] for k, v in urllib.parse.parse_qs(body.decode(), keep_blank_values=True).items()}
    return call, check(method, text, sent, request.headers.get("Authorization", ""))
