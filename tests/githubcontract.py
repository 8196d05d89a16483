"""Check a GitHub REST call against GitHub's OpenAPI description from npm ``@octokit/openapi``.

The api.github.com description (OpenAPI 3.0.3, ~13 MB, loads in well under a second) is found
by method and path template: an unknown endpoint is a violation.  Then the path, query and
header parameters (required ones present, no unknown query parameters, values of the declared
type once read from the URL's text) and the JSON request body (OpenAPI 3.0 request schema:
``nullable``, ``readOnly``, required fields, types, enums) are validated with
openapi-schema-validator, so no schema logic is written here.  Each problem names the schema
path in the spec as a JSON pointer.

``ANY_MEDIA_TYPE`` lists where GitHub's documentation allows more than the description, each with
its page.  The stand-in serves two non-REST routes of its own: ``/_uploads/…`` is uploads.github.com
(checked against the operations whose ``servers`` name that host: release assets), and
``/_archive/…`` is the codeload download that ``GET /repos/{owner}/{repo}/tarball/{ref}``
redirects to (an archive, not an API; exempt).
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from aiohttp import web
from apicontract import describe, pinned
from jsonschema.exceptions import ValidationError
from openapi_schema_validator import OAS30WriteValidator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

PACKAGE = "@octokit/openapi"
SPEC_URI = "urn:wasmbot:octokit-openapi"
UPLOADS_HOST = "https://uploads.github.com"
UPLOADS_PREFIX = "/_uploads"  # where the stand-in serves uploads.github.com (see its upload_url)
ARCHIVE_PREFIX = "/_archive/"  # the tarball redirect's target: codeload.github.com, not the REST API
# Where GitHub's documentation says more than the description: each entry with the page.
ANY_MEDIA_TYPE = {
    # The description lists only application/octet-stream, but "Upload a release asset"
    # (https://docs.github.com/rest/releases/assets#upload-a-release-asset) says: "Use the required
    # Content-Type header to provide the media type of the asset" (wasmbot sends application/wasm).
    ("POST", "/repos/{owner}/{repo}/releases/{release_id}/assets"),
}
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


@dataclass
class Operation:
    method: str
    template: str
    pointer: str  # JSON pointer of the operation in the spec
    pattern: re.Pattern[str]
    params: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (pointer, parameter)
    body: dict[str, Any] | None = None

    @property
    def literal(self) -> int:
        """How much of the template is fixed text: the more, the more specific the match."""
        return len(re.sub(r"\{[^}]+\}", "", self.template))


def escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


class Spec:
    """The operations of one OpenAPI document, found by method and concrete path."""

    def __init__(self, document: dict[str, Any], version: str) -> None:
        self.document, self.version = document, version
        self.registry: Registry[Any] = Registry().with_resource(SPEC_URI, Resource(document, DRAFT4))
        self.operations: dict[tuple[str, str], list[Operation]] = {}  # (host, method) -> most specific first
        default_host = document["servers"][0]["url"]
        for template, item in document["paths"].items():
            shared = item.get("parameters", [])
            for method in METHODS:
                if method not in item:
                    continue
                op = item[method]
                pointer = f"#/paths/{escape(template)}/{method}"
                params = [self._param(f"#/paths/{escape(template)}/parameters/{i}", p) for i, p in enumerate(shared)]
                own = [self._param(f"{pointer}/parameters/{i}", p) for i, p in enumerate(op.get("parameters", []))]
                params = [p for p in params if (p[1]["in"], p[1]["name"]) not in {(q["in"], q["name"]) for _, q in own}]
                params += own
                multi = {p["name"] for _, p in params if p["in"] == "path" and p.get("x-multi-segment")}
                regex = "".join(re.escape(piece) if i % 2 == 0 else
                                f"(?P<{_group(piece)}>{'.+' if piece in multi else '[^/]+'})"
                                for i, piece in enumerate(re.split(r"\{([^}]+)\}", template)))
                host = (op.get("servers") or item.get("servers") or [{"url": default_host}])[0]["url"]
                operation = Operation(method.upper(), template, pointer, re.compile(regex), params,
                                      op.get("requestBody"))
                self.operations.setdefault((host, method.upper()), []).append(operation)
        for ops in self.operations.values():
            ops.sort(key=lambda o: -o.literal)

    def _param(self, pointer: str, param: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        while "$ref" in param:
            pointer = param["$ref"]
            param = self.resolve(pointer)
        return pointer, param

    def resolve(self, pointer: str) -> Any:
        node: Any = self.document
        for token in pointer.removeprefix("#/").split("/"):
            node = node[token.replace("~1", "/").replace("~0", "~")]
        return node

    def find(self, host: str, method: str, path: str) -> tuple[Operation, dict[str, str]] | None:
        for op in self.operations.get((host, method), []):
            if m := op.pattern.fullmatch(path):
                return op, {_name(k): urllib.parse.unquote(v) for k, v in m.groupdict().items()}
        return None

    def errors(self, pointer: str, instance: Any) -> Iterator[ValidationError]:
        return _validator(self, pointer).iter_errors(instance)


@cache
def _validator(spec: Spec, pointer: str) -> OAS30WriteValidator:
    return OAS30WriteValidator({"$ref": SPEC_URI + pointer}, registry=spec.registry)


def _group(name: str) -> str:
    """A regex group name for path parameter ``name`` (hex, so any name is a valid identifier)."""
    return "p" + name.encode().hex()


def _name(group: str) -> str:
    return bytes.fromhex(group[1:]).decode()


@cache
def spec() -> Spec:
    """The pinned api.github.com description (raises apicontract.SpecMissing when not fetched)."""
    version, package = pinned(PACKAGE)
    document = json.loads((package / "generated" / "api.github.com.json").read_text())
    return Spec(document, version)


def _typed(value: str, schema: dict[str, Any]) -> Any:
    """A URL parameter's text as the type its schema declares, when it reads as one."""
    kind = schema.get("type")
    try:
        if kind == "integer" and re.fullmatch(r"-?\d+", value):
            return int(value)
        if kind == "number":
            return float(value)
    except ValueError:
        return value
    if kind == "boolean" and value in ("true", "false"):
        return value == "true"
    return value


def _schema_problem(spec: Spec, pointer: str, instance: Any, what: str) -> str | None:
    """The errors of ``instance``, each with its value and schema path; ``anyOf``/``oneOf`` only
    when nothing more specific failed (their branches' errors say little on their own)."""
    errors = list(spec.errors(pointer, instance))
    plain = [e for e in errors if e.validator not in ("anyOf", "oneOf")]
    return "; ".join(say(pointer, error, what) for error in plain or errors) or None


def say(pointer: str, error: ValidationError, what: str) -> str:
    """One schema error: where in the instance, the value, why, and the schema path in the spec."""
    where = "".join(f"[{p!r}]" if isinstance(p, str) else f"[{p}]" for p in error.absolute_path)
    schema_path = "/".join([pointer, *(escape(str(p)) for p in error.absolute_schema_path)])
    why = error.message if not error.context else f"{error.validator} failed: " + " | ".join(
        f"{'/'.join(map(str, e.relative_schema_path))}: {e.message}" for e in error.context)
    return f"{what}{where} = {describe(error.instance)}: {why} (schema {schema_path})"


def check(method: str, path: str, query: list[tuple[str, str]], headers: dict[str, str],
          content_type: str, body: bytes) -> list[str]:
    """The ways this call breaks the spec (empty when it keeps to it)."""
    api = spec()
    host = api.document["servers"][0]["url"]
    if path.startswith(UPLOADS_PREFIX + "/"):
        host, path = UPLOADS_HOST, path.removeprefix(UPLOADS_PREFIX)
    found = api.find(host, method, path)
    if found is None:
        return [f"no operation {method} {path} on {host} in {PACKAGE} {api.version} (#/paths)"]
    op, values = found
    problems: list[str] = []
    names = {p["name"] for _, p in op.params if p["in"] == "query"}
    problems += [f"unknown query parameter {name!r} (not among {op.pointer}/parameters)"
                 for name, _ in query if name not in names]
    given = {"path": values, "query": dict(query), "header": {k.lower(): v for k, v in headers.items()}}
    for pointer, param in op.params:
        if param["in"] == "cookie":
            continue
        key = param["name"].lower() if param["in"] == "header" else param["name"]
        if key not in given[param["in"]]:
            if param.get("required"):
                problems.append(f"missing required {param['in']} parameter {param['name']!r} ({pointer})")
            continue
        value = _typed(given[param["in"]][key], param.get("schema", {}))
        problem = _schema_problem(api, pointer + "/schema", value, f"{param['in']} parameter {param['name']!r}")
        problems += [problem] if problem else []
    problems += _body_problems(api, op, content_type, body)
    return problems


def _body_problems(api: Spec, op: Operation, content_type: str, body: bytes) -> list[str]:
    if op.body is None:
        return [f"a body was sent to an operation that takes none ({op.pointer})"] if body.strip() else []
    if not body:
        return [f"missing required request body ({op.pointer}/requestBody)"] if op.body.get("required") else []
    content = op.body.get("content", {})
    if content_type not in content and "*/*" not in content and (op.method, op.template) not in ANY_MEDIA_TYPE:
        return [f"content type {content_type!r} is not one of {sorted(content)} ({op.pointer}/requestBody/content)"]
    if content_type != "application/json":
        return []
    try:
        instance = json.loads(body)
    except ValueError as exc:
        return [f"the body is not JSON ({exc})"]
    pointer = f"{op.pointer}/requestBody/content/{escape(content_type)}/schema"
    problem = _schema_problem(api, pointer, instance, "body")
    return [problem] if problem else []


async def check_request(request: web.Request, body: bytes) -> tuple[str, list[str]] | None:
    """The apicontract checker for the GitHub stand-in."""
    if request.path.startswith(ARCHIVE_PREFIX):
        return None  # codeload's archive download, the tarball endpoint's redirect target: not REST
    call = f"GitHub {request.method} {request.path_qs}"
    if request.path.startswith("/login/oauth/"):
        return call, oauth_problems(request, body)
    return call, check(request.method, request.path, list(request.query.items()), dict(request.headers),
                       request.content_type if body else "", body)


# The OAuth web flow is not part of the REST description; its parameters are documented in
# "Authorizing OAuth apps" (docs.github.com/apps/oauth-apps/building-oauth-apps/authorizing-oauth-apps).
OAUTH = {
    ("GET", "/login/oauth/authorize"): ({"client_id"}, {"redirect_uri", "login", "scope", "state",
                                                        "allow_signup", "prompt"}),
    ("POST", "/login/oauth/access_token"): ({"client_id", "client_secret", "code"}, {"redirect_uri",
                                                                                     "repository_id"}),
}


def oauth_problems(request: web.Request, body: bytes) -> list[str]:
    """What a call to the OAuth web flow's endpoints does against GitHub's documented parameters."""
    known = OAUTH.get((request.method, request.path))
    if known is None:
        return [f"no OAuth endpoint {request.method} {request.path}"]
    required, optional = known
    problems: list[str] = []
    params = dict(request.query)
    if request.method == "POST":
        if request.content_type == "application/x-www-form-urlencoded":
            params |= dict(urllib.parse.parse_qsl(body.decode()))
        elif request.content_type == "application/json":
            params |= json.loads(body or b"{}")
        elif body:
            problems.append(f"content type {request.content_type!r}: the token endpoint takes a form or JSON")
    problems += [f"missing required parameter {name!r}" for name in sorted(required - params.keys())]
    problems += [f"undocumented parameter {name!r}" for name in sorted(params.keys() - required - optional)]
    if params.get("allow_signup") not in (None, "true", "false"):
        problems.append(f"allow_signup is {params['allow_signup']!r}, not true or false")
    return problems
