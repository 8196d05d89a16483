"""Validate Kubernetes objects against the vendored OpenAPI v3 schemas, as strictly as the API server.

``kubectl apply --validate=strict`` rejects unknown fields; the OpenAPI documents leave them
open (no ``additionalProperties``), so every object schema is closed here unless it says
``x-kubernetes-preserve-unknown-fields``. Kinds are found by ``x-kubernetes-group-version-kind``
in ``tests/testdata/k8s-openapi/``; custom resources by their CRD's ``openAPIV3Schema``, with
``metadata`` checked as an ``ObjectMeta``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

OPENAPI = Path(__file__).resolve().parent / "testdata" / "k8s-openapi"
CRDS = Path(__file__).resolve().parent / "testdata" / "k8s"
OBJECT_META = "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"

Schema = dict[str, Any]
GVK = tuple[str, str, str]


def _strict(schema: Any) -> Any:
    """A copy of one schema with closed objects, following only schema positions (not field names)."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    if "properties" in out:
        out["properties"] = {name: _strict(sub) for name, sub in out["properties"].items()}
        if "additionalProperties" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = _strict(out["additionalProperties"])
    if "items" in out:
        out["items"] = _strict(out["items"])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in out:
            out[key] = [_strict(sub) for sub in out[key]]
    if out.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def _unique_map_keys(validator: Any, keys: list[str], instance: Any, schema: Schema) -> Iterator[Any]:
    """``x-kubernetes-list-type: map`` lists: the API server rejects two items with the same keys."""
    if schema.get("x-kubernetes-list-type") != "map" or not isinstance(instance, list):
        return
    seen: set[tuple[Any, ...]] = set()
    for item in instance:
        if isinstance(item, dict):
            key = tuple(item.get(k) for k in keys)
            if key in seen:
                yield jsonschema.ValidationError(f"duplicate entry for key {dict(zip(keys, key, strict=True))}")
            seen.add(key)


# OpenAPI 3.0 schemas are draft 4 (bool exclusiveMinimum, $ref beside nothing else).
_Validator: Any = jsonschema.validators.extend(  # type: ignore[no-untyped-call]  # untyped in types-jsonschema
    jsonschema.Draft4Validator, {"x-kubernetes-list-map-keys": _unique_map_keys})


@cache
def _components() -> tuple[dict[GVK, Schema], Schema]:
    """Every kind's document, keyed by GVK, and one document's components for ObjectMeta."""
    kinds: dict[GVK, Schema] = {}
    core: Schema = {}
    for path in sorted(OPENAPI.glob("*_openapi.json")):
        schemas = json.loads(path.read_text())["components"]["schemas"]
        components = {"schemas": {name: _strict(s) for name, s in schemas.items()}}
        core = core or components
        for name, schema in schemas.items():
            for gvk in schema.get("x-kubernetes-group-version-kind", []):
                kinds[(gvk["group"], gvk["version"], gvk["kind"])] = {
                    "$ref": f"#/components/schemas/{name}", "components": components}
    return kinds, core


@cache
def _crd_schemas() -> dict[GVK, Schema]:
    _, core = _components()
    kinds: dict[GVK, Schema] = {}
    for path in sorted(CRDS.glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            spec = crd["spec"]
            for version in spec["versions"]:
                schema = _strict(version["schema"]["openAPIV3Schema"])
                schema["properties"]["metadata"] = {"$ref": OBJECT_META}
                schema["components"] = core
                kinds[(spec["group"], version["name"], spec["names"]["kind"])] = schema
    return kinds


def schema_for(obj: dict[str, Any]) -> Schema | None:
    group, _, version = str(obj.get("apiVersion", "")).rpartition("/")
    gvk = (group, version, str(obj.get("kind", "")))
    return _components()[0].get(gvk) or _crd_schemas().get(gvk)


def _path(parts: Iterable[Any]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out.lstrip(".")


def _messages(error: jsonschema.ValidationError) -> list[str]:
    where = _path(error.absolute_path)
    if error.validator == "additionalProperties" and error.validator_value is False:
        known = set(error.schema.get("properties", {})) if isinstance(error.schema, dict) else set()
        instance = error.instance if isinstance(error.instance, dict) else {}
        return [f'unknown field "{_path([*error.absolute_path, name])}"' for name in instance if name not in known]
    if error.validator == "required":
        missing = error.message.split("'")[1]
        return [f'missing required field "{_path([*error.absolute_path, missing])}"']
    return [f"{where or '(object)'}: {error.message}"]


def errors(obj: dict[str, Any]) -> list[str]:
    """What the API server would reject in ``obj``, one message per problem; [] if valid."""
    schema = schema_for(obj)
    if schema is None:
        return [f"no schema for apiVersion {obj.get('apiVersion')!r} kind {obj.get('kind')!r}"]
    found = sorted(_Validator(schema).iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    return [message for error in found for message in _messages(error)]
