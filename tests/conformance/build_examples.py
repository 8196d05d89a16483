"""Build the upstream SDK examples under tests/conformance once per source hash.

``python3 tests/conformance/build_examples.py`` prints each example's module.  The SDKs come from their
registries (the Go SDK from the Go module proxy, the Rust crate ``proxy-wasm`` from crates.io,
``@solo-io/proxy-runtime`` from npm); the examples' own sources are copied from the SDKs'
repositories (README.md says which commit), because none of the published packages ships them.

Modules are kept in ``~/.cache/wasmbot/conformance/<sdk>-<hash>/``, where the hash covers the
SDK folder's sources (not its wasm-tests.yaml files), this builder and the toolchain's version:
a second run builds nothing.  Each SDK's examples build in one go (one ``go build`` loop sharing
Go's build cache, one cargo workspace, one npm install), which the 2-core CI machine needs.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "wasmbot" / "conformance"
SKIP = {"node_modules", "target", "build", "__pycache__", "wasm-tests.yaml"}
SDKS = ("go", "rust", "assemblyscript")
KEEP = 3  # builds kept per SDK: a few branches side by side do not rebuild each other's


def examples(sdk: str) -> list[str]:
    """The example names of ``sdk``: every folder below it with a source entry point."""
    entry, depth = {"go": ("main.go", 1), "rust": ("src/lib.rs", 2),
                    "assemblyscript": ("assembly/index.ts", 2)}[sdk]
    folder = HERE / sdk
    return sorted(str(p.parents[depth - 1].relative_to(folder)) for p in folder.rglob(entry)
                  if not SKIP & set(p.relative_to(folder).parts))


def _run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    proc = subprocess.run(argv, cwd=cwd, env=os.environ | (env or {}), capture_output=True, text=True,
                          timeout=1800, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed in {cwd}:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")


def _output(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=600).stdout.strip()


def _rust_bin() -> Path:
    """The toolchain with the wasm32-wasip1 target that deploy/tools/rust-wasm.sh installs."""
    return Path(_output(["bash", str(ROOT / "deploy" / "tools" / "rust-wasm.sh")]))


def _toolchain(sdk: str) -> str:
    if sdk == "go":
        return _output(["go", "env", "GOVERSION"])
    if sdk == "rust":
        return _output([str(_rust_bin() / "rustc"), "--version"])
    return _output(["node", "--version"])  # asc and proxy-runtime are pinned by package-lock.json


def source_hash(sdk: str) -> str:
    digest = hashlib.sha256(Path(__file__).read_bytes())
    digest.update(_toolchain(sdk).encode())
    folder = HERE / sdk
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder)
        if not SKIP & set(rel.parts):
            digest.update(f"\0{rel}\0".encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def _build_go(out: Path) -> None:
    for name in examples("go"):
        _run(["go", "build", "-buildmode=c-shared", "-o", str(out / f"{name.replace('/', '-')}.wasm"),
              f"./{name}"], HERE / "go", {"GOOS": "wasip1", "GOARCH": "wasm"})


def _build_rust(out: Path) -> None:
    bin_dir = _rust_bin()
    target = CACHE / "cargo-target"  # cargo's own incremental cache, shared across source hashes
    _run([str(bin_dir / "cargo"), "build", "--locked", "--release", "--target", "wasm32-wasip1",
          "--workspace"], HERE / "rust",
         {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "RUSTC": str(bin_dir / "rustc"),
          "CARGO_TARGET_DIR": str(target)})
    for name in examples("rust"):
        shutil.copy(target / "wasm32-wasip1" / "release" / f"proxy_wasm_example_{name}.wasm", out / f"{name}.wasm")


def _build_assemblyscript(out: Path) -> None:
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        work = Path(tmp) / "src"
        shutil.copytree(HERE / "assemblyscript", work, ignore=shutil.ignore_patterns(*SKIP))
        _run(["npm", "ci", "--no-audit", "--no-fund"], work)
        for name in examples("assemblyscript"):
            _run(["npx", "asc", f"{name}/assembly/index.ts", "-b", str(out / f"{name}.wasm"),
                  "--use", "abort=abort_proc_exit", "--optimize"], work)


BUILDERS: dict[str, Callable[[Path], None]] = {
    "go": _build_go, "rust": _build_rust, "assemblyscript": _build_assemblyscript}


def _prune(sdk: str, keep: int = KEEP) -> None:
    """Drop all but the ``keep`` builds of ``sdk`` used last (other checkouts may use older ones)."""
    builds = sorted((p for p in CACHE.glob(f"{sdk}-*") if re.fullmatch(rf"{sdk}-[0-9a-f]{{16}}", p.name)),
                    key=lambda p: p.stat().st_mtime, reverse=True)
    stale = [p for p in CACHE.glob(f"{sdk}-partial-*") if time.time() - p.stat().st_mtime > 3600]
    for old in builds[keep:] + stale:  # stale: left by a build that was killed
        shutil.rmtree(old, ignore_errors=True)


def build(sdk: str) -> dict[str, Path]:
    """Every example module of ``sdk`` by name, built unless this source hash is cached."""
    CACHE.mkdir(parents=True, exist_ok=True)
    done = CACHE / f"{sdk}-{source_hash(sdk)}"
    if not done.is_dir():
        partial = Path(tempfile.mkdtemp(prefix=f"{sdk}-partial-", dir=CACHE))
        try:
            BUILDERS[sdk](partial)
            try:
                partial.rename(done)  # whole or not at all: a killed build leaves no half entry
            except OSError:
                if not done.is_dir():  # else another session finished the same build first
                    raise
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        _prune(sdk)
    os.utime(done)  # pruning keeps the builds used last
    return {name: done / f"{name.replace('/', '-')}.wasm" for name in examples(sdk)}


if __name__ == "__main__":
    for sdk in sys.argv[1:] or SDKS:
        for name, path in build(sdk).items():
            print(f"{sdk}/{name}\t{path}")
