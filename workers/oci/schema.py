"""The OCI image-spec schemas, to check manifests and indexes wasmbot writes and reads back."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

FOLDER = Path(__file__).with_name("schemas")


@functools.cache
def _validator(name: str) -> jsonschema.Draft4Validator:
    def retrieve(uri: str) -> Resource[Any]:
        return Resource.from_contents(json.loads((FOLDER / uri.rsplit("/", 1)[-1].split("#")[0]).read_text()),
                                      default_specification=DRAFT4)

    schema = json.loads((FOLDER / name).read_text())
    return jsonschema.Draft4Validator(schema, registry=Registry(retrieve=retrieve))  # type: ignore[call-arg]


def problems(document: dict[str, Any], kind: str = "manifest") -> list[str]:
    """What makes ``document`` an invalid OCI image manifest (or index); empty when valid."""
    validator = _validator("image-manifest-schema.json" if kind == "manifest" else "image-index-schema.json")
    return [f"{'/'.join(str(p) for p in error.absolute_path) or '(top)'}: {error.message}"
            for error in validator.iter_errors(document)]
