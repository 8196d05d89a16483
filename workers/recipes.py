"""How each language is built: its toolchain image, its dependency fetch and its compile step.

Both phases run in the language's toolchain container.  The fetch phase (only for languages
with a lock file) may use the network and writes only ``/deps``, a cache directory keyed by
the lock file; the compile phase has no network, reads ``/src`` and ``/deps`` and writes only
``/out``.  Each step is a POSIX shell script so a recipe reads like what an engineer would type.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Recipe:
    lang: str
    toolchain: str  # deploy/toolchains/<toolchain>
    compile: str
    fetch: str | None = None
    lockfile: str | None = None  # keys the dependency cache; required when there is a fetch
    env: dict[str, str] = field(default_factory=dict)
    summary: str = ""


_C_FLAGS = "--target=wasm32-wasi -O2 -mexec-model=reactor -I/src"
_AS_COPY = "/tmp/w"  # asc writes beside its sources, so AssemblyScript builds a copy
# Where a build's container sees the source; its output names files relative to these.
CONTAINER_SOURCES = ("/src", _AS_COPY)

RECIPES: dict[str, Recipe] = {r.lang: r for r in (
    # Sources as ./NAME: a tree's file name (``-B.c``) must never read as an option.
    Recipe("c", "c", f"exec clang {_C_FLAGS} -o /out/filter.wasm ./*.c",
           summary="clang --target=wasm32-wasi with wasi-libc"),
    Recipe("cpp", "cpp",
           # The proxy-wasm C++ SDK, where the image has it (PROXY_WASM_CPP_SDK), is compiled in.
           'set -e; set --; for f in ./*.cc ./*.cpp; do if [ -f "$f" ]; then set -- "$@" "$f"; fi; done; '
           'sdk=""; if [ -n "${PROXY_WASM_CPP_SDK:-}" ]; then '
           'sdk="-I$PROXY_WASM_CPP_SDK $PROXY_WASM_CPP_SDK/proxy_wasm_intrinsics.cc"; '
           'elif grep -qs -e proxy_wasm_intrinsics.h -- "$@"; then echo "error: the source uses the '
           'proxy-wasm C++ SDK but this toolchain image has none (PROXY_WASM_CPP_SDK is unset); build '
           'deploy/toolchains/cpp/Containerfile, which adds it, and set toolchain_images.cpp" >&2; '
           'exit 2; fi; '
           f"exec clang++ {_C_FLAGS} -std=c++17 -fno-exceptions -Wl,--export-dynamic $sdk "
           '-o /out/filter.wasm "$@"',
           summary="clang++ --target=wasm32-wasi with libc++ (and the proxy-wasm C++ SDK)"),
    Recipe("go", "go",
           "exec go build -buildmode=c-shared -trimpath -o /out/filter.wasm .",
           fetch="exec go mod download", lockfile="go.sum",
           env={"GOMODCACHE": "/deps/gomod", "GOCACHE": "/tmp/gocache", "GOOS": "wasip1",
                "GOARCH": "wasm", "GOFLAGS": "-mod=readonly -buildvcs=false"},
           summary="Go (GOOS=wasip1 GOARCH=wasm, -buildmode=c-shared) with the proxy-wasm Go SDK"),
    Recipe("tinygo", "tinygo",
           "exec tinygo build -o /out/filter.wasm -scheduler=none -target=wasi .",
           fetch="exec go mod download", lockfile="go.sum",
           env={"GOMODCACHE": "/deps/gomod", "GOCACHE": "/tmp/gocache", "GOFLAGS": "-mod=readonly"},
           summary="TinyGo (-target=wasi) with the tetratelabs proxy-wasm Go SDK"),
    Recipe("rust", "rust",
           "set -e; cargo build --offline --locked --release --target wasm32-wasip1 "
           "--target-dir /tmp/target; "
           "set -- /tmp/target/wasm32-wasip1/release/*.wasm; cp \"$1\" /out/filter.wasm",
           fetch="exec cargo fetch --locked", lockfile="Cargo.lock",
           env={"CARGO_HOME": "/deps/cargo"},
           summary="cargo build --target wasm32-wasip1 with the proxy-wasm crate"),
    Recipe("assemblyscript", "assemblyscript",
           f"set -e; cp -R /src {_AS_COPY}; rm -rf {_AS_COPY}/node_modules; ln -s /deps/node_modules "
           f"{_AS_COPY}/node_modules; cd {_AS_COPY}; npm run --silent asbuild; cp build/filter.wasm "
           "/out/filter.wasm",
           fetch="set -e; cp /src/package.json /src/package-lock.json /deps/; cd /deps; "
                 "exec npm ci --ignore-scripts --no-audit --no-fund",
           lockfile="package-lock.json", env={"npm_config_cache": "/tmp/npm-cache"},
           summary="asc (AssemblyScript 0.14) with @solo-io/proxy-runtime, via npm run asbuild"),
)}
PRECOMPILED = "wasm"
LANGUAGES = (*RECIPES, PRECOMPILED)


class DetectError(Exception):
    """The source tree's language cannot be told; the message says what was looked for."""


def _package_uses_assemblyscript(path: Path) -> bool:
    try:
        text = path.read_text()
    except OSError:
        return False
    return "assemblyscript" in text or "@solo-io/proxy-runtime" in text


def detect(source: Path) -> str:
    """The language of a source tree, from the files its build tool needs."""
    found = []
    if (source / "Cargo.toml").is_file():
        found.append("rust")
    if (source / "go.mod").is_file():
        found.append("go")
    if (source / "package.json").is_file() and _package_uses_assemblyscript(source / "package.json"):
        found.append("assemblyscript")
    if not found:
        if any(next(source.glob(pattern), None) for pattern in ("*.cc", "*.cpp")):
            found.append("cpp")
        elif any(source.glob("*.c")):
            found.append("c")
        elif list(source.glob("*.wasm")):
            found.append(PRECOMPILED)
    if len(found) == 1:
        return found[0]
    if found:
        raise DetectError(f"the source looks like {' and '.join(found)}; say which with --lang or "
                          "`lang:` in .wasmbot.yaml")
    raise DetectError("cannot tell the language: expected Cargo.toml (Rust), go.mod (Go), "
                      "package.json with AssemblyScript, *.cc/*.cpp (C++), *.c (C) or a "
                      "precompiled *.wasm; or set --lang / `lang:` in .wasmbot.yaml")
