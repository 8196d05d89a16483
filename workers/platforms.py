"""Which ABI versions each platform runs, and which SDK versions target them: one table.

``/wasm init`` picks SDK versions from here and refuses a combination that cannot work,
naming the ones that would.  Envoy versions per platform release come from the platforms'
release notes (Istio ships one Envoy minor per minor; Gloo Edge ships envoy-gloo).
"""

from __future__ import annotations

from dataclasses import dataclass, field

ALL_ABIS = ("0.1.0", "0.2.0", "0.2.1")


@dataclass(frozen=True)
class Release:
    platform: str
    version: str
    envoy: tuple[int, int]
    abi_versions: tuple[str, ...] = ALL_ABIS  # every Envoy since 1.17 loads all three


def _envoy(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


PLATFORMS: dict[str, list[Release]] = {
    "istio": [Release("istio", f"1.{m}", (1, m + 8)) for m in range(20, 29)],  # 1.20 -> Envoy 1.28
    "gloo": [Release("gloo", "1.17", (1, 29)), Release("gloo", "1.18", (1, 31))],
    "envoy": [Release("envoy", f"1.{m}", (1, m)) for m in range(28, 41)],
}
DEFAULT_VERSION = {"istio": "1.28", "gloo": "1.18", "envoy": "1.40"}


@dataclass(frozen=True)
class Sdk:
    lang: str
    package: str
    version: str
    abi_version: str
    min_envoy: tuple[int, int] = (1, 17)
    extra: dict[str, str] = field(default_factory=dict)  # other pinned versions the template uses
    note: str = ""


SDKS: dict[str, Sdk] = {s.lang: s for s in (
    Sdk("assemblyscript", "@solo-io/proxy-runtime", "0.1.8", "0.2.0",
        extra={"assemblyscript": "0.14.13"},
        note="proxy-runtime 0.1.8 builds with the AssemblyScript 0.14 line it declares"),
    Sdk("go", "github.com/proxy-wasm/proxy-wasm-go-sdk", "v0.0.0-20260105142703-44c7d5847745", "0.2.0",
        min_envoy=(1, 33), extra={"go": "1.24"},
        note="standard Go wasip1 reactors need the host imports added in Envoy 1.33"),
    Sdk("rust", "proxy-wasm", "0.2.5", "0.2.1", extra={"rust": "1.95.0"}),
    Sdk("cpp", "proxy-wasm-cpp-sdk", "e5256b0c5463ea9961965ad5de3e379e00486640", "0.2.1",
        note="the commit Envoy pins; built into the cpp toolchain image"),
)}


class PlatformError(ValueError):
    """An unknown platform or version, or one the language's SDK cannot target."""


def release(platform: str, version: str | None = None) -> Release:
    releases = PLATFORMS.get(platform)
    if releases is None:
        raise PlatformError(f"unknown platform {platform!r}; choose one of {', '.join(PLATFORMS)}")
    version = version or DEFAULT_VERSION[platform]
    for r in releases:
        if r.version == version:
            return r
    known = ", ".join(r.version for r in releases)
    raise PlatformError(f"unknown {platform} version {version!r}; known: {known}")


def choose(lang: str, platform: str, version: str | None = None) -> tuple[Release, Sdk]:
    """The release and SDK for ``lang`` on ``platform[:version]``, or why not and what would do."""
    if lang not in SDKS:
        raise PlatformError(f"no template for language {lang!r}; choose one of {', '.join(SDKS)}")
    r = release(platform, version)
    sdk = SDKS[lang]
    if sdk.abi_version not in r.abi_versions or r.envoy < sdk.min_envoy:
        works = [x.version for x in PLATFORMS[platform]
                 if x.envoy >= sdk.min_envoy and sdk.abi_version in x.abi_versions]
        others = [lang2 for lang2, s in SDKS.items()
                  if r.envoy >= s.min_envoy and s.abi_version in r.abi_versions]
        raise PlatformError(
            f"{lang} ({sdk.package}) cannot target {platform} {r.version} (Envoy "
            f"{r.envoy[0]}.{r.envoy[1]}): {sdk.note or 'its ABI is not supported there'}. "
            f"It works on {platform} {', '.join(works) or '(no known version)'}; on {platform} "
            f"{r.version} use {', '.join(others)}")
    return r, sdk
