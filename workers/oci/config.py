"""The settings ``workers.oci`` reads, as plain data, and a quick way for the CLI to load them.

``workers.config.Settings`` is the one definition of wasmbot's settings (names, defaults,
limits, error messages) and ``Settings.oci()`` gives this part of it.  ``wasmbot push``, ``pull``,
``inspect`` and ``tag`` need only this part, and importing pydantic to validate all of them
costs more than such a command's own work (docs/registries.md "Speed").  So ``load()`` reads
these keys from the same sources in the same order (the environment over ``wasmbot.toml``) but
only in their plain spellings; anything else (a value in another spelling or out of range, a
registry entry it does not recognise, ``WASMBOT_REGISTRIES`` as JSON) and it hands over to
``Settings``, whose answer or error is then the command's.  tests/test_config.py checks that
both agree.  Settings these commands do not read are not checked by them.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Protocol, get_args

from workers import configsource

Variant = Literal["compat", "oci", "both"]
_LOOPBACK = ("localhost", "127.0.0.1", "[::1]")


@dataclass(frozen=True)
class HostSettings:
    """How to reach one registry (``[registries."HOST"]``)."""

    plain_http: bool | None = None  # default: plain HTTP for loopback hosts only
    ca_bundle: Path | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    password_file: Path | None = None
    variant: Variant | None = None


@dataclass(frozen=True)
class OciSettings:
    data_dir: Path
    registries: dict[str, HostSettings]
    docker_config: Path | None
    push_variant: Variant
    oci_tag_suffix: str
    registry_timeout: float
    registry_retries: int
    test_max_module_mb: int
    test_compile_seconds: float
    test_compile_memory_mb: int

    def oci(self) -> OciSettings:
        """Itself: ``connect`` takes these or a whole ``Settings``."""
        return self

    def registry(self, host: str) -> HostSettings:
        """The configuration for ``host``: its own entry, else the first pattern matching it."""
        if host in self.registries:
            return self.registries[host]
        for pattern, config in self.registries.items():
            if fnmatch.fnmatch(host, pattern):
                return config
        return HostSettings()

    def uses_plain_http(self, host: str) -> bool:
        """Plain HTTP where configured; by default only for loopback registries, as Docker does."""
        configured = self.registry(host).plain_http
        if configured is not None:
            return configured
        return host.rsplit(":", 1)[0] in _LOOPBACK if not host.startswith("[") else host.startswith("[::1]")

    def variant_for(self, host: str) -> Variant:
        return self.registry(host).variant or self.push_variant


class HasOciSettings(Protocol):
    """``OciSettings`` or a whole ``workers.config.Settings``."""

    def oci(self) -> OciSettings: ...


class _Unsure(Exception):
    """A value ``load()`` leaves to ``Settings``."""


# The plain spellings ``load()`` takes and the limits ``Settings`` sets; defaults are Settings'.
_NUMBER = re.compile(r"[0-9]+(\.[0-9]+)?")
_SUFFIX = re.compile(r"[A-Za-z0-9._-]{1,20}")
DEFAULTS: dict[str, Any] = {
    "docker_config": None, "push_variant": "compat", "oci_tag_suffix": "-oci", "registry_timeout": 60.0,
    "registry_retries": 3, "test_max_module_mb": 256, "test_compile_seconds": 30.0,
    "test_compile_memory_mb": 1024,
}
_CHECKS: dict[str, Any] = {
    "registry_timeout": lambda v: v > 0, "registry_retries": lambda v: 0 <= v <= 10,
    "test_max_module_mb": lambda v: v > 0, "test_compile_seconds": lambda v: v > 0,
    "test_compile_memory_mb": lambda v: v >= 256,
    "push_variant": lambda v: v in get_args(Variant), "oci_tag_suffix": lambda v: _SUFFIX.fullmatch(v),
}


def load() -> OciSettings:
    """These settings from the environment and ``wasmbot.toml``; raises ``ConfigError`` when the
    configuration is invalid, as ``workers.config.load_settings`` does."""
    try:
        return _quick()
    except _Unsure:
        from workers.config import load_settings

        return load_settings().oci()


def _quick() -> OciSettings:
    env = configsource.environment()
    try:
        contents = configsource.file_contents()
    except ValueError:  # a syntax error: Settings words it
        raise _Unsure from None
    if "wasmbot_registries" in env or not isinstance(contents.get("registries", {}), dict):
        raise _Unsure
    values: dict[str, Any] = {"registries": {host: _host(entry) for host, entry
                                             in contents.get("registries", {}).items()}}
    types = {f.name: str(f.type) for f in fields(OciSettings)}  # annotations: "int", "Path | None"…
    for name in ("data_dir", *DEFAULTS):
        if f"wasmbot_{name}" in env:
            value = _from_text(env[f"wasmbot_{name}"], types[name])
        elif name in contents:
            value = _from_toml(contents[name], types[name])
        else:
            value = DEFAULTS[name] if name in DEFAULTS else configsource.default_data_dir()
        if name in _CHECKS and not _CHECKS[name](value):
            raise _Unsure
        values[name] = value
    return OciSettings(**values)


def _from_text(text: str, kind: str) -> Any:
    """An environment variable's value, in the spelling ``Settings`` surely reads the same way."""
    if not text or text != text.strip():
        raise _Unsure
    if kind in ("int", "float"):
        if not _NUMBER.fullmatch(text) or (kind == "int" and "." in text):
            raise _Unsure
        return int(text) if kind == "int" else float(text)
    return Path(text) if "Path" in kind else text


def _from_toml(value: Any, kind: str) -> Any:
    if kind == "int" and type(value) is int:
        return value
    if kind == "float" and type(value) in (int, float):
        return float(value)
    if kind not in ("int", "float") and isinstance(value, str) and value:
        return Path(value) if "Path" in kind else value
    raise _Unsure


_HOST_KEYS = {f.name for f in fields(HostSettings)}


def _host(entry: Any) -> HostSettings:
    """One ``[registries."HOST"]`` table whose every key and value ``HostSettings`` takes as is."""
    if not isinstance(entry, dict) or not set(entry) <= _HOST_KEYS:
        raise _Unsure
    for key, value in entry.items():
        ok = (isinstance(value, bool) if key == "plain_http"
              else value in get_args(Variant) if key == "variant" else isinstance(value, str) and value)
        if not ok:
            raise _Unsure
    if ("password" in entry or "password_file" in entry) and (
            not entry.get("username") or ("password" in entry and "password_file" in entry)):
        raise _Unsure
    paths = {key: Path(entry[key]) for key in ("ca_bundle", "password_file") if key in entry}
    return HostSettings(**(entry | paths))
