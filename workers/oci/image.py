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

import functools
import gzip
import hashlib
import io
import json
import posixpath
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

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

    @functools.cached_property
    def digest(self) -> str:  # computed once: a push reads it for the manifest, the HEAD and the upload
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


@dataclass(frozen=True)
class CompatLayer:
    data: bytes  # the tar.gz blob
    diff_id: str  # the sha256 of the tar inside, which the image config lists


def compat_layer(module: bytes) -> CompatLayer:
    """The compat variant's layer: gzip at its default level 6 (on a real filter level 9 took 2.5
    times as long to save 0.1%), with no name and mtime 0 in the header, so the same module always makes
    the same blob.  workers/oci/layercache.py keeps it by module digest."""
    tar = plugin_tar(module)
    return CompatLayer(gzip.compress(tar, compresslevel=6, mtime=0),
                       "sha256:" + hashlib.sha256(tar).hexdigest())


def build(variant: str, module: bytes, runtime: Runtime, annotations: dict[str, str],
          layer_of: Callable[[bytes], CompatLayer] = compat_layer) -> Image:
    """The image of ``module`` in ``variant``; ``annotations`` go on the manifest; ``layer_of``
    makes the compat layer (``LayerCache.compat_layer`` reuses one)."""
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
    made = layer_of(module)
    layer = Blob(TAR_GZIP_MEDIA_TYPE, made.data)
    labels = {key: annotations[key] for key in runtime.annotations()}
    image_config = {"architecture": "amd64", "os": "linux", "config": {"Labels": labels},
                    "rootfs": {"type": "layers", "diff_ids": [made.diff_id]}}
    config = Blob(OCI_CONFIG_MEDIA_TYPE, json.dumps(image_config, separators=(",", ":")).encode())
    return Image(variant, config, [layer], annotations | {VARIANT_ANNOTATION: "compat"})


def is_wasm(module: bytes) -> bool:
    """A WebAssembly header (magic and version), the check Istio's cache makes before loading
    (``isValidWasmBinary`` in ``pkg/wasm/cache.go``)."""
    return len(module) >= 8 and module.startswith(WASM_MAGIC)


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


# Tar entry types that carry no data: Go's archive/tar reads zero bytes from them, so Istio's
# fetcher gets no module from one (a short read, or an empty file that is not WebAssembly).
_HEADER_ONLY_TYPES = {tarfile.LNKTYPE: "hard link", tarfile.SYMTYPE: "symbolic link",
                      tarfile.CHRTYPE: "character device", tarfile.BLKTYPE: "block device",
                      tarfile.DIRTYPE: "directory", tarfile.FIFOTYPE: "FIFO"}


def _is_plugin(name: str) -> bool:
    """Go's ``filepath.Base(name) == "plugin.wasm"`` on Linux."""
    return posixpath.basename(name.rstrip("/")) == "plugin.wasm"


class _GlobalHeaderMatch(Exception):
    """A pax global header named plugin.wasm: Go's archive/tar returns it as an (empty) entry."""


class _TarEntry(tarfile.TarInfo):
    """Python's tarfile folds pax global headers into the archive; Go's reader returns each one as
    an entry, so Istio can match one by name.  Seeing every raw header here keeps that visible."""

    @classmethod
    def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> _TarEntry:
        entry = super().frombuf(buf, encoding, errors)
        if entry.type == tarfile.XGLTYPE and _is_plugin(entry.name):
            raise _GlobalHeaderMatch(entry.name)
        return entry


class _Capped(io.RawIOBase):
    """At most ``left`` bytes of ``raw``, then end of file: Go's ``io.LimitReader``."""

    def __init__(self, raw: io.BufferedIOBase, left: int) -> None:
        self.raw, self.left = raw, left

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.raw.read(min(len(buffer), self.left))
        self.left -= len(data)
        buffer[:len(data)] = data
        return len(data)


def plugin_from_tar(fileobj: IO[bytes], limit: int) -> bytes:
    """The module in a compat layer, chosen exactly as Istio's fetcher chooses it.

    Istio (``pkg/wasm/imagefetcher.go``, ``extractWasmPluginBinary``) gunzips the layer, reads
    at most ``limit`` bytes of the tar stream (``MaxWasmBinarySizeBytes``) and returns the data
    of the FIRST entry whose ``filepath.Base`` is ``plugin.wasm``, in any directory and of any
    entry type (``d/plugin.wasm``, ``./plugin.wasm``, ``../plugin.wasm``, a directory
    ``plugin.wasm/``); later entries are never looked at.  Nothing is written to disk, so an
    entry's path never matters beyond its base name.  A match that carries no data (link,
    directory, device) or does not fit under the limit yields no module there, so it is refused
    here rather than passed over for a later entry.
    """
    stream = _Capped(gzip.GzipFile(fileobj=fileobj, mode="rb"), limit)
    # tarfile reads ahead, so a reader at the limit may or may not have seen the archive's end:
    # either way there is no plugin.wasm in the part Istio reads.
    none_within = f"the module layer's tar has no plugin.wasm within the {limit}-byte limit"
    try:
        with tarfile.open(fileobj=stream, mode="r|", tarinfo=_TarEntry) as tar:
            for member in tar:
                if not _is_plugin(member.name):
                    continue
                if member.type in _HEADER_ONLY_TYPES:
                    raise UnsupportedImage(f"{member.name} in the module layer is a "
                                           f"{_HEADER_ONLY_TYPES[member.type]}, not a file")
                if member.offset_data + member.size > limit:
                    raise UnsupportedImage(f"the module layer's {member.name} goes past the "
                                           f"{limit}-byte limit")
                extracted = tar.extractfile(member)
                assert extracted is not None
                return extracted.read()
    except _GlobalHeaderMatch as match:
        raise UnsupportedImage(f"{match} in the module layer is a pax global header, not a file") from None
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        if stream.left == 0:
            raise UnsupportedImage(none_within) from None
        raise UnsupportedImage(f"the module layer is not a readable tar.gz: {exc}") from None
    if stream.left == 0:
        raise UnsupportedImage(none_within)
    raise UnsupportedImage("the module layer has no entry named plugin.wasm")
