"""The compat layer's module is chosen exactly as Istio's fetcher chooses it (issue 20, defect 1).

Every archive in the table is fed both to wasmbot's ``plugin_from_tar`` and to Istio's own
``extractWasmPluginBinary`` (copied verbatim into tests/testdata/istio_tar/main.go and built with
Go, with the check Istio's cache makes of what it returns): both must load the same bytes or
both refuse, and the table says which.  tests/test_oci_conformance.py feeds the same archives,
through a registry, to Istio's fetcher itself at the version deploy/tools/istio-fetch pins.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import subprocess
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from ocihelp import built, client, host_of, module_bytes

from bot.localservices import Service
from workers.oci import image, reference
from workers.oci.image import UnsupportedImage, is_wasm, plugin_from_tar
from workers.oci.pull import pull
from workers.oci.push import push
from workers.oci.store import Store

ORACLE = Path(__file__).parent / "testdata" / "istio_tar" / "main.go"
LIMIT = 4096
WASM = b"\0asm\1\0\0\0"


@dataclass(frozen=True)
class Entry:
    name: str
    data: bytes = b""
    type: bytes = tarfile.REGTYPE
    link: str = ""


def tar_of(entries: list[Entry], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=fmt) as tar:
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.type, info.linkname = entry.type, entry.link
            info.size = len(entry.data)
            tar.addfile(info, io.BytesIO(entry.data) if entry.data else None)
    return raw.getvalue()


def pax_global_first() -> bytes:
    """A pax global header named plugin.wasm, then a real d/plugin.wasm."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        records = b"16 comment=text\n"
        info = tarfile.TarInfo("plugin.wasm")
        info.type, info.size = tarfile.XGLTYPE, len(records)
        tar.addfile(info, io.BytesIO(records))
        info = tarfile.TarInfo("d/plugin.wasm")
        info.size = len(WASM)
        tar.addfile(info, io.BytesIO(WASM))
    return gzip.compress(raw.getvalue(), mtime=0)


def layer(*entries: Entry, fmt: int = tarfile.PAX_FORMAT) -> bytes:
    return gzip.compress(tar_of(list(entries), fmt), mtime=0)


def truncated() -> bytes:
    whole = layer(Entry("plugin.wasm", WASM * 64))
    return whole[:len(whole) // 2]


# (case, the layer's bytes, what both must take or None when both refuse)
CASES: list[tuple[str, Callable[[], bytes], bytes | None]] = [
    ("plain", lambda: layer(Entry("plugin.wasm", WASM)), WASM),
    ("dot-slash", lambda: layer(Entry("./plugin.wasm", WASM)), WASM),
    ("in a directory", lambda: layer(Entry("d/plugin.wasm", WASM)), WASM),
    ("deep directory", lambda: layer(Entry("a/b/c/plugin.wasm", WASM)), WASM),
    ("parent directory", lambda: layer(Entry("../plugin.wasm", WASM)), WASM),
    ("absolute", lambda: layer(Entry("/etc/plugin.wasm", WASM)), WASM),
    ("pax long name", lambda: layer(Entry("d" * 150 + "/" + "e" * 60 + "/plugin.wasm", WASM)), WASM),
    ("gnu long name", lambda: layer(Entry("d" * 150 + "/plugin.wasm", WASM), fmt=tarfile.GNU_FORMAT), WASM),
    ("first of two matches", lambda: layer(Entry("a/plugin.wasm", WASM), Entry("plugin.wasm", b"second")), WASM),
    ("after other files", lambda: layer(Entry("README", b"x" * 700), Entry("d/", type=tarfile.DIRTYPE),
                                        Entry("d/plugin.wasm", WASM)), WASM),
    ("empty plugin.wasm", lambda: layer(Entry("plugin.wasm")), None),
    ("only the magic", lambda: layer(Entry("plugin.wasm", b"\0asm")), None),
    ("not WebAssembly", lambda: layer(Entry("plugin.wasm", b"#!/bin/sh\nexit 0\n")), None),
    ("regular file with a trailing slash", lambda: layer(Entry("d/plugin.wasm/", WASM)), WASM),
    ("unknown entry type", lambda: layer(Entry("plugin.wasm", WASM, type=b"Z")), WASM),
    ("pax global header named plugin.wasm", pax_global_first, None),
    ("hidden file", lambda: layer(Entry(".plugin.wasm", WASM)), None),
    ("other suffix", lambda: layer(Entry("plugin.wasm.txt", WASM), Entry("xplugin.wasm", WASM)), None),
    ("other case", lambda: layer(Entry("Plugin.WASM", WASM)), None),
    ("backslash is not a separator", lambda: layer(Entry("d\\plugin.wasm", WASM)), None),
    ("directory named plugin.wasm first", lambda: layer(Entry("plugin.wasm/", type=tarfile.DIRTYPE),
                                                        Entry("plugin.wasm/plugin.wasm", WASM)), None),
    ("symbolic link", lambda: layer(Entry("real.wasm", WASM),
                                    Entry("plugin.wasm", type=tarfile.SYMTYPE, link="real.wasm")), None),
    ("hard link", lambda: layer(Entry("real.wasm", WASM),
                                Entry("plugin.wasm", type=tarfile.LNKTYPE, link="real.wasm")), None),
    ("fifo", lambda: layer(Entry("plugin.wasm", type=tarfile.FIFOTYPE), Entry("d/plugin.wasm", WASM)), None),
    ("over the limit", lambda: layer(Entry("plugin.wasm", WASM * (LIMIT // len(WASM)))), None),
    ("pushed over the limit by earlier files", lambda: layer(Entry("big", b"x" * (LIMIT - 1024)),
                                                             Entry("plugin.wasm", WASM * 100)), None),
    ("no match", lambda: layer(Entry("module.wasm", WASM)), None),
    ("empty archive", lambda: layer(), None),
    ("empty layer", lambda: b"", None),
    ("gzip of nothing", lambda: gzip.compress(b"", mtime=0), None),
    ("not gzip", lambda: tar_of([Entry("plugin.wasm", WASM)]), None),
    ("truncated", truncated, None),
]


@pytest.fixture(scope="module")
def istio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    binary = tmp_path_factory.mktemp("istio") / "istio_tar"
    subprocess.run(["go", "build", "-o", str(binary), str(ORACLE)], check=True, capture_output=True)
    return binary


def wasmbot_pick(data: bytes) -> bytes | None:
    """What ``wasmbot pull`` keeps: the chosen entry, if it is WebAssembly."""
    try:
        module = plugin_from_tar(io.BytesIO(data), LIMIT)
    except UnsupportedImage:
        return None
    return module if is_wasm(module) else None


def istio_pick(binary: Path, data: bytes, tmp_path: Path) -> bytes | None:
    path = tmp_path / "layer.tar.gz"
    path.write_bytes(data)
    run = subprocess.run([str(binary), str(LIMIT), str(path)], capture_output=True)
    assert run.returncode in (0, 1), run.stderr
    return run.stdout if run.returncode == 0 else None


@pytest.mark.parametrize(("case", "make", "expected"), CASES, ids=[case for case, _, _ in CASES])
def test_same_entry_as_istio(case: str, make: Callable[[], bytes], expected: bytes | None,
                             istio: Path, tmp_path: Path) -> None:
    data = make()
    assert istio_pick(istio, data, tmp_path) == expected, "the table disagrees with Istio's own code"
    assert wasmbot_pick(data) == expected


def test_nothing_is_written_by_the_entry_path(tmp_path: Path) -> None:
    """Entries are read by base name, never extracted to their own path."""
    before = set(Path.cwd().parent.iterdir()) | set(tmp_path.iterdir())
    assert plugin_from_tar(io.BytesIO(layer(Entry("../plugin.wasm", WASM))), LIMIT) == WASM
    assert set(Path.cwd().parent.iterdir()) | set(tmp_path.iterdir()) == before


def test_the_limit_stops_decompression() -> None:
    """A gzip bomb is decompressed no further than the limit, and the refusal names the limit."""
    bomb = io.BytesIO(layer(Entry("padding", bytes(64 * 2**20)), Entry("plugin.wasm", WASM)))
    with pytest.raises(UnsupportedImage, match=f"no plugin.wasm within the {LIMIT}-byte limit"):
        plugin_from_tar(bomb, LIMIT)
    assert bomb.tell() < len(bomb.getvalue()) // 4


def test_no_plugin_wasm_is_not_reported_as_one_cut_by_the_limit() -> None:
    """A layer without plugin.wasm is refused as such, also when the reader stopped at the limit
    (Python's tarfile pads an archive to 10 KiB, past the 4 KiB limit here)."""
    for data in (layer(Entry("module.wasm", WASM)), layer(Entry("big", b"x" * LIMIT), Entry("plugin.wasm", WASM))):
        with pytest.raises(UnsupportedImage, match=f"^the module layer's tar has no plugin.wasm within the "
                                                   f"{LIMIT}-byte limit$"):
            plugin_from_tar(io.BytesIO(data), LIMIT)
    with pytest.raises(UnsupportedImage, match=f"plugin.wasm goes past the {LIMIT}-byte limit"):
        plugin_from_tar(io.BytesIO(layer(Entry("plugin.wasm", WASM * LIMIT))), LIMIT)


def test_pull_takes_the_first_plugin_wasm_in_any_directory(registry: Service, tmp_path: Path) -> None:
    """Through a real registry: ``d/plugin.wasm`` before ``plugin.wasm`` is the one pulled."""
    first, second = module_bytes(padding=10), module_bytes(padding=20)
    built_image = built("compat", first)
    tar = tar_of([Entry("d/plugin.wasm", first), Entry("plugin.wasm", second)])
    layers = [image.Blob(image.TAR_GZIP_MEDIA_TYPE, gzip.compress(tar, mtime=0))]
    target = reference.parse(f"{host_of(registry)}/tar-entry/add-header:v1")
    push(client(registry, tmp_path), target, dataclasses.replace(built_image, layers=layers))
    got = pull(client(registry, tmp_path), target, Store(tmp_path / "store"), LIMIT * 64)
    assert got.module == first
