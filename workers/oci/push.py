"""Push an image, skipping blobs the registry has, then read the manifest back and check it.

The check is what makes the recorded digest trustworthy: the registry must serve, by digest,
exactly the bytes that were sent, and they must validate against the OCI manifest schema.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from workers.oci import image, schema
from workers.oci.reference import InvalidReference, Reference
from workers.oci.registry import Corrupt, Registry, RegistryError


@dataclass
class Pushed:
    reference: str
    digest: str
    variant: str
    size: int
    uploaded: int  # blobs sent
    reused: int  # blobs the registry already had

    @property
    def pinned(self) -> str:
        return f"{self.reference}@{self.digest}"


def push(registry: Registry, ref: Reference, built: image.Image,
         log: Callable[[str], None] = lambda line: None) -> Pushed:
    if ref.digest or not ref.tag:
        raise InvalidReference(f"push to a tag (REGISTRY/REPOSITORY:TAG), not {ref}")
    uploaded = reused = 0
    blobs = {blob.digest: blob for blob in [built.config, *built.layers]}
    for digest, blob in blobs.items():
        if registry.blob_exists(ref.repository, digest):
            reused += 1
            continue
        log(f"uploading {blob.media_type} {digest} ({len(blob.data)} bytes)")
        registry.upload_blob(ref.repository, blob.data, digest)
        uploaded += 1
    raw = built.manifest()
    digest = registry.put_manifest(ref.repository, ref.tag, raw, image.MANIFEST_MEDIA_TYPE)
    verify(registry, ref, raw, digest)
    return Pushed(str(ref), digest, built.variant, built.size, uploaded, reused)


def verify(registry: Registry, ref: Reference, raw: bytes, digest: str) -> None:
    """Read the manifest back by digest: same bytes, and a valid OCI image manifest."""
    stored = registry.get_manifest(ref.repository, digest)
    if stored.raw != raw:
        raise Corrupt(f"registry {registry.host} serves {ref}@{digest} with other bytes than were pushed")
    found = schema.problems(json.loads(raw))
    if found:
        raise RegistryError(f"the manifest of {ref} is not a valid OCI image manifest: {'; '.join(found)}")


def tag(registry: Registry, source: Reference, new_tag: str) -> Pushed:
    """Give an existing manifest another tag in its repository; no blob is sent."""
    target = source.with_tag(new_tag)
    found = registry.get_manifest(source.repository, source.ref)
    body = json.loads(found.raw)
    digest = registry.put_manifest(source.repository, new_tag, found.raw,
                                   found.media_type or body.get("mediaType") or image.MANIFEST_MEDIA_TYPE)
    variant = image.variant_of(body, found.media_type) if body.get("layers") else "index"
    size = sum(int(d["size"]) for d in [body.get("config") or {"size": 0}, *(body.get("layers") or [])])
    return Pushed(str(target), digest, variant, size, 0, 0)
