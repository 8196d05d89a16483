"""Failures that say what to do about them (issue 21, point 4): running out of memory below
75% of the cap, an allocator handing out a pointer outside memory, and a guessed root id."""

from __future__ import annotations

from pathlib import Path

import wasmtime
from test_abitest import BASE, LIMITS, only_failure, run
from test_abitest_cases import wasmbot

from workers import abitest

# Asks for far more memory than the 4 MiB cap in one memory.grow (it fails with -1), then
# reports it on stderr as Rust's allocator does and aborts: memory stays at 64 KiB.
BIG_ALLOCATION = """
(import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
(data (i32.const 512) "memory allocation of 327680000 bytes failed\\n")
(func $oom
  (if (i32.ne (memory.grow (i32.const 5000)) (i32.const -1)) (then return))
  (i32.store (i32.const 600) (i32.const 512))
  (i32.store (i32.const 604) (i32.const 44))
  (drop (call $fd_write (i32.const 2) (i32.const 600) (i32.const 1) (i32.const 608)))
  unreachable)
"""


def module(imports: str = "", request_headers: str = "", allocator: str | None = None) -> bytes:
    text = BASE.replace(";;IMPORTS", imports).replace(";;REQUEST_HEADERS", request_headers)
    if allocator is not None:
        text = text.replace("(global.set $heap (i32.add (global.get $heap) (local.get $n))) (local.get $p))",
                            allocator + ")")
    return wasmtime.wat2wasm(text)


def test_a_failed_growth_far_below_the_cap_still_gets_the_out_of_memory_hint() -> None:
    failure = only_failure(run(module(imports=BIG_ALLOCATION, request_headers="(call $oom)")))
    assert "proxy_on_request_headers: trap (unreachable)" in failure
    assert failure.endswith(
        ", with linear memory at 0.1 MiB of its 4 MiB cap, after the module reported "
        "'memory allocation of 327680000 bytes failed': it most likely asked for more memory "
        "than the cap (test_memory_mb) allows"), failure


def test_a_trap_without_memory_trouble_gets_no_hint() -> None:
    failure = only_failure(run(module(request_headers="unreachable")))
    assert "MiB" not in failure, failure


def test_an_allocator_returning_a_pointer_outside_memory_is_reported_as_such() -> None:
    report = run(module(allocator="(i32.const 0x7fff0000)"))
    assert [str(d) for d in report.cases[0].differences] == [
        "allocator: expected every copy-out to succeed, got proxy_get_header_map_value: "
        "proxy_on_memory_allocate(1) returned 0x7fff0000, outside linear memory (65,536 bytes)"]
    report = run(module(allocator="(i32.const -8)"))  # wasmtime hands i32 results over signed
    assert "proxy_on_memory_allocate(1) returned 0xfffffff8, outside linear memory" in str(
        report.cases[0].differences[0])


# proxy_on_configure fails unless the plugin's root id is "my-root", the way SDKs that
# register root contexts by name fail for a name they do not know.
ROOT_BY_NAME = BASE.replace(
    ";;IMPORTS", '(import "env" "proxy_get_property" (func $prop (param i32 i32 i32 i32) (result i32)))').replace(
    '(func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))',
    """(data (i32.const 400) "plugin_root_id")
       (func (export "proxy_on_configure") (param i32 i32) (result i32)
         (drop (call $prop (i32.const 400) (i32.const 14) (i32.const 0) (i32.const 4)))
         (i32.eq (i32.load (i32.const 4)) (i32.const 7)))""")


def test_a_guessed_root_id_comes_with_a_hint_when_the_root_context_fails() -> None:
    wasm = wasmtime.wat2wasm(ROOT_BY_NAME)
    guessed = abitest.run(wasm, abitest.smoke("filter", root_id_guess="the module's file name"),
                          limits=LIMITS, name="filter.wasm")
    assert "proxy_on_configure: returned false" in only_failure(guessed)
    assert guessed.cases[0].notes == [
        "the root id 'filter' is the module's file name, a guess: if the module registers its root "
        "context under another name, pass that with --root-id (or root_id in wasm-tests.yaml)"]
    given = abitest.run(wasm, abitest.smoke("filter"), limits=LIMITS, name="filter.wasm")
    assert not given.ok and given.cases[0].notes == []
    assert abitest.run(wasm, abitest.smoke("my-root", root_id_guess="x"), limits=LIMITS).ok


def test_the_cli_hints_at_root_id_only_when_it_guessed(tmp_path: Path) -> None:
    module_path = tmp_path / "filter.wasm"
    module_path.write_bytes(wasmtime.wat2wasm(ROOT_BY_NAME))
    guessed = wasmbot("abi-test", str(module_path), cwd=tmp_path)
    assert guessed.returncode == 1
    assert "note: the root id 'filter' is the module's file name, a guess" in guessed.stdout
    given = wasmbot("abi-test", str(module_path), "--root-id", "my-root", cwd=tmp_path)
    assert given.returncode == 0, given.stdout
    (tmp_path / "wasm-tests.yaml").write_text("root_id: other\ncases:\n  - name: plain\n")
    from_file = wasmbot("abi-test", str(module_path), cwd=tmp_path)
    assert from_file.returncode == 1 and "a guess" not in from_file.stdout
