"""Calling a wasm export without wasmtime-py's per-call type introspection.

``wasmtime.Func.__call__`` asks wasmtime for the function's type, builds ``ValType`` objects
and converts each argument through them on every call; for the small integer-only exports
of proxy-wasm that bookkeeping cost more than the call itself (bench/abitest.py).  An
``Export`` reads the type once, keeps the C argument and result arrays, and calls
``wasmtime_func_call`` directly, raising what ``Func.__call__`` raises (``wasmtime.Trap``,
``wasmtime.WasmtimeError``, or the exception a host function raised).

It relies on wasmtime-py's ctypes bindings (``wasmtime._bindings``); when they do not have
the expected shape, or an export takes anything but i32/i64, ``export`` returns the plain
``Func`` call instead, so a wasmtime upgrade can only make calls slower, never wrong.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

import wasmtime

try:
    from wasmtime import _bindings as ffi
    from wasmtime._func import maybe_raise_last_exn
except ImportError:  # pragma: no cover - another wasmtime-py layout
    ffi = None  # type: ignore[assignment]

_KINDS = {"i32": 0, "i64": 1}  # WASMTIME_I32, WASMTIME_I64


class Export:
    """One export of one store, callable with ints; not re-entrant (guarded by ``busy``)."""

    def __init__(self, store: wasmtime.Store, func: wasmtime.Func, kinds: list[int],
                 results: list[int]) -> None:
        self.func = func
        self.store = store
        self.context = store._context()
        self.ref = ctypes.byref(func._func)
        self.nargs = len(kinds)
        self.args = (ffi.wasmtime_val_t * max(1, len(kinds)))()
        for i, kind in enumerate(kinds):
            self.args[i].kind = kind  # type: ignore[assignment]
        self.nresults = len(results)
        self.wide = results == [1]  # an i64 result
        self.results = (ffi.wasmtime_val_t * max(1, len(results)))()
        self.busy = False
        fields = {f[0] for f in ffi.wasmtime_val_t._fields_}
        if fields != {"kind", "of"}:
            raise TypeError("unexpected wasmtime_val_t layout")

    def __call__(self, *values: int, caller: Any = None) -> int | None:
        """Call with ``values``; from inside a host function pass its ``caller`` (whose
        context the call must run in, as ``Func.__call__(caller, ...)`` does)."""
        if self.busy or len(values) != self.nargs:
            result = self.func(caller or self.store, *values)  # re-entered, or a wrong arity
            return None if result is None else int(result)
        self.busy = True
        try:
            for i, value in enumerate(values):
                self.args[i].of.i64 = value  # i32 reads the low half (little-endian)
            trap = ctypes.POINTER(ffi.wasm_trap_t)()
            context = caller._context() if caller is not None else self.context
            error = ffi.wasmtime_func_call(context, self.ref, self.args, self.nargs,
                                           self.results, self.nresults, ctypes.byref(trap))
        finally:
            self.busy = False
        if error:
            maybe_raise_last_exn()
            raise wasmtime.WasmtimeError._from_ptr(error)
        if trap:
            trap_obj = wasmtime.Trap._from_ptr(trap)
            maybe_raise_last_exn()
            raise trap_obj
        if not self.nresults:
            return None
        of = self.results[0].of
        return int(of.i64 if self.wide else of.i32)


def export(store: wasmtime.Store, func: wasmtime.Func) -> Callable[..., Any]:
    """A fast caller for ``func`` when its signature allows, else ``Func.__call__`` bound to ``store``."""
    ty = func.type(store)
    kinds = [_KINDS.get(str(p), -1) for p in ty.params]
    results = [_KINDS.get(str(r), -1) for r in ty.results]
    if ffi is not None and -1 not in kinds + results and len(results) <= 1:
        try:
            return Export(store, func, kinds, results)
        except (AttributeError, TypeError):
            pass

    def call(*values: Any, caller: Any = None) -> Any:
        return func(caller or store, *values)
    return call


def memory_size(memory: wasmtime.Memory) -> Callable[[Any], int]:
    """``memory.data_len`` for a store or caller, straight through the C API (read on every
    host call that touches guest memory), or ``data_len`` itself when the bindings differ."""
    size = getattr(ffi, "_wasmtime_memory_data_size", None)
    if size is None or not hasattr(memory, "_memory"):
        return memory.data_len
    ref = ctypes.byref(memory._memory)

    def data_len(cx: Any) -> int:
        return int(size(cx._context(), ref))
    return data_len


def fuel_setter(store: wasmtime.Store) -> Callable[[int], None]:
    """``store.set_fuel`` straight through the C API (once per guest call), or ``set_fuel``
    itself when the bindings differ."""
    set_fuel = getattr(ffi, "_wasmtime_context_set_fuel", None)
    if set_fuel is None:
        return store.set_fuel
    context = store._context()

    def setter(fuel: int) -> None:
        error = set_fuel(context, fuel)
        if error:
            raise wasmtime.WasmtimeError._from_ptr(error)
    return setter
