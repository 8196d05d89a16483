"""Push an image, skipping blobs the registry has, then read the manifest back and check it.

The check is what makes the recorded digest trustworthy: the registry must serve, by digest,
exactly the bytes that were sent.  Those bytes are ``image.build``'s, whose manifests the tests
check against the OCI schema (tests/test_oci_registry.py), so a push does not load jsonschema.
A reference with a digest pins the manifest: it is computed before anything is sent, and a
different one is refused (a module's manifest is deterministic, so the refusal costs no upload).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass

from workers.oci import image
from workers.oci.reference import InvalidReference, Reference
from workers.oci.registry import Corrupt, Registry, RegistryError


class DigestMismatch(RegistryError):
    """The image to push is not the one the reference's digest names; nothing was sent."""


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


def targets(ref: Reference, variant: str, oci_tag_suffix: str) -> list[tuple[str, Reference]]:
    """Where each variant goes: ``ref`` (``:latest`` when it names neither tag nor digest), and for
    ``both`` the oci variant under TAG + suffix.  A digest pins one image, so not ``both``."""
    if not ref.tag and not ref.digest:
        ref = ref.with_tag("latest")
    if variant != "both":
        return [(variant, ref)]
    if ref.digest or not ref.tag:
        raise InvalidReference(f"{ref} pins one image, but variant 'both' pushes two (TAG and "
                               f"TAG{oci_tag_suffix}): push to a tag, or choose --variant compat or oci")
    return [("compat", ref), ("oci", ref.with_tag(f"{ref.tag}{oci_tag_suffix}"))]


def push(registry: Registry, ref: Reference, built: image.Image,
         log: Callable[[str], None] = lambda line: None) -> Pushed:
    """Push ``built`` to ``ref``'s tag, or by digest when ``ref`` has only a digest."""
    raw = built.manifest()
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    if ref.digest and ref.digest != digest:
        raise DigestMismatch(f"{ref} names another image: the {built.variant} image of this module is "
                             f"{digest}; nothing was pushed")
    uploaded = reused = 0
    blobs = {blob.digest: blob for blob in [built.config, *built.layers]}
    for blob_digest, blob in blobs.items():
        if registry.blob_exists(ref.repository, blob_digest):
            reused += 1
            continue
        log(f"uploading {blob.media_type} {blob_digest} ({len(blob.data)} bytes)")
        registry.upload_blob(ref.repository, blob.data, blob_digest)
        uploaded += 1
    registry.put_manifest(ref.repository, ref.tag or digest, raw, image.MANIFEST_MEDIA_TYPE)
    verify(registry, ref, raw, digest)
    return Pushed(ref.name, digest, built.variant, built.size, uploaded, reused)


def verify(registry: Registry, ref: Reference, raw: bytes, digest: str) -> None:
    """Read the manifest back by digest: the same bytes."""
    stored = registry.get_manifest(ref.repository, digest)
    if stored.raw != raw:
        raise Corrupt(f"registry {registry.host} serves {ref.pinned(digest)} with other bytes than were "
                      "pushed")


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
