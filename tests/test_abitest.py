"""The ABI harness on hand-written modules (WAT), each breaking one rule or hitting one limit."""

from __future__ import annotations

import gc
import weakref

import wasmtime

from workers import abitest
from workers.abitest import cases
from workers.abitest.driver import CaseRun, Instance
from workers.abitest.state import World
from workers.abitest.validate import validate
from workers.abitest.vm import Limits, compile_module

LIMITS = Limits(fuel=5_000_000, memory_bytes=4 * 2**20, max_module_bytes=2**20)

BASE = """
(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  ;;IMPORTS
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (data (i32.const 16) ":path")
  (data (i32.const 32) "request seen")
  ;;MARKER
  (func (export "proxy_abi_version_0_2_0"))
  ;;ALLOCATOR
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $p i32) (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n))) (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    ;;REQUEST_HEADERS
    (drop (call $get (i32.const 0) (i32.const 16) (i32.const 5) (i32.const 0) (i32.const 4)))
    (drop (call $log (i32.const 2) (i32.const 32) (i32.const 12)))
    (i32.const 0))
)
"""


def module(**parts: str) -> bytes:
    text = BASE
    for key, value in parts.items():
        marker = f";;{key.upper()}"
        assert marker in text, key
        text = text.replace(marker, value)
    return wasmtime.wat2wasm(text)


def without(text: str, start: str, lines: int = 1) -> bytes:
    """The base module with ``lines`` lines starting at the one containing ``start`` removed."""
    rows = BASE.splitlines()
    i = next(n for n, row in enumerate(rows) if start in row)
    return wasmtime.wat2wasm("\n".join(rows[:i] + rows[i + lines:]))


def run(wasm: bytes, suite: cases.Suite | None = None) -> abitest.Report:
    return abitest.run(wasm, suite or abitest.smoke("root"), limits=LIMITS, name="t.wasm")


def only_failure(report: abitest.Report) -> str:
    assert not report.problems, report.problems
    assert len(report.cases) == 1 and not report.ok
    return str(report.cases[0].differences[0])


def test_the_base_module_passes() -> None:
    report = run(module())
    assert report.ok, report.cases[0].differences
    assert report.abi_version == "0.2.0" and report.root_ids == ["root"]
    assert report.cases[0].logs == ["[info] request seen"]
    assert "proxy_get_header_map_value" in report.imports_used


def test_missing_abi_marker() -> None:
    report = run(without(BASE, "proxy_abi_version_0_2_0"))
    assert [(p.name, p.message) for p in report.problems] == [
        ("ABI version", "no export proxy_abi_version_0_1_0, _0_2_0 or _0_2_1")]
    assert "Missing or unknown Proxy-Wasm ABI version" in report.problems[0].envoy
    assert report.cases == [] and not report.ok


def test_unknown_import() -> None:
    report = run(module(imports='(import "env" "proxy_make_coffee" (func (param i32) (result i32)))'))
    assert [str(p) for p in report.problems] == [
        "env.proxy_make_coffee: not a proxy-wasm host function of ABI 0.2.0 (Envoy refuses to load "
        "the module: missing import)"]


def test_import_from_another_abi_version_says_which() -> None:
    report = run(module(imports='(import "env" "proxy_get_log_level" (func (param i32) (result i32)))'))
    assert report.problems[0].message == ("not a proxy-wasm host function of ABI 0.2.0 (it exists in "
                                          "ABI 0.2.1)")


def test_wrong_import_signature_and_unknown_module() -> None:
    report = run(module(imports='(import "env" "proxy_done" (func (param i32) (result i32)))\n'
                                '(import "somewhere" "thing" (func))'))
    messages = {p.name: p.message for p in report.problems}
    assert messages["env.proxy_done"] == "signature (i32) -> (i32), expected () -> (i32)"
    assert messages["somewhere.thing"].startswith("import from unknown module 'somewhere'")


def test_missing_allocator() -> None:
    report = run(without(BASE, "proxy_on_memory_allocate", lines=3))
    assert [(p.name, p.envoy) for p in report.problems] == [
        ("allocator", 'Envoy fails to load the module: "missing malloc function"')]


def test_malloc_is_accepted_as_cpp_host_does() -> None:
    wasm = wasmtime.wat2wasm(BASE.replace('(export "proxy_on_memory_allocate")', '(export "malloc")'))
    report = run(wasm)
    assert report.ok and report.allocator == "malloc"


def test_missing_memory_and_wrong_callback_signature() -> None:
    text = BASE.replace('(memory (export "memory") 1)', "(memory 1)").replace(
        '(func (export "proxy_on_vm_start") (param i32 i32)', '(func (export "proxy_on_vm_start") (param i32)')
    report = run(wasmtime.wat2wasm(text))
    names = [p.name for p in report.problems]
    assert names == ["memory", "proxy_on_vm_start"]
    assert "expected (i32, i32) -> (i32) in ABI 0.2.0" in report.problems[1].message


def test_not_a_module_and_a_broken_one() -> None:
    assert run(b"\x7fELF....").problems[0].message == "does not start with the \\0asm magic number"
    assert run(b"\0asm\x01\0\0\0\xff").problems[0].message.startswith("not a valid WebAssembly module")


def test_module_over_the_size_limit() -> None:
    wasm = module()
    report = abitest.run(wasm, abitest.smoke("r"), limits=Limits(max_module_bytes=len(wasm) - 1))
    assert report.problems[0].name == "module size" and report.cases == []


def test_trap_in_a_callback_fails_the_case_and_names_the_callback() -> None:
    report = run(module(request_headers="unreachable"))
    assert only_failure(report) == ("trap: expected no failed callback, got proxy_on_request_headers: "
                                    "trap (unreachable) in func[7]: wasm `unreachable` instruction executed")


def test_infinite_loop_is_stopped_by_fuel() -> None:
    report = run(module(request_headers="(loop $forever (br $forever))"))
    failure = only_failure(report)
    assert "proxy_on_request_headers: ran out of fuel (5,000,000 units for one callback)" in failure
    assert "infinite loop" in failure


def test_memory_growth_past_the_cap_fails_with_the_reason() -> None:
    bomb = """(block $done (loop $grow
                (br_if $done (i32.eq (memory.grow (i32.const 16)) (i32.const -1)))
                (br $grow)))
              unreachable"""
    failure = only_failure(run(module(request_headers=bomb)))
    assert "proxy_on_request_headers: trap (unreachable)" in failure
    assert "with linear memory at 3.1 MiB of its 4 MiB cap: the module most likely ran out of memory" in failure


def test_allocator_returning_zero_fails_the_case() -> None:
    text = BASE.replace("(global.set $heap (i32.add (global.get $heap) (local.get $n))) (local.get $p))",
                        "(i32.const 0))")
    report = run(wasmtime.wat2wasm(text))
    assert not report.problems
    diffs = [str(d) for d in report.cases[0].differences]
    assert diffs == ["allocator: expected every copy-out to succeed, got proxy_get_header_map_value: "
                     "proxy_on_memory_allocate(1) returned 0"]


def test_a_trapped_vm_is_replaced_for_the_next_case() -> None:
    trap_on_deny = """(if (i32.eqz (call $get (i32.const 0) (i32.const 64) (i32.const 6) (i32.const 0)
                                     (i32.const 4))) (then unreachable))"""
    text = BASE.replace(";;REQUEST_HEADERS", trap_on_deny).replace(
        '(data (i32.const 32) "request seen")', '(data (i32.const 32) "request seen")\n(data (i32.const 64) "x-deny")')
    suite = cases.parse({"cases": [
        {"name": "denied", "request": {"headers": {"x-deny": "1"}}, "expect": {"trap": "unreachable"}},
        {"name": "next request is served by a fresh VM", "expect": {"logs": [{"matches": "request seen"}]}},
    ]}, "root")
    report = run(wasmtime.wat2wasm(text), suite)
    assert report.ok, [c.differences for c in report.cases]


def test_vm_start_and_configure_returning_false() -> None:
    refusing = BASE.replace('(func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))',
                            '(func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 0))')
    failure = only_failure(run(wasmtime.wat2wasm(refusing)))
    assert "proxy_on_configure: returned false: Envoy rejects this plugin configuration" in failure
    not_starting = BASE.replace('(func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))',
                                '(func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 0))')
    assert "proxy_on_vm_start: returned false" in only_failure(run(wasmtime.wat2wasm(not_starting)))


def test_abi_010_module_gets_two_argument_header_callbacks() -> None:
    text = BASE.replace("proxy_abi_version_0_2_0", "proxy_abi_version_0_1_0").replace(
        '(func (export "proxy_on_request_headers") (param i32 i32 i32)',
        '(func (export "proxy_on_request_headers") (param i32 i32)')
    report = run(wasmtime.wat2wasm(text))
    assert report.ok and report.abi_version == "0.1.0"
    wrong = BASE.replace("proxy_abi_version_0_2_0", "proxy_abi_version_0_1_0")
    report = run(wasmtime.wat2wasm(wrong))
    assert [p.name for p in report.problems] == ["proxy_on_request_headers"]


def test_a_loop_of_host_calls_is_stopped_by_the_wall_clock_deadline() -> None:
    """Host calls burn little fuel; the per-callback deadline still ends the loop."""
    spin = "(loop $forever (drop (call $log (i32.const 0) (i32.const 32) (i32.const 12))) (br $forever))"
    report = abitest.run(module(request_headers=spin), abitest.smoke("root"),
                         limits=Limits(fuel=10**15, seconds=0.5), name="t.wasm")
    failure = only_failure(report)
    assert "proxy_on_request_headers: ran longer than 0.5 s of wall-clock time" in failure


def test_log_lines_are_capped_per_case() -> None:
    chatty = """(func $chatty (local $i i32) (local.set $i (i32.const 12000))
                  (loop $l (drop (call $log (i32.const 2) (i32.const 32) (i32.const 12)))
                    (br_if $l (local.tee $i (i32.sub (local.get $i) (i32.const 1))))))"""
    suite = cases.parse({"cases": [{"name": "chatty"}, {"name": "next case logs again", "expect": {
        "logs": [{"matches": "request seen"}]}}]}, "root")
    report = run(module(imports=chatty, request_headers="(call $chatty)"), suite)
    assert report.ok, [c.differences for c in report.cases]
    first, second = report.cases
    assert len(first.logs) == 10_000
    assert first.notes == ["2001 more log lines were dropped (the limit is 10000 per case)"]
    assert len(second.logs) == 10_000 and second.notes  # the cap is per case, not per VM


def test_vm_shutdown_calls_on_done_and_reports_a_root_that_never_finishes() -> None:
    text = BASE.replace('(func (export "proxy_on_context_create") (param i32 i32))',
                        '(func (export "proxy_on_context_create") (param i32 i32))\n'
                        '(func (export "proxy_on_done") (param $c i32) (result i32) (i32.ne (local.get $c) (i32.const 1)))')
    report = run(wasmtime.wat2wasm(text))
    assert report.ok  # a warning, not a failure
    assert [str(w) for w in report.warnings] == [
        "proxy_on_done: root context 'root' answered false and never called proxy_done (Envoy waits "
        "for proxy_done before it deletes the plugin, delaying its shutdown)"]
    trapping = BASE.replace('(func (export "proxy_on_context_create") (param i32 i32))',
                            '(func (export "proxy_on_context_create") (param i32 i32))\n'
                            '(func (export "proxy_on_delete") (param $c i32) (if (i32.eq (local.get $c) (i32.const 1)) (then unreachable)))')
    report = run(wasmtime.wat2wasm(trapping))
    assert [c.name for c in report.failed] == ["VM shutdown"]


def test_ticks_need_a_tick_period() -> None:
    suite = cases.parse({"cases": [{"name": "t", "ticks": 2}]}, "root")
    report = run(module(), suite)
    assert report.ok
    assert report.cases[0].notes == ["the case asks for 2 tick(s) but the filter set no tick period; "
                                     "Envoy never calls proxy_on_tick then"]


def test_a_finished_vm_releases_its_store_and_linear_memory() -> None:
    """The host functions are registered with wasmtime from a process-wide table; nothing in it
    may keep a VM's store alive, or every test run in a worker keeps its guest memory."""
    wasm = module()
    compiled, _ = compile_module(wasm, None, LIMITS)
    v = validate(compiled, len(wasm), LIMITS.max_module_bytes)
    suite = abitest.smoke("root")
    inst = Instance(compiled, v, suite, LIMITS, World())
    inst.start()
    assert CaseRun(inst, suite.cases[0]).run().failure is None
    store = weakref.ref(inst.vm.store)
    del inst
    gc.collect()
    assert store() is None
