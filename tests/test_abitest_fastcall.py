"""workers.abitest.fastcall: exports called through wasmtime's C API answer as Func.__call__ does."""

from __future__ import annotations

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
