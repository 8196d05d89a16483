"""The files of a WASM module image, in either of the layouts proxies pull.

``oci``: the solo.io variant: config ``application/vnd.module.wasm.config.v1+json`` (the
runtime config) and two layers, the runtime config and the raw module.
``compat``: a plain OCI image: an image config for linux/amd64 and one
``application/vnd.oci.image.layer.v1.tar+gzip`` layer holding ``plugin.wasm``, which Istio's
fetcher extracts and which any OCI tool can pull.  The tar is deterministic (fixed owner,
mode and time), so an unchanged module makes an unchanged layer and the registry is not sent
it again.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONFIG_MEDIA_TYPE = "application/vnd.module.wasm.config.v1+json"
CONTENT_MEDIA_TYPE = "application/vnd.module.wasm.content.layer.v1+wasm"
OCI_CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
TAR_GZIP_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
VARIANT_ANNOTATION = "module.wasm.image/variant"


@dataclass(frozen=True)
class ImageFiles:
    """What to push: the config (path, media type) and the layers (path, media type)."""

    config: tuple[Path, str]
    layers: list[tuple[Path, str]]
    annotations: dict[str, str]


def runtime_config(abi_version: str, root_ids: list[str]) -> dict[str, Any]:
    return {"type": "envoy_proxy", "abiVersions": [abi_version], "config": {"rootIds": root_ids}}


def plugin_tar(module: bytes) -> bytes:
    """``plugin.wasm`` in a tar, the same bytes for the same module."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("plugin.wasm")
        info.size, info.mode, info.mtime, info.uid, info.gid = len(module), 0o644, 0, 0, 0
        tar.addfile(info, io.BytesIO(module))
    return raw.getvalue()


def files(variant: str, module: Path, runtime: dict[str, Any], workdir: Path) -> ImageFiles:
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "runtime-config.json"
    config_path.write_text(json.dumps(runtime))
    if variant == "oci":
        return ImageFiles((config_path, CONFIG_MEDIA_TYPE),
                          [(config_path, CONFIG_MEDIA_TYPE), (module, CONTENT_MEDIA_TYPE)], {})
    tar = plugin_tar(module.read_bytes())
    layer = workdir / "plugin.tar.gz"
    layer.write_bytes(gzip.compress(tar, compresslevel=9, mtime=0))
    image_config = workdir / "image-config.json"
    image_config.write_text(json.dumps({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(tar).hexdigest()]},
    }))
    return ImageFiles((image_config, OCI_CONFIG_MEDIA_TYPE), [(layer, TAR_GZIP_MEDIA_TYPE)],
                      {VARIANT_ANNOTATION: "compat"})
