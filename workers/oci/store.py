"""A local content store in the OCI image layout (``oci-layout``, ``index.json``, ``blobs/``).

Pulled images land here, so podman, skopeo and crane can read them too (``oci:DIR:REF``).  A blob
is only renamed into place after its digest was verified, so a file under ``blobs/`` is always
the content its name says.

``index.json`` names only OCI manifests: skopeo (containers/image) skips any other media type
there ("no descriptor found for reference").  A Docker v2 schema 2 manifest is therefore stored
converted to OCI, as ``skopeo copy docker://… oci:…`` converts it: same config and layer blobs,
OCI media types.  That changes the manifest's digest; the registry's digest (what a WasmPlugin's
``sha256`` pins) is kept in the index entry's ``io.wasmbot.source.digest`` annotation, and the
registry's manifest bytes stay in ``blobs/`` under it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from workers.oci.image import (
    DOCKER_LAYER_MEDIA_TYPE,
    DOCKER_MANIFEST_MEDIA_TYPE,
    INDEX_MEDIA_TYPE,
    MANIFEST_MEDIA_TYPE,
    OCI_CONFIG_MEDIA_TYPE,
    TAR_GZIP_MEDIA_TYPE,
)

REF_ANNOTATION = "org.opencontainers.image.ref.name"
SOURCE_DIGEST_ANNOTATION = "io.wasmbot.source.digest"
SOURCE_MEDIA_TYPE_ANNOTATION = "io.wasmbot.source.mediaType"
# Docker v2 schema 2 media types and their OCI equivalents, as containers/image converts them.
DOCKER_TO_OCI = {
    DOCKER_MANIFEST_MEDIA_TYPE: MANIFEST_MEDIA_TYPE,
    "application/vnd.docker.container.image.v1+json": OCI_CONFIG_MEDIA_TYPE,
    DOCKER_LAYER_MEDIA_TYPE: TAR_GZIP_MEDIA_TYPE,
    "application/vnd.docker.image.rootfs.diff.tar": "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip":
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
}


def docker_to_oci(manifest: dict[str, Any]) -> bytes:
    """A Docker v2 schema 2 manifest as an OCI image manifest over the same blobs."""
    def convert(desc: dict[str, Any]) -> dict[str, Any]:
        return {**desc, "mediaType": DOCKER_TO_OCI.get(desc["mediaType"], desc["mediaType"])}
    body = {**manifest, "mediaType": MANIFEST_MEDIA_TYPE, "config": convert(manifest["config"]),
            "layers": [convert(layer) for layer in manifest["layers"]]}
    return json.dumps(body, separators=(",", ":")).encode()


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        layout = root / "oci-layout"
        if not layout.exists():
            layout.write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
        if not self.index_path.exists():
            self._write_index({"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": []})

    @property
    def index_path(self) -> Path:
        return self.root / "index.json"

    def path(self, digest: str) -> Path:
        algorithm, _, hexdigest = digest.partition(":")
        return self.root / "blobs" / algorithm / hexdigest

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def write(self, digest: str, fill: Callable[[IO[bytes]], object]) -> Path:
        """Store the blob ``fill`` writes; ``fill`` must verify it (``Registry.fetch_blob`` does)."""
        target = self.path(digest)
        with tempfile.NamedTemporaryFile(dir=target.parent, prefix=".partial-", delete=False) as out:
            try:
                fill(out)
            except BaseException:
                out.close()
                os.unlink(out.name)
                raise
        os.replace(out.name, target)
        return target

    def put(self, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if not self.has(digest):
            self.write(digest, lambda out: out.write(data))
        return digest

    def keep(self, name: str, raw: bytes, manifest: dict[str, Any], media_type: str) -> str:
        """Store an image manifest as the registry sent it and name it in ``index.json``, converted
        to OCI when it is Docker's; the digest ``name`` points at is returned."""
        digest = self.put(raw)
        annotations: dict[str, str] = {}
        if (manifest.get("mediaType") or media_type) == DOCKER_MANIFEST_MEDIA_TYPE:
            annotations = {SOURCE_DIGEST_ANNOTATION: digest,
                           SOURCE_MEDIA_TYPE_ANNOTATION: DOCKER_MANIFEST_MEDIA_TYPE}
            raw = docker_to_oci(manifest)
            digest = self.put(raw)
        self._tag(name, {"mediaType": MANIFEST_MEDIA_TYPE, "digest": digest, "size": len(raw),
                        "annotations": annotations})
        return digest

    def _tag(self, name: str, descriptor: dict[str, Any]) -> None:
        """Point ``name`` at a manifest in ``index.json`` (replacing what it pointed at)."""
        with open(self.root / ".index.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            index = json.loads(self.index_path.read_text())
            kept = [m for m in index["manifests"] if (m.get("annotations") or {}).get(REF_ANNOTATION) != name]
            entry = dict(descriptor)
            entry["annotations"] = {**descriptor.get("annotations", {}), REF_ANNOTATION: name}
            index["manifests"] = [*kept, entry]
            self._write_index(index)

    def _write_index(self, index: dict[str, Any]) -> None:
        temporary = self.index_path.with_suffix(".tmp")
        temporary.write_text(json.dumps(index, indent=1))
        os.replace(temporary, self.index_path)
