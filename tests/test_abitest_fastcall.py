"""workers.abitest.fastcall: exports called through wasmtime's C API answer as Func.__call__ does."""

from __future__ import annotations

import subprocess
import sys

import pytest
import wasmtime

from workers.abitest import fastcall
from workers.abitest.vm import engine

WAT = """(module
  (import "env" "boom" (func $boom))
  (func (export "add") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1)))
  (func (export "wide") (param i64) (result i64) (i64.mul (local.get 0) (i64.const 2)))
  (func (export "none") (param i32))
  (func (export "float") (param f32) (result f32) (local.get 0))
  (func (export "trap") unreachable)
  (func (export "host") (call $boom)))"""


class Boom(Exception):
    pass


def exports() -> tuple[wasmtime.Store, dict[str, wasmtime.Func]]:
    store = wasmtime.Store(engine())
    store.set_fuel(10**9)
    store.set_epoch_deadline(2**40)
    linker = wasmtime.Linker(engine())

    def boom() -> None:
        raise Boom("from the host")
    linker.define_func("env", "boom", wasmtime.FuncType([], []), boom)
    inst = linker.instantiate(store, wasmtime.Module(engine(), wasmtime.wat2wasm(WAT)))
    return store, {k: v for k, v in inst.exports(store).items() if isinstance(v, wasmtime.Func)}


def test_integer_exports_match_func_call_including_sign_and_width() -> None:
    store, ex = exports()
    add, wide = fastcall.export(store, ex["add"]), fastcall.export(store, ex["wide"])
    assert isinstance(add, fastcall.Export) and isinstance(wide, fastcall.Export)
    for a, b in ((1, 2), (0xFFFFFFFF, 1), (-5, 2), (2**31 - 1, 1)):
        assert add(a, b) == ex["add"](store, a & 0xFFFFFFFF if a < 0 else a, b), (a, b)
    assert wide(2**40) == 2**41 and wide(-3) == -6
    assert fastcall.export(store, ex["none"])(7) is None


def test_traps_and_host_exceptions_surface_as_with_func_call() -> None:
    store, ex = exports()
    with pytest.raises(wasmtime.Trap, match="unreachable"):
        fastcall.export(store, ex["trap"])()
    with pytest.raises(Boom, match="from the host"):
        fastcall.export(store, ex["host"])()
    with pytest.raises(wasmtime.WasmtimeError, match="too few parameters"):
        fastcall.export(store, ex["add"])(1)  # a wrong arity goes to Func.__call__, which says so


def test_other_signatures_fall_back_to_func_call() -> None:
    store, ex = exports()
    call = fastcall.export(store, ex["float"])
    assert not isinstance(call, fastcall.Export) and call(1.5) == 1.5


HOST_WAT = """(module
  (import "env" "mixed" (func $mixed (param i32 i64 i32) (result i32)))
  (import "env" "wide" (func $wide (param i64) (result i64)))
  (import "env" "none" (func $none))
  (import "env" "float" (func $float (param f32 i32) (result i32)))
  (func (export "mixed") (param i32 i64 i32) (result i32)
    (call $mixed (local.get 0) (local.get 1) (local.get 2)))
  (func (export "wide") (param i64) (result i64) (call $wide (local.get 0)))
  (func (export "none") (call $none))
  (func (export "float") (param f32 i32) (result i32) (call $float (local.get 0) (local.get 1))))"""


def hosted(fns: dict[str, object]) -> dict[str, fastcall.Export | object]:
    """HOST_WAT's exports, each calling the host function of its name linked by ``fastcall.define``."""
    store = wasmtime.Store(engine())
    store.set_fuel(10**9)
    store.set_epoch_deadline(2**40)
    linker = wasmtime.Linker(engine())
    module = wasmtime.Module(engine(), wasmtime.wat2wasm(HOST_WAT))
    for imp in module.imports:
        assert isinstance(imp.type, wasmtime.FuncType) and imp.name is not None
        fastcall.define(linker, imp.module, imp.name, imp.type, fns[imp.name])
    inst = linker.instantiate(store, module)
    return {k: fastcall.export(store, v) for k, v in inst.exports(store).items() if isinstance(v, wasmtime.Func)}


def test_host_functions_get_i32_unsigned_and_i64_signed_and_answer_any_int() -> None:
    seen: list[tuple[object, ...]] = []

    def mixed(cx: object, a: int, b: int, c: int) -> int:
        seen.append((a, b, c))
        return a - c  # may be negative or past 2**31: the guest reads the low 32 bits
    ex = hosted({"mixed": mixed, "wide": lambda cx, v: v * 3, "none": lambda cx: None,
                 "float": lambda cx, f, i: i})
    assert ex["mixed"](-1, -5, 2**31) == -1 - 2**31 + 2**32  # type: ignore[operator]
    assert seen == [(0xFFFFFFFF, -5, 2**31)]
    assert ex["mixed"](1, 2**62, 3) == -2  # type: ignore[operator]
    assert seen[-1] == (1, 2**62, 3)
    assert ex["wide"](-(2**40)) == -3 * 2**40 and ex["wide"](2**62) == 3 * 2**62 - 2**64  # type: ignore[operator]
    assert ex["none"]() is None  # type: ignore[operator]


def test_a_host_exception_traps_the_guest_and_is_raised_by_the_export_call() -> None:
    def boom(cx: object) -> None:
        raise Boom("from the host")
    ex = hosted({"mixed": lambda cx, a, b, c: 0, "wide": lambda cx, v: v, "none": boom,
                 "float": lambda cx, f, i: i})
    with pytest.raises(Boom, match="from the host"):
        ex["none"]()  # type: ignore[operator]
    assert ex["wide"](7) == 7  # type: ignore[operator]  # the store is still usable


def test_other_host_signatures_go_through_define_func_with_i32_still_unsigned() -> None:
    ty = wasmtime.FuncType([wasmtime.ValType.f32(), wasmtime.ValType.i32()], [wasmtime.ValType.i32()])
    assert not fastcall.raw_supported(ty)
    ex = hosted({"mixed": lambda cx, a, b, c: 0, "wide": lambda cx, v: v, "none": lambda cx: None,
                 "float": lambda cx, f, i: i if f == 1.5 else 0})
    assert not isinstance(ex["float"], fastcall.Export)
    assert ex["float"](1.5, -2) == -2  # type: ignore[operator]  # the host saw 2**32 - 2


def test_a_store_dropped_after_the_module_globals_are_gone_does_not_crash() -> None:
    """As the interpreter shuts down it clears module globals before the last stores go, and a
    dropped store calls its host functions' finalizer: a freed finalizer made pytest and
    ``wasmbot abi-test`` runs that kept a failed VM exit with SIGSEGV."""
    script = (
        "import gc, wasmtime\n"
        "from workers.abitest import fastcall\n"
        "from workers.abitest.vm import engine\n"
        "store, linker = wasmtime.Store(engine()), wasmtime.Linker(engine())\n"
        "ty = wasmtime.FuncType([wasmtime.ValType.i32()], [wasmtime.ValType.i32()])\n"
        "fastcall.define(linker, 'env', 'f', ty, lambda cx, v: v)\n"
        "module = wasmtime.Module(engine(), '(module (import \"env\" \"f\" (func (param i32) (result i32))))')\n"
        "instance = linker.instantiate(store, module)\n"
        "vars(fastcall).clear()\n"
        "gc.collect()\n"
        "del store, linker, instance\n"
        "gc.collect()\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
