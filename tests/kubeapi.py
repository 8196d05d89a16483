"""A local stand-in for the Kubernetes API server: custom objects, validated against real CRDs.

It implements what the deploy stage uses, the way kube-apiserver answers it: get, list with
label selectors, create, server-side apply (``application/apply-patch+yaml`` with a
``fieldManager``), JSON merge patch, replace with ``resourceVersion`` preconditions (409 on a
stale one), delete and ``dryRun=All``.  Every object written is checked against its CRD's
structural OpenAPI v3 schema (python-jsonschema) and its ``x-kubernetes-validations`` CEL rules
(cel-python, with the Kubernetes URL library functions the Istio CRD uses); what fails is
refused with 422 and a ``Status`` naming the field, as a real API server would.  Requests need
the bearer token.
"""

from __future__ import annotations

import copy
import json
import threading
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import celpy
import jsonschema
import yaml
from aiohttp import web
from loopback import LoopbackServer

TOKEN = "wasmbot-test-kube-token"


@dataclass
class CRD:
    group: str
    version: str
    plural: str
    kind: str
    schema: dict[str, Any]

    @classmethod
    def load(cls, path: Path) -> CRD:
        doc = yaml.safe_load(path.read_text())
        version = next(v for v in doc["spec"]["versions"] if v.get("served", True))
        return cls(doc["spec"]["group"], version["name"], doc["spec"]["names"]["plural"],
                   doc["spec"]["names"]["kind"], version["schema"]["openAPIV3Schema"])


def _url_functions() -> dict[str, Any]:
    """Kubernetes' CEL URL library (isURL, url(...).getScheme()), enough for Istio's rule."""
    def is_url(value: Any) -> celpy.celtypes.BoolType:
        parsed = urllib.parse.urlparse(str(value))
        return celpy.celtypes.BoolType(bool(parsed.scheme) and bool(parsed.netloc or parsed.path))

    def url(value: Any) -> celpy.celtypes.MapType:
        return celpy.celtypes.MapType({celpy.celtypes.StringType("scheme"):
                                       celpy.celtypes.StringType(urllib.parse.urlparse(str(value)).scheme)})

    def get_scheme(value: Any) -> celpy.celtypes.StringType:
        return celpy.celtypes.StringType(value[celpy.celtypes.StringType("scheme")])
    return {"isURL": is_url, "url": url, "getScheme": get_scheme}


def cel_problems(schema: dict[str, Any], value: Any, path: str) -> list[str]:
    """Evaluate every x-kubernetes-validations rule on ``value`` and below it."""
    found: list[str] = []
    if value is None:
        return found
    for rule in schema.get("x-kubernetes-validations", []):
        env = celpy.Environment()
        try:
            program = env.program(env.compile(rule["rule"]), functions=_url_functions())
            result = program.evaluate({"self": celpy.json_to_cel(value)})
        except Exception as exc:  # a rule this evaluator cannot run is a test bug: say so loudly
            raise RuntimeError(f"cannot evaluate CEL rule {rule['rule']!r} at {path}: {exc}") from exc
        if not bool(result):
            found.append(f"{path}: Invalid value: {rule.get('message', rule['rule'])}")
    if isinstance(value, dict):
        for key, sub in (schema.get("properties") or {}).items():
            found += cel_problems(sub, value.get(key), f"{path}.{key}")
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key, sub_value in value.items():
                if key not in (schema.get("properties") or {}):
                    found += cel_problems(extra, sub_value, f"{path}[{key}]")
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            found += cel_problems(schema["items"], item, f"{path}[{index}]")
    return found


def _strict(schema: Any) -> Any:
    """Structural schemas prune unknown fields; a client that sends one has a bug, so refuse it."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items() if not k.startswith("x-kubernetes-")}
        if schema.get("x-kubernetes-int-or-string"):
            out.pop("type", None)
            out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        if out.get("type") == "object" and "properties" in out and "additionalProperties" not in out \
                and not schema.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def problems(crd: CRD, obj: dict[str, Any]) -> list[str]:
    schema = copy.deepcopy(crd.schema)
    schema.setdefault("properties", {}).pop("metadata", None)
    body = {k: v for k, v in obj.items() if k not in ("metadata", "apiVersion", "kind")}
    found = [] if (obj.get("apiVersion"), obj.get("kind")) == (f"{crd.group}/{crd.version}", crd.kind) else \
        [f"apiVersion/kind: expected {crd.group}/{crd.version} {crd.kind}"]
    found += [f"{'.'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
             for e in jsonschema.Draft7Validator(_strict(schema)).iter_errors(body)]
    return found + cel_problems(crd.schema.get("properties", {}).get("spec", {}), obj.get("spec"), "spec")


@dataclass
class Write:
    verb: str
    namespace: str
    name: str
    dry_run: bool
    manager: str | None = None


@dataclass
class KubeStandIn(LoopbackServer):
    crds: list[CRD]
    objects: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)  # (plural, ns, name)
    applied: dict[tuple[str, str, str, str], dict[str, Any]] = field(default_factory=dict)  # + manager
    writes: list[Write] = field(default_factory=list)
    conflicts: int = 0  # answer the next N updates with 409, as if someone else wrote first
    _version: int = 100

    def start(self) -> str:
        self._changed = threading.Condition()
        return super().start()

    def make_app(self) -> web.Application:
        app = web.Application()
        base = "/apis/{group}/{version}/namespaces/{ns}/{plural}"
        app.router.add_route("*", base, self._collection)
        app.router.add_route("*", base + "/{name}", self._item)
        return app

    def kubeconfig(self, path: Path, context: str = "test") -> Path:
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": context,
            "clusters": [{"name": "stand-in", "cluster": {"server": self.url}}],
            "users": [{"name": "wasmbot", "user": {"token": TOKEN}}],
            "contexts": [{"name": context, "context": {"cluster": "stand-in", "user": "wasmbot"}}]}))
        return path

    # -- helpers ---------------------------------------------------------------------------

    def _crd(self, request: web.Request) -> CRD:
        info = request.match_info
        for crd in self.crds:
            if (crd.group, crd.version, crd.plural) == (info["group"], info["version"], info["plural"]):
                return crd
        raise web.HTTPNotFound(text=json.dumps(_status(404, "NotFound", "the server could not find the "
                                                                         "requested resource")),
                               content_type="application/json")

    def _check_auth(self, request: web.Request) -> None:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            raise web.HTTPUnauthorized(text=json.dumps(_status(401, "Unauthorized", "Unauthorized")),
                                       content_type="application/json")

    def _store(self, crd: CRD, ns: str, name: str, obj: dict[str, Any], dry_run: bool, verb: str,
               manager: str | None) -> dict[str, Any]:
        found = problems(crd, obj)
        if found:
            message = f'{crd.kind}.{crd.group} "{name}" is invalid: ' + "; ".join(found)
            raise web.HTTPUnprocessableEntity(
                text=json.dumps(_status(422, "Invalid", message, causes=found)), content_type="application/json")
        previous = self.objects.get((crd.plural, ns, name))
        meta = obj.setdefault("metadata", {})
        meta.update(name=name, namespace=ns)
        if previous is None:
            meta["uid"] = f"uid-{name}"
            meta["generation"] = 1
        else:
            meta["uid"] = previous["metadata"]["uid"]
            same = previous.get("spec") == obj.get("spec")
            meta["generation"] = previous["metadata"]["generation"] + (0 if same else 1)
        if not dry_run:
            self._version += 1
            meta["resourceVersion"] = str(self._version)
            self.objects[(crd.plural, ns, name)] = obj
        self.writes.append(Write(verb, ns, name, dry_run, manager))
        return obj

    # -- handlers --------------------------------------------------------------------------

    async def _collection(self, request: web.Request) -> web.Response:
        self._check_auth(request)
        crd, ns = self._crd(request), request.match_info["ns"]
        if request.method == "GET":
            selector = dict(part.split("=", 1) for part in request.query.get("labelSelector", "").split(",") if part)
            items = [o for (plural, n, _), o in sorted(self.objects.items())
                     if plural == crd.plural and n == ns
                     and all(o["metadata"].get("labels", {}).get(k) == v for k, v in selector.items())]
            return web.json_response({"apiVersion": f"{crd.group}/{crd.version}", "kind": f"{crd.kind}List",
                                      "metadata": {"resourceVersion": str(self._version)}, "items": items})
        if request.method == "POST":
            obj = await request.json()
            name = obj.get("metadata", {}).get("name", "")
            if (crd.plural, ns, name) in self.objects:
                return web.json_response(_status(409, "AlreadyExists", f'{crd.plural}.{crd.group} "{name}" '
                                                                       "already exists"), status=409)
            stored = self._store(crd, ns, name, obj, request.query.get("dryRun") == "All", "create", None)
            return web.json_response(stored, status=201)
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST"])

    async def _item(self, request: web.Request) -> web.Response:
        self._check_auth(request)
        crd, ns, name = self._crd(request), request.match_info["ns"], request.match_info["name"]
        key = (crd.plural, ns, name)
        current = self.objects.get(key)
        dry_run = request.query.get("dryRun") == "All"
        missing = _status(404, "NotFound", f'{crd.plural}.{crd.group} "{name}" not found')
        if request.method == "GET":
            return web.json_response(current) if current else web.json_response(missing, status=404)
        if request.method == "DELETE":
            if current is None:
                return web.json_response(missing, status=404)
            if not dry_run:
                del self.objects[key]
            self.writes.append(Write("delete", ns, name, dry_run))
            return web.json_response(_status(200, "", "deleted") | {"status": "Success"})
        if request.method == "PUT":
            obj = await request.json()
            if current is None:
                return web.json_response(missing, status=404)
            if self.conflicts > 0 or obj.get("metadata", {}).get("resourceVersion") != \
                    current["metadata"]["resourceVersion"]:
                self.conflicts = max(0, self.conflicts - 1)
                if not dry_run:  # someone else's write: the object moves on
                    self._version += 1
                    current["metadata"]["resourceVersion"] = str(self._version)
                return web.json_response(_status(
                    409, "Conflict", f'Operation cannot be fulfilled on {crd.plural}.{crd.group} "{name}": the '
                                     "object has been modified; please apply your changes to the latest version "
                                     "and try again"), status=409)
            return web.json_response(self._store(crd, ns, name, obj, dry_run, "update", None))
        if request.method == "PATCH":
            kind = request.content_type
            body = await request.text()
            if kind == "application/apply-patch+yaml":
                manager = request.query.get("fieldManager")
                if not manager:
                    return web.json_response(_status(400, "BadRequest", "PATCH, apply: fieldManager is required"),
                                             status=400)
                config = yaml.safe_load(body)
                merged = copy.deepcopy(current) if current else {}
                last = self.applied.get((*key, manager), {})
                for dropped in set(last.get("spec", {})) - set(config.get("spec", {})):
                    merged.get("spec", {}).pop(dropped, None)  # fields this manager no longer applies
                merged = _merge(merged, config)
                stored = self._store(crd, ns, name, merged, dry_run, "apply", manager)
                if not dry_run:
                    self.applied[(*key, manager)] = config
                return web.json_response(stored, status=201 if current is None else 200)
            if kind == "application/merge-patch+json":
                if current is None:
                    return web.json_response(missing, status=404)
                merged = _merge_patch(copy.deepcopy(current), json.loads(body))
                return web.json_response(self._store(crd, ns, name, merged, dry_run, "patch", None))
            return web.json_response(_status(415, "UnsupportedMediaType", f"unsupported patch type {kind}"),
                                     status=415)
        raise web.HTTPMethodNotAllowed(request.method, ["GET", "PUT", "PATCH", "DELETE"])


def _status(code: int, reason: str, message: str, causes: list[str] | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                              "message": message, "reason": reason, "code": code}
    if causes:
        status["details"] = {"causes": [{"reason": "FieldValueInvalid", "message": c,
                                         "field": c.split(":", 1)[0]} for c in causes]}
    return status


def _merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    if not isinstance(target, dict):
        target = {}
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = _merge_patch(target.get(key), value)
    return target
