"""Calls between Python and wasm through wasmtime's unchecked C API, not wasmtime-py's wrappers.

wasmtime-py converts every value through ``Val`` and ``ValType`` objects in both directions:
``Func.__call__`` asks wasmtime for the function's type and converts each argument on every
call, and the trampoline behind ``Linker.define_func`` makes a ``Caller``, a ``Val`` per
argument and a ``ValType`` to check the result on every host call (about 6 µs of a host call's
6.3; bench/abitest.py).  For proxy-wasm's integer-only functions that bookkeeping cost far
more than the calls themselves.  Here both directions use wasmtime's raw value arrays
(``wasmtime_val_raw_t``, 16 bytes a slot) with addresses passed as plain integers, so ctypes
makes no objects per call:

* ``export`` calls an export with ``wasmtime_func_call_unchecked`` (the signature read once,
  checked to be i32/i64 only) and raises what ``Func.__call__`` raises (``wasmtime.Trap``,
  ``wasmtime.WasmtimeError``, or the exception a host function raised);
* ``define`` links a host function with ``wasmtime_linker_define_func_unchecked``: its
  arguments are read as one slice of 32-bit words (i32 unsigned, as the ABI reads its
  pointers and sizes; i64 signed), its result written back in place, and a ``Caller``
  context fetched only when the function asks for it.

When wasmtime-py's bindings do not have the expected shape, or a signature has anything but
i32/i64, both fall back to ``Func.__call__`` and ``Linker.define_func``, so a wasmtime upgrade
can only make calls slower, never wrong.
"""

from __future__ import annotations

import ctypes
import itertools
from collections.abc import Callable
from typing import Any

import wasmtime

try:
    from wasmtime import _bindings as ffi
    from wasmtime import _func
    from wasmtime._ffi import dll
    from wasmtime._func import maybe_raise_last_exn
except ImportError:  # pragma: no cover - another wasmtime-py layout
    ffi = None  # type: ignore[assignment]

_RAW = 16  # sizeof(wasmtime_val_raw_t)
_KINDS = ("i32", "i64")
# wasmtime_func_unchecked_callback_t with the raw array seen as 32-bit words (4 a slot): an
# i32 is its slot's first word, unsigned as the ABI reads pointers and sizes (wasmtime stores
# it zero-extended); an i64 its first two.  The other pointers are plain ints.
HostCallback = ctypes.CFUNCTYPE(ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p,
                                ctypes.POINTER(ctypes.c_uint32), ctypes.c_size_t)
_Finalizer = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


class _Api:
    """The C functions used per call, declared with integer addresses."""

    def __init__(self) -> None:
        if ffi is None or ctypes.sizeof(ffi.wasmtime_val_raw_t) != _RAW:
            raise TypeError("unexpected wasmtime_val_raw_t")
        self.call = dll["wasmtime_func_call_unchecked"]  # [] makes a new, private prototype
        self.call.restype = ctypes.c_void_p
        self.call.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                              ctypes.c_void_p]
        self.define = dll["wasmtime_linker_define_func_unchecked"]
        self.define.restype = ctypes.c_void_p
        self.define.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p,
                                ctypes.c_size_t, ctypes.c_void_p, HostCallback, ctypes.c_void_p,
                                _Finalizer]
        self.set_fuel = dll["wasmtime_context_set_fuel"]
        self.set_fuel.restype = ctypes.c_void_p
        self.set_fuel.argtypes = [ctypes.c_void_p, ctypes.c_uint64]
        self.caller_context = dll["wasmtime_caller_context"]
        self.caller_context.restype = ctypes.c_void_p
        self.caller_context.argtypes = [ctypes.c_void_p]


try:
    _api: _Api | None = _Api()
except (AttributeError, TypeError):  # pragma: no cover - other bindings
    _api = None


def address(pointer: Any) -> int:
    """A ctypes pointer's address as an int."""
    return ctypes.cast(pointer, ctypes.c_void_p).value or 0


def _raise(error: int | None, trap: ctypes.c_void_p) -> None:
    """Raise what ``Func.__call__`` raises for this call's error or trap (the host function's
    own exception first)."""
    if error:
        maybe_raise_last_exn()
        raise wasmtime.WasmtimeError._from_ptr(ctypes.cast(error, ctypes.POINTER(ffi.wasmtime_error_t)))
    pointer, trap.value = trap.value or 0, None
    trap_obj = wasmtime.Trap._from_ptr(ctypes.cast(pointer, ctypes.POINTER(ffi.wasm_trap_t)))
    maybe_raise_last_exn()
    raise trap_obj


class Export:
    """One export of one store, callable with ints; not re-entrant (guarded by ``busy``)."""

    def __init__(self, store: wasmtime.Store, func: wasmtime.Func, params: list[str],
                 results: list[str]) -> None:
        assert _api is not None
        self.func = func  # keeps the wasmtime_func_t whose address is used
        self.store = store  # keeps the store whose context address is used
        self.context = address(store._context())
        self.ref = ctypes.addressof(func._func)
        self.nargs = len(params)
        self.size = max(1, len(params), len(results))  # arguments in, results out
        self.slots = (ctypes.c_int64 * (2 * self.size))()
        self.at = ctypes.addressof(self.slots)
        self.result: ctypes.c_int32 | ctypes.c_int64 | None = None
        if results:
            self.result = (ctypes.c_int64 if results[0] == "i64" else ctypes.c_int32).from_address(self.at)
        self.trap = ctypes.c_void_p()
        self.trap_at = ctypes.addressof(self.trap)
        self.busy = False
        self.c_call = _api.call  # wasmtime_func_call_unchecked(context, ref, at, size, trap_at)

    def __call__(self, *values: int, caller: Any = None) -> int | None:
        """Call with ``values``; from inside a host function pass its ``caller`` (whose
        context the call must run in, as ``Func.__call__(caller, ...)`` does)."""
        if self.busy or len(values) != self.nargs:
            result = self.func(caller or self.store, *values)  # re-entered, or a wrong arity
            return None if result is None else int(result)
        slots = self.slots
        i = 0
        for value in values:
            slots[i] = value  # an i32 is read from the low half (little-endian)
            i += 2
        if caller is None:
            context = self.context
        elif isinstance(caller, Caller):
            context = caller.address()
        else:
            context = address(caller._context())
        self.busy = True
        try:
            error = self.c_call(context, self.ref, self.at, self.size, self.trap_at)
        finally:
            self.busy = False
        if error or self.trap.value:
            _raise(error, self.trap)
        return None if self.result is None else self.result.value


def export(store: wasmtime.Store, func: wasmtime.Func) -> Callable[..., Any]:
    """A fast caller for ``func`` when its signature allows, else ``Func.__call__`` bound to ``store``."""
    ty = func.type(store)
    params, results = [str(p) for p in ty.params], [str(r) for r in ty.results]
    if _api is not None and all(t in _KINDS for t in params + results) and len(results) <= 1:
        return Export(store, func, params, results)

    def call(*values: Any, caller: Any = None) -> Any:
        return func(caller or store, *values)
    return call


# -- host functions ------------------------------------------------------------------------------

_LIVE: dict[int, Any] = {}  # callbacks by token, until wasmtime drops their function
_tokens = itertools.count(1)
_READY_VALS = {i: wasmtime.Val.i32(i) for i in range(128)}  # the same for define_func


def _forget(token: int | None, live: dict[int, Any] = _LIVE) -> None:
    live.pop(token or 0, None)  # bound early: this may run as the interpreter shuts down


_finalize = _Finalizer(_forget)
# Never freed: stores still alive as the interpreter shuts down call it when they are dropped,
# after this module's globals are gone (a freed thunk would crash the process then).
ctypes.pythonapi.Py_IncRef(ctypes.py_object(_finalize))


class Caller:
    """A host function's ``cx`` on the unchecked path: the calling store's context, fetched on
    demand and valid only during the call (as wasmtime-py's ``Caller``)."""

    __slots__ = ("ptr",)

    def __init__(self, ptr: int) -> None:
        self.ptr: int | None = ptr

    def address(self) -> int:
        if self.ptr is None or _api is None:
            raise ValueError("caller is no longer valid")
        return int(_api.caller_context(self.ptr))

    def _context(self) -> Any:
        """As wasmtime-py's ``Caller._context``, for its own functions (``Memory.data_len``)."""
        return ctypes.cast(self.address(), ctypes.POINTER(ffi.wasmtime_context_t))


def _trap(exc: BaseException) -> int:
    """A trap for wasmtime, the exception kept for the caller to raise (as wasmtime-py does)."""
    _func.LAST_EXCEPTION = exc  # type: ignore[assignment]  # as wasmtime-py's own trampoline does
    return address(wasmtime.Trap("python exception")._consume())


def _reader(params: list[str]) -> Callable[[Any], list[int]]:
    """The arguments out of the raw array: i32 unsigned, i64 signed."""
    words = 4 * len(params)
    if not params:
        return lambda raw: []  # not raw[0:0:4]: ctypes slices a pointer to one item then
    if all(p == "i32" for p in params):
        return lambda raw: raw[0:words:4]
    wide = [p == "i64" for p in params]

    def read(raw: Any) -> list[int]:
        w = raw[0:words]
        return [((w[4 * i] | w[4 * i + 1] << 32) ^ 1 << 63) - (1 << 63) if is_wide else w[4 * i]
                for i, is_wide in enumerate(wide)]
    return read


def _callback(fn: Callable[..., Any], params: list[str], results: list[str]) -> Callable[..., int]:
    read = _reader(params)
    wide = results == ["i64"]
    clear = not wide and params[:1] == ["i64"]  # an i32 result over an i64 argument: zero-extend it

    def call(env: int | None, caller: int, raw: Any, count: int) -> int:
        cx = Caller(caller)
        try:
            result = fn(cx, *read(raw))
            if results:
                raw[0] = result & 0xFFFFFFFF  # an i32 result is read from the first word
                if wide:
                    raw[1] = result >> 32 & 0xFFFFFFFF
                elif clear:
                    raw[1] = 0
            return 0
        except BaseException as exc:
            return _trap(exc)
        finally:
            cx.ptr = None
    return call


def raw_supported(ty: wasmtime.FuncType) -> bool:
    """Whether ``define_raw`` can link a function of type ``ty``."""
    kinds = [str(t) for t in [*ty.params, *ty.results]]
    return _api is not None and all(k in _KINDS for k in kinds) and len(ty.results) <= 1


def define_raw(linker: wasmtime.Linker, module: str, name: str, ty: wasmtime.FuncType,
               callback: Callable[[int | None, int, Any, int], int]) -> None:
    """Link ``callback(env, caller, raw, count)`` as ``module.name`` through wasmtime's unchecked
    API (``raw``: the argument/result array as 32-bit words, 4 a slot; returns 0 or a trap's
    address), kept alive until wasmtime drops the function.  Only when ``raw_supported(ty)``."""
    assert _api is not None
    token = next(_tokens)
    c_callback = _LIVE[token] = HostCallback(callback)
    m, n = module.encode(), name.encode()
    error = _api.define(address(linker.ptr()), m, len(m), n, len(n), address(ty.ptr()), c_callback,
                        token, _finalize)
    if error:
        _LIVE.pop(token, None)
        raise wasmtime.WasmtimeError._from_ptr(ctypes.cast(error, ctypes.POINTER(ffi.wasmtime_error_t)))


def define(linker: wasmtime.Linker, module: str, name: str, ty: wasmtime.FuncType,
           fn: Callable[..., Any]) -> None:
    """Link ``fn(cx, *args)`` as ``module.name``.  i32 arguments arrive unsigned (the ABI's
    pointers and sizes), i64 signed; the result is an int.  An exception from ``fn`` traps the
    guest and is raised again by the export call that ran it."""
    params, results = [str(p) for p in ty.params], [str(r) for r in ty.results]
    if raw_supported(ty):
        define_raw(linker, module, name, ty, _callback(fn, params, results))
        return
    masks = [0xFFFFFFFF if p == "i32" else -1 for p in params]

    def checked(cx: Any, *args: Any) -> Any:
        result = fn(cx, *(a & m if isinstance(a, int) else a for a, m in zip(args, masks, strict=True)))
        return _READY_VALS.get(result, result) if results else result
    linker.define_func(module, name, ty, checked, access_caller=True)


# -- store and memory ----------------------------------------------------------------------------

def memory_size(memory: wasmtime.Memory) -> Callable[[Any], int]:
    """``memory.data_len`` for a store or caller, straight through the C API (read when a host
    call reaches past the length known so far), or ``data_len`` itself when the bindings differ."""
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
    if _api is None:
        return store.set_fuel
    set_fuel, context = _api.set_fuel, address(store._context())

    def setter(fuel: int) -> None:
        error = set_fuel(context, fuel)
        if error:
            raise wasmtime.WasmtimeError._from_ptr(ctypes.cast(error, ctypes.POINTER(ffi.wasmtime_error_t)))
    return setter
