"""Check a GitHub webhook payload against npm ``@octokit/webhooks-schemas`` (its bundled schema.json).

A payload of event ``E`` with action ``A`` must match ``#/definitions/E$A`` (``E$event`` for
events without actions, such as ``push`` and ``ping``), JSON Schema draft-07 via jsonschema.
Formats are not checked: one of octokit's own examples (check_run/rerequested) carries
``"2018-04-25 20:42:10"`` where the schema says ``date-time`` (tests/testdata/README.md, section 1),
and wasmbot reads no timestamp from a delivery.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import jsonschema
from apicontract import pinned
from githubcontract import escape, say
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

PACKAGE = "@octokit/webhooks-schemas"
SCHEMA_URI = "urn:wasmbot:octokit-webhooks-schemas"


@cache
def _schemas() -> tuple[str, dict[str, Any], Registry[Any]]:
    version, package = pinned(PACKAGE)
    bundle: dict[str, Any] = json.loads((package / "schema.json").read_text())
    return version, bundle, Registry().with_resource(SCHEMA_URI, Resource(bundle, DRAFT7))


def version() -> str:
    return _schemas()[0]


def check(event: str, payload: Any) -> list[str]:
    """The ways ``payload`` is not a delivery of ``event`` as GitHub documents it."""
    _, bundle, registry = _schemas()
    action = payload.get("action") if isinstance(payload, dict) else None
    name = f"{event}${action}" if isinstance(action, str) else f"{event}$event"
    if name not in bundle["definitions"]:
        return [f"no schema for {event} with action {action!r} (#/definitions/{escape(name)} "
                f"in {PACKAGE} {version()})"]
    pointer = f"#/definitions/{escape(name)}"
    validator = jsonschema.Draft7Validator({"$ref": SCHEMA_URI + pointer}, registry=registry)
    return [say(pointer, error, "payload") for error in validator.iter_errors(payload)]
