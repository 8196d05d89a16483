"""The thin ABI harness on hand-written modules (WAT), each breaking one rule Envoy enforces."""

from __future__ import annotations

import wasmtime

from workers.abicheck import HOST_FUNCTIONS, check

FUEL = 50_000_000

GOOD = """
(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes" (func $buf (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "started")
  (global $heap (mut i32) (i32.const 1024))
  (func (export "proxy_abi_version_0_2_0"))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $p i32) (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n))) (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
    (drop (call $log (i32.const 2) (i32.const 16) (i32.const 7))) (i32.const 1))
  (func (export "proxy_on_configure") (param $root i32) (param $size i32) (result i32)
    (drop (call $buf (i32.const 7) (i32.const 0) (local.get $size) (i32.const 0) (i32.const 4)))
    (drop (call $log (i32.const 2) (i32.load (i32.const 0)) (i32.load (i32.const 4))))
    (i32.const 1))
)
"""


def wasm(text: str) -> bytes:
    return wasmtime.wat2wasm(text)


def test_valid_module_runs_vm_start_and_configure_with_its_configuration() -> None:
    report = check(wasm(GOOD), fuel=FUEL, plugin_config=b'{"header":"x-hello"}')
    assert report.ok, report.problems
    assert report.abi_version == "0.2.0"
    assert report.logs == [("info", "started"), ("info", '{"header":"x-hello"}')]


def test_unknown_import_is_named() -> None:
    module = GOOD.replace('(module\n', '(module\n  (import "env" "proxy_make_coffee" (func (param i32) (result i32)))\n', 1)
    report = check(wasm(module), fuel=FUEL)
    assert report.problems == [
        "import env.proxy_make_coffee is not a proxy-wasm host function of ABI 0.2.0; Envoy "
        "would refuse to load the module (missing import)"]


def test_host_function_of_another_abi_version_is_explained() -> None:
    module = GOOD.replace('(module\n', '(module\n  (import "env" "proxy_continue_request" (func (result i32)))\n', 1)
    report = check(wasm(module), fuel=FUEL)
    assert report.problems == [
        "import env.proxy_continue_request is not a proxy-wasm host function of ABI 0.2.0 (it "
        "exists in ABI 0.1.0); Envoy would refuse to load the module (missing import)"]


def test_wrong_signature_and_foreign_module_are_reported() -> None:
    module = GOOD.replace('(module\n', '(module\n  (import "env" "proxy_done" (func (param i32) (result i32)))\n'
                          '  (import "somewhere" "thing" (func))\n', 1)
    report = check(wasm(module), fuel=FUEL)
    assert "import env.proxy_done has signature (i32) -> (i32), expected () -> (i32)" in report.problems
    assert any(p.startswith("import somewhere.thing is from unknown module 'somewhere'") for p in report.problems)


def test_missing_marker_allocator_and_memory_are_each_reported() -> None:
    report = check(wasm("(module (func (export \"proxy_on_vm_start\") (param i32 i32) (result i32) (i32.const 1)))"),
                   fuel=FUEL)
    assert len(report.problems) == 3
    assert report.problems[0].startswith("no ABI version marker")
    assert "Missing or unknown Proxy-Wasm ABI version" in report.problems[0]
    assert report.problems[1].startswith("no exported memory")
    assert report.problems[2].startswith("no allocator")


def test_trap_and_false_results_are_reported() -> None:
    trapping = GOOD.replace("(drop (call $log (i32.const 2) (i32.const 16) (i32.const 7))) (i32.const 1))",
                            "unreachable)")
    report = check(wasm(trapping), fuel=FUEL)
    assert len(report.problems) == 1 and report.problems[0].startswith("proxy_on_vm_start trapped")
    refusing = GOOD.replace("    (i32.const 1))\n)", "    (i32.const 0))\n)")
    report = check(wasm(refusing), fuel=FUEL)
    assert report.problems == ["proxy_on_configure returned false; Envoy would reject the plugin"]


def test_runaway_module_is_stopped_by_its_fuel() -> None:
    looping = GOOD.replace("(drop (call $log (i32.const 2) (i32.const 16) (i32.const 7))) (i32.const 1))",
                           "(loop $l (br $l)) (i32.const 1))")
    report = check(wasm(looping), fuel=FUEL)
    assert len(report.problems) == 1 and "proxy_on_vm_start trapped" in report.problems[0]


def test_not_a_module() -> None:
    assert check(b"\x7fELF....", fuel=FUEL).problems == [
        "not a WebAssembly module (it does not start with \\0asm)"]
    assert check(b"\0asm\x01\0\0\0\xff", fuel=FUEL).problems[0].startswith("not a valid WebAssembly module")


def test_abi_tables_follow_the_spec() -> None:
    assert "proxy_get_log_level" in HOST_FUNCTIONS["0.2.1"]
    assert "proxy_get_log_level" not in HOST_FUNCTIONS["0.2.0"]
    assert "proxy_continue_stream" not in HOST_FUNCTIONS["0.1.0"]
    assert "proxy_get_configuration" not in HOST_FUNCTIONS["0.2.0"]
    assert HOST_FUNCTIONS["0.2.0"]["proxy_increment_metric"] == ("i32", "i64")
