"""Render a filter template (templates/<lang> plus templates/common) for a new filter.

Placeholders are ``@@{variable}`` (``string.Template`` with an ``@@`` delimiter): the template
files are Go, Rust, TypeScript, C++, YAML and GitHub workflows, which already use ``$``, ``{{``
and ``${{`` for themselves.  Every value comes from the version table in workers/platforms.py.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from string import Template
from typing import Protocol

from workers.platforms import Release, Sdk, choose

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"
NAME = re.compile(r"^[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$")
LANGUAGES = ("assemblyscript", "go", "rust", "cpp")

CI_BUILD = {
    "assemblyscript": ["npm ci", "npm run asbuild", "cp build/filter.wasm filter.wasm"],
    "go": ["GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o filter.wasm ."],
    "rust": ["rustup target add wasm32-wasip1", "cargo build --release --target wasm32-wasip1",
             "cp target/wasm32-wasip1/release/*.wasm filter.wasm"],
    "cpp": ["sudo apt-get install -y clang lld wasi-libc libc++-dev-wasm32 libclang-rt-dev-wasm32",
            "git clone https://github.com/proxy-wasm/proxy-wasm-cpp-sdk sdk",
            "git -C sdk checkout @@{sdk_version}",
            "clang++ --target=wasm32-wasi -O2 -std=c++17 -fno-exceptions -mexec-model=reactor "
            "-Isdk sdk/proxy_wasm_intrinsics.cc filter.cc -o filter.wasm"],
}


class ScaffoldError(ValueError):
    """A name, language or platform that cannot be scaffolded; the message lists the choices."""


class _Placeholders(Template):
    delimiter = "@@"


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise ScaffoldError(f"invalid filter name {name!r}: use a DNS label (lower-case letters, "
                            "digits and '-', starting with a letter, at most 63 characters)")
    return name


def variables(name: str, lang: str, release: Release, sdk: Sdk) -> dict[str, str]:
    values = {
        "name": name, "root_id": name, "lang": lang, "platform": release.platform,
        "platform_version": release.version, "abi_version": sdk.abi_version,
        "sdk_package": sdk.package, "sdk_version": sdk.version, "sdk_short": sdk.version[:12],
        "assemblyscript_version": sdk.extra.get("assemblyscript", ""),
        "go_version": sdk.extra.get("go", ""), "rust_version": sdk.extra.get("rust", ""),
    }
    steps = [_Placeholders(step).substitute(values) for step in CI_BUILD[lang]]
    values["ci_build"] = "\n".join(" " * 10 + step for step in steps)
    return values


def render(name: str, lang: str, platform: str, version: str | None = None) -> dict[str, bytes]:
    """The files of a new filter: relative path -> content."""
    check_name(name)
    if lang not in LANGUAGES:
        raise ScaffoldError(f"no template for {lang!r}; choose one of {', '.join(LANGUAGES)}")
    release, sdk = choose(lang, platform, version)
    values = variables(name, lang, release, sdk)
    files: dict[str, bytes] = {}
    for folder in (TEMPLATES / "common", TEMPLATES / lang):
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            rel = path.relative_to(folder).as_posix()
            try:
                files[rel] = _Placeholders(path.read_text()).substitute(values).encode()
            except (KeyError, ValueError) as exc:
                raise ScaffoldError(f"template {path.relative_to(TEMPLATES)} is broken: {exc}") from None
    return files


class Destination(Protocol):
    """Where a rendered filter goes: a local directory now, a GitHub repository with issue #7."""

    def describe(self) -> str: ...
    def exists(self) -> bool: ...
    def create(self, files: dict[str, bytes]) -> str: ...


class LocalDirectory:
    """A new directory; an existing one is never touched."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def describe(self) -> str:
        return str(self.path)

    def exists(self) -> bool:
        return self.path.exists() or self.path.is_symlink()

    def create(self, files: dict[str, bytes]) -> str:
        if self.exists():
            raise ScaffoldError(f"{self.path} already exists; wasmbot never overwrites a destination")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", dir=self.path.parent))
        try:
            for rel, content in files.items():
                target = scratch / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content)
            os.chmod(scratch, 0o755)
            try:
                # rename(2) onto an existing directory would replace it if empty: refuse instead
                os.mkdir(self.path)
            except FileExistsError:
                raise ScaffoldError(f"{self.path} already exists; wasmbot never overwrites a "
                                    "destination") from None
            os.rename(scratch, self.path)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return str(self.path)
