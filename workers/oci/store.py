"""A local content store in the OCI image layout (``oci-layout``, ``index.json``, ``blobs/``).

Pulled images land here, so podman, skopeo and crane can read them too (``oci:DIR:REF``).  A blob
is only renamed into place after its digest was verified, so a file under ``blobs/`` is always
the content its name says.
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

from workers.oci.image import INDEX_MEDIA_TYPE

REF_ANNOTATION = "org.opencontainers.image.ref.name"


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

    def tag(self, name: str, descriptor: dict[str, Any]) -> None:
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
