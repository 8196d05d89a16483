"""Pull an image of either variant (or a Docker v2 image) into the local store and extract the module.

Every blob is verified against its digest and size before it is kept; a blob the store already
holds is not downloaded again.  The module is found by the rules of Istio's fetcher and must be
a WebAssembly binary.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import IO

from workers.oci import image
from workers.oci.inspect import resolve
from workers.oci.reference import Reference
from workers.oci.registry import Registry
from workers.oci.store import Store


@dataclass
class Pulled:
    reference: str
    digest: str
    variant: str
    module: bytes
    downloaded: int  # blobs fetched; the rest were already in the store
    stored_digest: str  # what the store's index.json names: ``digest``, or its OCI conversion

    @property
    def module_digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.module).hexdigest()


def _fetch(registry: Registry, repository: str, digest: str, size: int, limit: int, out: IO[bytes]) -> None:
    registry.fetch_blob(repository, digest, size, out, limit)


def pull(registry: Registry, ref: Reference, store: Store, max_module_bytes: int) -> Pulled:
    resolved = resolve(registry, ref)
    body, manifest = resolved.body, resolved.manifest
    downloaded = 0
    for desc in [body["config"], *body["layers"]]:
        digest, size = desc["digest"], int(desc["size"])
        if store.has(digest):
            continue
        store.write(digest, functools.partial(_fetch, registry, ref.repository, digest, size,
                                              max_module_bytes))
        downloaded += 1
    layer = image.module_layer(body, resolved.variant)
    path = store.path(layer["digest"])
    if resolved.variant == "oci":
        module = path.read_bytes()
    else:
        with path.open("rb") as layer_file:
            module = image.plugin_from_tar(layer_file, max_module_bytes)
    if not image.is_wasm(module):
        raise image.UnsupportedImage(f"the module in {ref} does not start with a WebAssembly header "
                                     "(\\0asm and a version): Istio would not load it")
    name = str(Reference(ref.registry, ref.repository, ref.tag or (None if ref.digest else "latest")))
    stored = store.keep(name, manifest.raw, body, manifest.media_type)
    return Pulled(str(ref), manifest.digest, resolved.variant, module, downloaded, stored)
