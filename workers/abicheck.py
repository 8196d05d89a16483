"""Load a proxy-wasm module under wasmtime the way Envoy would, and say what would go wrong.

This is the thin first harness: it validates the module's ABI surface (version marker,
allocator, memory, imports) and runs VM start and plugin configure with host functions that
log.  Every problem is reported with the name involved and what Envoy would do about it.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import wasmtime

I32, I64 = "i32", "i64"
OK, NOT_FOUND, BAD_ARGUMENT, UNIMPLEMENTED = 0, 1, 2, 12
LOG_LEVELS = ("trace", "debug", "info", "warn", "error", "critical")
BUFFER_VM_CONFIGURATION, BUFFER_PLUGIN_CONFIGURATION = 6, 7


def _sig(n: int, **wide: int) -> tuple[str, ...]:
    params = [I32] * n
    for index in wide.values():
        params[index] = I64
    return tuple(params)


# env host functions: name -> parameter types (every one returns an i32 status).
_COMMON: dict[str, tuple[str, ...]] = {
    "proxy_log": _sig(3),
    "proxy_get_current_time_nanoseconds": _sig(1),
    "proxy_set_tick_period_milliseconds": _sig(1),
    "proxy_get_buffer_bytes": _sig(5),
    "proxy_set_buffer_bytes": _sig(5),
    "proxy_get_buffer_status": _sig(3),
    "proxy_get_header_map_size": _sig(2),
    "proxy_get_header_map_pairs": _sig(3),
    "proxy_set_header_map_pairs": _sig(3),
    "proxy_get_header_map_value": _sig(5),
    "proxy_add_header_map_value": _sig(5),
    "proxy_replace_header_map_value": _sig(5),
    "proxy_remove_header_map_value": _sig(3),
    "proxy_get_status": _sig(3),
    "proxy_send_local_response": _sig(8),
    "proxy_http_call": _sig(10),
    "proxy_grpc_call": _sig(12),
    "proxy_grpc_stream": _sig(9),
    "proxy_grpc_send": _sig(4),
    "proxy_grpc_cancel": _sig(1),
    "proxy_grpc_close": _sig(1),
    "proxy_get_shared_data": _sig(5),
    "proxy_set_shared_data": _sig(5),
    "proxy_register_shared_queue": _sig(3),
    "proxy_resolve_shared_queue": _sig(5),
    "proxy_enqueue_shared_queue": _sig(3),
    "proxy_dequeue_shared_queue": _sig(3),
    "proxy_define_metric": _sig(4),
    "proxy_increment_metric": _sig(2, value=1),
    "proxy_record_metric": _sig(2, value=1),
    "proxy_get_metric": _sig(2),
    "proxy_get_property": _sig(4),
    "proxy_set_property": _sig(4),
    "proxy_done": _sig(0),
    "proxy_set_effective_context": _sig(1),
    "proxy_call_foreign_function": _sig(6),
}
HOST_FUNCTIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "0.1.0": _COMMON | {
        "proxy_get_configuration": _sig(2),
        "proxy_continue_request": _sig(0),
        "proxy_continue_response": _sig(0),
        "proxy_clear_route_cache": _sig(0),
    },
    "0.2.0": _COMMON | {"proxy_continue_stream": _sig(1), "proxy_close_stream": _sig(1)},
}
HOST_FUNCTIONS["0.2.1"] = HOST_FUNCTIONS["0.2.0"] | {"proxy_get_log_level": _sig(1)}
WASI_MODULES = ("wasi_snapshot_preview1", "wasi_unstable")
ABI_MARKERS = {f"proxy_abi_version_{v.replace('.', '_')}": v for v in HOST_FUNCTIONS}


@dataclass
class Report:
    abi_version: str | None = None
    problems: list[str] = field(default_factory=list)
    logs: list[tuple[str, str]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _valtype(t: Any) -> str:
    return str(t)


def inspect(engine: wasmtime.Engine, module: wasmtime.Module, report: Report) -> None:
    """Check the module's exports and imports against what Envoy requires."""
    exports = {e.name: e.type for e in module.exports}
    markers = [ABI_MARKERS[name] for name in exports if name in ABI_MARKERS]
    if not markers:
        report.problems.append(
            "no ABI version marker: export one of " + ", ".join(ABI_MARKERS)
            + " (Envoy refuses the module: \"Missing or unknown Proxy-Wasm ABI version\")")
    elif len(markers) > 1:
        report.problems.append(f"several ABI version markers exported: {', '.join(markers)}")
    else:
        report.abi_version = markers[0]
    if "memory" not in exports:
        report.problems.append("no exported memory named 'memory' (Envoy cannot exchange data)")
    if "proxy_on_memory_allocate" not in exports and "malloc" not in exports:
        report.problems.append(
            "no allocator: export proxy_on_memory_allocate (or malloc); Envoy fails to load the "
            "module (\"missing malloc function\")")
    known = HOST_FUNCTIONS.get(report.abi_version or "0.2.1", {})
    for imp in module.imports:
        where = f"{imp.module}.{imp.name}"
        if imp.module in WASI_MODULES:
            continue
        if imp.module != "env":
            report.problems.append(
                f"import {where} is from unknown module {imp.module!r}; Envoy provides only "
                "'env' and WASI (the module would fail to load: missing import)")
            continue
        if imp.name not in known:
            other = [v for v, fns in HOST_FUNCTIONS.items() if imp.name in fns]
            hint = f" (it exists in ABI {', '.join(other)})" if other else ""
            report.problems.append(
                f"import {where} is not a proxy-wasm host function of ABI "
                f"{report.abi_version or '(unknown)'}{hint}; Envoy would refuse to load the "
                "module (missing import)")
            continue
        if not isinstance(imp.type, wasmtime.FuncType):
            report.problems.append(f"import {where} must be a function")
            continue
        params = tuple(_valtype(p) for p in imp.type.params)
        results = tuple(_valtype(r) for r in imp.type.results)
        if params != known[imp.name] or results != (I32,):
            report.problems.append(
                f"import {where} has signature ({', '.join(params)}) -> ({', '.join(results)}), "
                f"expected ({', '.join(known[imp.name])}) -> (i32)")


class Host:
    """Host functions for the first lifecycle calls; the rest log and answer UNIMPLEMENTED."""

    def __init__(self, report: Report, vm_config: bytes, plugin_config: bytes) -> None:
        self.report = report
        self.buffers = {BUFFER_VM_CONFIGURATION: vm_config,
                        BUFFER_PLUGIN_CONFIGURATION: plugin_config}
        self.store: wasmtime.Store
        self.instance: wasmtime.Instance

    # memory helpers
    def _memory(self) -> wasmtime.Memory:
        memory = self.instance.exports(self.store)["memory"]
        assert isinstance(memory, wasmtime.Memory)
        return memory

    def read(self, ptr: int, size: int) -> bytes:
        return bytes(self._memory().read(self.store, ptr, ptr + size))

    def write(self, ptr: int, data: bytes) -> None:
        self._memory().write(self.store, data, ptr)

    def copy_out(self, data: bytes, ret_ptr: int, ret_len: int) -> int:
        """Hand ``data`` to the guest through its allocator, as Envoy does."""
        address = 0
        if data:
            exports = self.instance.exports(self.store)
            alloc = exports.get("malloc") or exports.get("proxy_on_memory_allocate")
            assert isinstance(alloc, wasmtime.Func)
            address = alloc(self.store, len(data))
            if not address:
                return BAD_ARGUMENT
            self.write(address, data)
        self.write(ret_ptr, struct.pack("<I", address))
        self.write(ret_len, struct.pack("<I", len(data)))
        return OK

    # host functions
    def proxy_log(self, level: int, ptr: int, size: int) -> int:
        name = LOG_LEVELS[level] if 0 <= level < len(LOG_LEVELS) else str(level)
        self.report.logs.append((name, self.read(ptr, size).decode("utf-8", "replace")))
        return OK

    def proxy_get_log_level(self, ret: int) -> int:
        self.write(ret, struct.pack("<I", 0))
        return OK

    def proxy_get_current_time_nanoseconds(self, ret: int) -> int:
        self.write(ret, struct.pack("<Q", time.time_ns()))
        return OK

    def proxy_get_buffer_bytes(self, kind: int, start: int, size: int, ret_ptr: int,
                               ret_len: int) -> int:
        if kind not in self.buffers:
            return NOT_FOUND
        return self.copy_out(self.buffers[kind][start:start + size], ret_ptr, ret_len)

    def proxy_get_buffer_status(self, kind: int, ret_len: int, ret_flags: int) -> int:
        if kind not in self.buffers:
            return NOT_FOUND
        self.write(ret_len, struct.pack("<I", len(self.buffers[kind])))
        self.write(ret_flags, struct.pack("<I", 1))
        return OK

    def proxy_get_configuration(self, ret_ptr: int, ret_len: int) -> int:
        return self.copy_out(self.buffers[BUFFER_PLUGIN_CONFIGURATION], ret_ptr, ret_len)

    def proxy_set_tick_period_milliseconds(self, _ms: int) -> int:
        return OK

    def binding(self, name: str) -> Callable[..., int]:
        method: Callable[..., int] | None = getattr(self, name, None)
        if method is not None:
            def logged(*args: int) -> int:
                self.report.calls.append(name)
                return method(*args)
            return logged

        def unimplemented(*_args: int) -> int:
            self.report.calls.append(name)
            self.report.logs.append(("debug", f"host call {name} is not emulated yet: UNIMPLEMENTED"))
            return UNIMPLEMENTED
        return unimplemented


def _call(report: Report, store: wasmtime.Store, instance: wasmtime.Instance, name: str,
          *args: int, expect_true: bool = False) -> None:
    func = instance.exports(store).get(name)
    if not isinstance(func, wasmtime.Func):
        return
    try:
        result = func(store, *args)
    except wasmtime.Trap as trap:
        report.problems.append(f"{name} trapped: {trap.message}")
        raise
    except wasmtime.WasmtimeError as exc:
        report.problems.append(f"{name} failed: {exc}")
        raise
    if expect_true and not result:
        report.problems.append(f"{name} returned false; Envoy would reject the plugin")


def check(wasm: bytes, *, fuel: int, vm_config: bytes = b"", plugin_config: bytes = b"") -> Report:
    """Validate ``wasm`` and run its VM start and plugin configure; return what was found."""
    report = Report()
    config = wasmtime.Config()
    config.consume_fuel = True
    engine = wasmtime.Engine(config)
    if not wasm.startswith(b"\0asm"):
        report.problems.append("not a WebAssembly module (it does not start with \\0asm)")
        return report
    try:
        module = wasmtime.Module(engine, wasm)
    except wasmtime.WasmtimeError as exc:
        report.problems.append(f"not a valid WebAssembly module: {exc}")
        return report
    inspect(engine, module, report)
    if not report.ok:
        return report
    assert report.abi_version is not None

    store = wasmtime.Store(engine)
    store.set_fuel(fuel)
    wasi = wasmtime.WasiConfig()  # no files, no environment, no arguments: a sandbox
    store.set_wasi(wasi)
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    host = Host(report, vm_config, plugin_config)
    host.store = store
    for name, params in HOST_FUNCTIONS[report.abi_version].items():
        functype = wasmtime.FuncType([_wasm_type(p) for p in params], [wasmtime.ValType.i32()])
        linker.define_func("env", name, functype, host.binding(name))
    try:
        host.instance = linker.instantiate(store, module)
    except (wasmtime.WasmtimeError, wasmtime.Trap) as exc:
        report.problems.append(f"instantiation failed: {exc}")
        return report
    try:
        exports = host.instance.exports(store)
        start = "_initialize" if "_initialize" in exports else "_start"
        _call(report, store, host.instance, start)
        _call(report, store, host.instance, "proxy_on_context_create", 1, 0)
        _call(report, store, host.instance, "proxy_on_vm_start", 1, len(vm_config),
              expect_true=True)
        _call(report, store, host.instance, "proxy_on_configure", 1, len(plugin_config),
              expect_true=True)
    except (wasmtime.Trap, wasmtime.WasmtimeError):
        pass
    return report


def _wasm_type(name: str) -> wasmtime.ValType:
    return wasmtime.ValType.i64() if name == I64 else wasmtime.ValType.i32()
