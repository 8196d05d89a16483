"""Inspect an image without downloading its module: manifest and config only."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from workers.oci import image
from workers.oci.reference import Reference
from workers.oci.registry import Manifest, NotFound, Registry, RegistryError

MAX_CONFIG_BYTES = 1 << 20


@dataclass
class Resolved:
    """A manifest found by tag or digest; an index was followed to its linux/amd64 image, the one
    Istio's fetcher takes."""

    manifest: Manifest
    body: dict[str, Any]
    variant: str


MAX_INDEX_DEPTH = 8  # indexes of indexes followed before giving up (a loop cannot be built, but a chain can)


def resolve(registry: Registry, ref: Reference) -> Resolved:
    """The manifest ``ref`` names; an index is followed to its linux/amd64 entry, and an entry
    that is an index again is followed the same way, as go-containerregistry's
    ``Descriptor.Image`` does for Istio's fetcher."""
    try:
        found = registry.get_manifest(ref.repository, ref.ref)
    except NotFound:
        raise _explain_missing(registry, ref) from None
    body = _json(found.raw, f"manifest of {ref}")
    for _ in range(MAX_INDEX_DEPTH):
        kind = body.get("mediaType") or found.media_type
        if kind not in (image.INDEX_MEDIA_TYPE, image.DOCKER_LIST_MEDIA_TYPE):
            return Resolved(found, body, image.variant_of(body, found.media_type))
        entries = body.get("manifests") or []
        if not entries:
            raise image.UnsupportedImage(f"{ref} is an empty image index")
        chosen = next((e for e in entries if _linux_amd64(e)), None)
        if chosen is None:
            platforms = ", ".join(sorted({_platform(e) for e in entries}))
            raise image.UnsupportedImage(f"{ref} is an image index with no linux/amd64 image (its platforms: "
                                         f"{platforms}); Istio would not load it")
        found = registry.get_manifest(ref.repository, chosen["digest"])
        body = _json(found.raw, f"manifest {chosen['digest']} of {ref}")
    raise image.UnsupportedImage(f"{ref} nests image indexes more than {MAX_INDEX_DEPTH} deep")


def _linux_amd64(entry: dict[str, Any]) -> bool:
    """The entry Istio's fetcher takes from an index (go-containerregistry's ``childByPlatform``):
    the first whose platform is linux/amd64, an entry without a platform counting as one."""
    platform = entry.get("platform")
    if platform is None:
        return True
    return (isinstance(platform, dict) and platform.get("os") == "linux"
            and platform.get("architecture") == "amd64")


def _platform(entry: dict[str, Any]) -> str:
    platform = entry.get("platform")
    return f"{platform.get('os')}/{platform.get('architecture')}" if isinstance(platform, dict) else "?"


def _explain_missing(registry: Registry, ref: Reference) -> NotFound:
    """Say whether the repository or only the tag is missing; registries answer both the same."""
    try:
        tags = registry.tags(ref.repository)
    except NotFound:
        return NotFound(f"registry {registry.host} has no repository {ref.repository!r}: check the name, "
                        "or push an image there first")
    shown = ", ".join(sorted(tags)[:20]) or "none"
    return NotFound(f"registry {registry.host} has no {ref.ref!r} in {ref.repository} (its tags: {shown})")


@dataclass
class Inspected:
    reference: str
    digest: str
    media_type: str
    variant: str
    abi_versions: list[str]
    root_ids: list[str]
    size: int  # bytes of config and layers, what a pull downloads
    module_size: int
    layers: list[dict[str, Any]]
    annotations: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        lines = [
            f"{self.reference}@{self.digest}",
            f"  variant:      {self.variant} ({self.media_type})",
            f"  ABI versions: {', '.join(self.abi_versions) or 'not recorded'}",
            f"  root ids:     {', '.join(self.root_ids) or 'not recorded'}",
            f"  size:         {self.size} bytes to pull (module layer {self.module_size} bytes)",
            "  layers:",
            *(f"    {layer['mediaType']} {layer['digest']} {layer['size']} bytes" for layer in self.layers),
        ]
        if self.annotations:
            lines.append("  annotations:")
            lines.extend(f"    {key}: {value}" for key, value in sorted(self.annotations.items()))
        return "\n".join(lines)


def inspect(registry: Registry, ref: Reference) -> Inspected:
    resolved = resolve(registry, ref)
    body = resolved.body
    config = body["config"]
    data = _json(registry.get_blob(ref.repository, config["digest"], int(config["size"]), MAX_CONFIG_BYTES),
                 f"config of {ref}")
    annotations: dict[str, str] = body.get("annotations") or {}
    if resolved.variant == "oci":
        runtime = image.read_runtime(data)
    else:
        labels = (data.get("config") or {}).get("Labels") or {}
        runtime = image.runtime_from_annotations({**labels, **annotations})
    layers = [{"mediaType": layer["mediaType"], "digest": layer["digest"], "size": int(layer["size"])}
              for layer in body["layers"]]
    return Inspected(
        reference=str(Reference(ref.registry, ref.repository, ref.tag)), digest=resolved.manifest.digest,
        media_type=resolved.manifest.media_type or str(body.get("mediaType", "")), variant=resolved.variant,
        abi_versions=runtime.abi_versions, root_ids=runtime.root_ids,
        size=int(config["size"]) + sum(layer["size"] for layer in layers),
        module_size=int(image.module_layer(body, resolved.variant)["size"]), layers=layers,
        annotations=annotations)


def _json(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        raise RegistryError(f"the {what} is not JSON") from None
    if not isinstance(value, dict):
        raise RegistryError(f"the {what} is not a JSON object")
    return value
