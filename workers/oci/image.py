"""WASM module images in the layouts proxies pull, built in memory and described on reading.

``compat`` (the default): a plain OCI image, an image config for linux/amd64 and one
``application/vnd.oci.image.layer.v1.tar+gzip`` layer holding ``plugin.wasm``.  Istio's
fetcher extracts it, and podman, skopeo and crane can pull it.  ``oci``: the solo.io variant
(wasme, WebAssembly Hub, Gloo): config ``application/vnd.module.wasm.config.v1+json`` (the
runtime config) and exactly two layers, that config and the raw module.

Every blob is deterministic (the tar has fixed owner, mode and time; gzip has no timestamp), so
an unchanged module makes unchanged blobs and a re-push uploads nothing.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass, field
from typing import Any

CONFIG_MEDIA_TYPE = "application/vnd.module.wasm.config.v1+json"
CONTENT_MEDIA_TYPE = "application/vnd.module.wasm.content.layer.v1+wasm"
OCI_CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
TAR_GZIP_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_LAYER_MEDIA_TYPE = "application/vnd.docker.image.rootfs.diff.tar.gzip"
VARIANT_ANNOTATION = "module.wasm.image/variant"
ABI_ANNOTATION = "module.wasm.runtime/abi_version"  # as wasme wrote it
TYPE_ANNOTATION = "module.wasm.runtime/type"
ROOT_IDS_ANNOTATION = "io.wasmbot.root-ids"
TITLE_ANNOTATION = "org.opencontainers.image.title"
VARIANTS = ("compat", "oci")
WASM_MAGIC = b"\0asm"


@dataclass(frozen=True)
class Blob:
    media_type: str
    data: bytes
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()

    def descriptor(self) -> dict[str, Any]:
        desc: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": len(self.data)}
        if self.annotations:
            desc["annotations"] = self.annotations
        return desc


@dataclass(frozen=True)
class Image:
    variant: str
    config: Blob
    layers: list[Blob]
    annotations: dict[str, str]

    def manifest(self) -> bytes:
        """The manifest's bytes; their sha256 is the digest Istio's ``sha256`` field pins."""
        body: dict[str, Any] = {"schemaVersion": 2, "mediaType": MANIFEST_MEDIA_TYPE,
                                "config": self.config.descriptor(),
                                "layers": [layer.descriptor() for layer in self.layers]}
        if self.annotations:
            body["annotations"] = dict(sorted(self.annotations.items()))
        return json.dumps(body, separators=(",", ":")).encode()

    @property
    def size(self) -> int:
        return len(self.config.data) + sum(len(layer.data) for layer in self.layers)


@dataclass(frozen=True)
class Runtime:
    """What a proxy needs to know before loading the module."""

    abi_versions: list[str]
    root_ids: list[str]

    def config(self) -> dict[str, Any]:
        """The solo.io runtime config, in the spelling of the spec's table."""
        return {"type": "envoy_proxy", "abiVersions": self.abi_versions, "config": {"rootIds": self.root_ids}}

    def annotations(self) -> dict[str, str]:
        return {TYPE_ANNOTATION: "envoy_proxy", ABI_ANNOTATION: ",".join(self.abi_versions),
                ROOT_IDS_ANNOTATION: ",".join(self.root_ids)}


def read_runtime(config: dict[str, Any]) -> Runtime:
    """Read a runtime config in either spelling the seed spec uses (``abiVersions``/``rootIds`` in
    its table, ``abi_version``/``root_ids`` in its prose example)."""
    abi = config.get("abiVersions", config.get("abi_versions", config.get("abi_version", [])))
    inner = config.get("config")
    inner = inner if isinstance(inner, dict) else {}
    roots = inner.get("rootIds", inner.get("root_ids", config.get("rootIds", config.get("root_ids", []))))
    return Runtime(_strings(abi), _strings(roots))


def runtime_from_annotations(annotations: dict[str, str]) -> Runtime:
    return Runtime(_split(annotations.get(ABI_ANNOTATION, "")),
                   _split(annotations.get(ROOT_IDS_ANNOTATION, "")))


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return _split(value)
    return [str(item) for item in value] if isinstance(value, list) else []


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def plugin_tar(module: bytes) -> bytes:
    """``plugin.wasm`` in a tar, the same bytes for the same module."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("plugin.wasm")
        info.size, info.mode, info.mtime, info.uid, info.gid = len(module), 0o644, 0, 0, 0
        tar.addfile(info, io.BytesIO(module))
    return raw.getvalue()


def build(variant: str, module: bytes, runtime: Runtime, annotations: dict[str, str]) -> Image:
    """The image of ``module`` in ``variant``; ``annotations`` go on the manifest."""
    if not module.startswith(WASM_MAGIC):
        raise ValueError("the module does not start with \\0asm: it is not a WebAssembly binary")
    annotations = annotations | runtime.annotations()
    if variant == "oci":
        config = Blob(CONFIG_MEDIA_TYPE, json.dumps(runtime.config(), separators=(",", ":")).encode())
        return Image(variant, config, [
            Blob(CONFIG_MEDIA_TYPE, config.data, {TITLE_ANNOTATION: "runtime-config.json"}),
            Blob(CONTENT_MEDIA_TYPE, module, {TITLE_ANNOTATION: "plugin.wasm"})], annotations)
    if variant != "compat":
        raise ValueError(f"unknown image variant {variant!r}: choose one of {', '.join(VARIANTS)}")
    tar = plugin_tar(module)
    layer = Blob(TAR_GZIP_MEDIA_TYPE, gzip.compress(tar, compresslevel=9, mtime=0))
    labels = {key: annotations[key] for key in runtime.annotations()}
    image_config = {"architecture": "amd64", "os": "linux", "config": {"Labels": labels},
                    "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(tar).hexdigest()]}}
    config = Blob(OCI_CONFIG_MEDIA_TYPE, json.dumps(image_config, separators=(",", ":")).encode())
    return Image(variant, config, [layer], annotations | {VARIANT_ANNOTATION: "compat"})


class UnsupportedImage(ValueError):
    """A manifest no proxy would load a module from; the message says why."""


def variant_of(manifest: dict[str, Any], media_type: str) -> str:
    """Which layout ``manifest`` is, by the rules of Istio's image fetcher, in its order:
    a Docker v2 image or the compat variant (last layer a tar.gz holding plugin.wasm), else the
    solo.io variant (exactly two layers, one of them the raw module)."""
    layers = manifest.get("layers") or []
    if not layers:
        raise UnsupportedImage("the manifest has no layers")
    kind = manifest.get("mediaType") or media_type
    last = layers[-1].get("mediaType")
    if kind == DOCKER_MANIFEST_MEDIA_TYPE:
        if last != DOCKER_LAYER_MEDIA_TYPE:
            raise UnsupportedImage(f"a Docker image's last layer must be {DOCKER_LAYER_MEDIA_TYPE}, "
                                   f"not {last}")
        return "docker"
    if last == TAR_GZIP_MEDIA_TYPE:
        return "compat"
    if len(layers) == 2 and sum(layer.get("mediaType") == CONTENT_MEDIA_TYPE for layer in layers) == 1:
        return "oci"
    raise UnsupportedImage(
        f"not a WASM module image: the last layer is {last} and there are {len(layers)} layers; "
        f"expected a last layer of {TAR_GZIP_MEDIA_TYPE} holding plugin.wasm, or exactly two "
        f"layers, one {CONTENT_MEDIA_TYPE}")


def module_layer(manifest: dict[str, Any], variant: str) -> dict[str, Any]:
    layers: list[dict[str, Any]] = manifest["layers"]
    if variant == "oci":
        return next(layer for layer in layers if layer.get("mediaType") == CONTENT_MEDIA_TYPE)
    return layers[-1]


def plugin_from_tar(fileobj: Any, limit: int) -> bytes:
    """``plugin.wasm`` from a tar+gzip layer, as Istio's fetcher extracts it."""
    try:
        with tarfile.open(fileobj=fileobj, mode="r:gz") as tar:
            for member in tar:
                if member.name.lstrip("./") == "plugin.wasm" and member.isfile():
                    if member.size > limit:
                        raise UnsupportedImage(f"plugin.wasm is {member.size} bytes, over the "
                                               f"{limit}-byte limit")
                    extracted = tar.extractfile(member)
                    assert extracted is not None
                    return extracted.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise UnsupportedImage(f"the module layer is not a readable tar.gz: {exc}") from None
    raise UnsupportedImage("the module layer has no plugin.wasm")
