"""Check a module's ABI surface before running it: the reasons Envoy would refuse to load it."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field

import wasmtime

from workers.abitest.abi import (
    ABI_MARKERS,
    GUEST_EXPORTS,
    HOST_FUNCTIONS,
    I32,
    OTHER_KNOWN_EXPORTS,
    WASI_MODULES,
    abi_hint,
)


@dataclass(frozen=True)
class Problem:
    """One reason the module would not load: the name involved, what is wrong, what Envoy does."""

    name: str
    message: str
    envoy: str

    def __str__(self) -> str:
        return f"{self.name}: {self.message} ({self.envoy})"


@dataclass
class Validation:
    abi_version: str | None = None
    allocator: str | None = None
    imports: list[str] = field(default_factory=list)
    exports: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _signature(t: wasmtime.FuncType) -> str:
    params = ", ".join(str(p) for p in t.params)
    results = ", ".join(str(r) for r in t.results)
    return f"({params}) -> ({results})"


def validate(module: wasmtime.Module, size: int, max_size: int) -> Validation:
    """Everything cpp-host checks at load time, each problem named and explained."""
    v = Validation()
    exports = {e.name: e.type for e in module.exports}
    v.exports = sorted(exports)
    v.imports = sorted({f"{i.module}.{i.name}" for i in module.imports})
    if size > max_size:
        v.problems.append(Problem(
            "module size", f"{size} bytes is over the limit of {max_size} bytes",
            "Istio's image fetcher and wasmbot refuse modules this large"))
    markers = [ABI_MARKERS[name] for name in exports if name in ABI_MARKERS]
    if not markers:
        v.problems.append(Problem(
            "ABI version", "no export proxy_abi_version_0_1_0, _0_2_0 or _0_2_1",
            "Envoy refuses the module: \"Missing or unknown Proxy-Wasm ABI version\""))
    elif len(markers) > 1:
        v.problems.append(Problem(
            "ABI version", f"several ABI markers exported ({', '.join(markers)})",
            "Envoy cannot tell which ABI the module speaks and refuses it"))
    else:
        v.abi_version = markers[0]
    if not isinstance(exports.get("memory"), wasmtime.MemoryType):
        v.problems.append(Problem(
            "memory", "no exported memory named 'memory'",
            "Envoy cannot pass data to the module and refuses it"))
    for name in ("malloc", "proxy_on_memory_allocate"):  # cpp-host's lookup order
        t = exports.get(name)
        if isinstance(t, wasmtime.FuncType):
            if _signature(t) != "(i32) -> (i32)":
                v.problems.append(Problem(
                    name, f"allocator has signature {_signature(t)}, expected (i32) -> (i32)",
                    "Envoy fails to load the module: wrong allocator signature"))
            v.allocator = name
            break
    else:
        v.problems.append(Problem(
            "allocator", "neither proxy_on_memory_allocate nor malloc is exported",
            "Envoy fails to load the module: \"missing malloc function\""))
    _check_imports(module, v)
    _check_callbacks(exports, v)
    _check_unknown_callbacks(exports, v)
    return v


def _check_unknown_callbacks(exports: Mapping[str, object], v: Validation) -> None:
    """A ``proxy_on_*`` export Envoy never calls is usually a misspelt callback."""
    known = set(GUEST_EXPORTS.get(v.abi_version or "0.2.1", GUEST_EXPORTS["0.2.1"])) | OTHER_KNOWN_EXPORTS
    for name in sorted(exports):
        if name.startswith("proxy_on_") and name not in known:
            close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.8)
            hint = f"; did you mean {close[0]}?" if close else ""
            v.warnings.append(Problem(name, f"exported, but no host calls a callback of this name{hint}",
                                      "Envoy ignores it"))


def _check_imports(module: wasmtime.Module, v: Validation) -> None:
    known = HOST_FUNCTIONS.get(v.abi_version or "0.2.1", {})
    for imp in module.imports:
        name = imp.name or ""
        where = f"{imp.module}.{name}"
        if imp.module in WASI_MODULES:
            if not isinstance(imp.type, wasmtime.FuncType):
                v.problems.append(Problem(where, "WASI import is not a function",
                                          "Envoy fails to link the module"))
            continue
        if imp.module != "env":
            v.problems.append(Problem(
                where, f"import from unknown module {imp.module!r}; the host provides only "
                "'env' and WASI", "Envoy fails to load the module: missing import"))
            continue
        if name not in known:
            v.problems.append(Problem(
                where, f"not a proxy-wasm host function of ABI {v.abi_version or '(unknown)'}"
                + abi_hint(name), "Envoy refuses to load the module: missing import"))
            continue
        if not isinstance(imp.type, wasmtime.FuncType):
            v.problems.append(Problem(where, "import must be a function",
                                      "Envoy fails to link the module"))
            continue
        want = f"({', '.join(known[name])}) -> ({I32})"
        if _signature(imp.type) != want:
            v.problems.append(Problem(
                where, f"signature {_signature(imp.type)}, expected {want}",
                "Envoy fails to link the module: signature mismatch"))


def _check_callbacks(exports: Mapping[str, object], v: Validation) -> None:
    """Callbacks Envoy calls must have the parameter count of the module's ABI version."""
    table = GUEST_EXPORTS.get(v.abi_version or "", {})
    for name, (arity, returns) in table.items():
        t = exports.get(name)
        if not isinstance(t, wasmtime.FuncType):
            continue
        ok = len(t.params) == arity and all(str(p) == I32 for p in t.params)
        ok = ok and len(t.results) == (1 if returns else 0)
        if not ok:
            want = f"({', '.join([I32] * arity)}) -> ({I32 if returns else ''})"
            v.problems.append(Problem(
                name, f"callback has signature {_signature(t)}, expected {want} in ABI "
                f"{v.abi_version}", "Envoy does not call a callback with the wrong signature "
                "(the filter silently does nothing there)"))
