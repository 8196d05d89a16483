"""What a re-push of an unchanged module reuses: its compressed compat layer and its load check.

Both are pure functions of the module's bytes (the layer is byte-for-byte reproducible), so they
are kept under ``DATA_DIR/cache/layers`` by module digest and format version: a re-push neither
gzips nor compiles, and since the blobs' digests are unchanged the registry's blob HEAD answers
"already there" and nothing is uploaded.  Entries are ``workers.buildcache`` entries (complete or
absent, least recently used evicted past the bound; retention may shrink the folder too).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from workers import buildcache
from workers.oci import image

# Bump when image.plugin_tar or image.compress change, or when the load check does: old entries
# are then never read and age out.
FORMAT = "v1"
MAX_BYTES = 256 << 20
_LAYER, _DIFF_ID, _ABI = "layer.tar.gz", "diff_id", "abi_version"


class LayerCache:
    """``hits`` and ``misses`` count this process's layer look-ups (what the tests and bench read)."""

    def __init__(self, data_dir: Path, max_bytes: int = MAX_BYTES) -> None:
        self.cache = buildcache.Cache(data_dir / "cache" / "layers", max_bytes)
        self.hits = self.misses = 0
        self._last: tuple[bytes, str] | None = None  # a push asks about one module several times

    def _key(self, kind: str, module: bytes) -> str:
        if self._last is None or self._last[0] is not module:
            self._last = (module, hashlib.sha256(module).hexdigest())
        return f"{kind}-{FORMAT}-{self._last[1]}"

    def compat_layer(self, module: bytes) -> image.CompatLayer:
        """``image.compat_layer(module)``, compressed at most once per module."""
        name = self._key("layer", module)
        entry = self.cache.get(name)
        if entry is not None:
            try:
                layer = image.CompatLayer((entry / _LAYER).read_bytes(), (entry / _DIFF_ID).read_text())
            except OSError:
                pass  # evicted meanwhile: make it again
            else:
                self.hits += 1
                return layer
        self.misses += 1
        layer = image.compat_layer(module)
        with self.cache.filling(name) as scratch:
            (scratch / _LAYER).write_bytes(layer.data)
            (scratch / _DIFF_ID).write_text(layer.diff_id)
        return layer

    def checked_abi(self, module: bytes, max_bytes: int) -> str | None:
        """The ABI version a module passed the load check with under this size cap, if it did."""
        entry = self.cache.get(self._key(f"check-{max_bytes}", module))
        try:
            return (entry / _ABI).read_text() if entry is not None else None
        except OSError:
            return None

    def passed(self, module: bytes, max_bytes: int, abi_version: str) -> None:
        """Record that ``module`` passed the load check (failures are not kept: they are cheap)."""
        with self.cache.filling(self._key(f"check-{max_bytes}", module)) as scratch:
            (scratch / _ABI).write_text(abi_version)
