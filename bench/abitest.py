"""Benchmark: the ABI harness's simulated requests per second and the cost of one host call.

    python3 bench/abitest.py [--requests 2000] [--calls 200000] [--repeat 5] [--peer DIR]

Each figure comes with a baseline measured in the same run on the same engine:

* requests/s: full HTTP lifecycles (context create, request headers, response headers, done,
  log, delete) through tests/filters/c, a header-adding filter built here with clang, against
  the tightest wasmtime-py loop over the same module: the same six exports called straight
  through wasmtime_func_call_unchecked (which the harness calls through ``fastcall.Export``), every
  import a raw ctypes callback linked through wasmtime_linker_define_func_unchecked that only
  writes a constant result (``proxy_get_header_map_value`` answers NOT_FOUND, so the guest
  takes the same branch), fuel and epoch deadline set once.  That is the cheapest a Python
  host function can be on wasmtime-py (about 0.35 µs a host call, against 6.3 µs through
  ``Linker.define_func``).  harness/tightest is the headline.  Two looser loops are printed
  as references: imports through ``Linker.define_func`` returning a ready ``Val`` (the
  baseline up to December 2026, when the harness used that path too), and that loop with
  exports through wasmtime-py's public ``Func.__call__``;
* ``--peer DIR``: DIR is a checkout of github.com/proxy-wasm/test-framework (not on crates.io;
  its dependencies must be fetchable or cached for cargo).  bench/peer/wasmbot_peer.rs is
  copied into its examples and run on a WASI-free header filter (``PEER_FILTER``; the
  framework links no WASI), side by side with the harness and the tightest loop on that module;
* host call: a guest loop calling ``proxy_get_current_time_nanoseconds`` through wasmbot's host
  against the same guest loop calling a raw callback writing a constant (and, as a reference,
  a ``Linker.define_func`` function returning a ready ``Val``);
* compile: the filter compiled through the capped path (a child process with time and memory
  caps, its result deserialised; no cache) against ``wasmtime.Module`` in this process.

The best of ``--repeat`` runs is reported (the least disturbed by the rest of the machine), on
the calling thread's CPU clock (the peer's too, read from Linux's schedstat; its wall clock
where that is unreadable), except for compiling (a child process).
"""

from __future__ import annotations

import argparse
import math
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import wasmtime

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from workers.abitest import cases, fastcall  # noqa: E402
from workers.abitest.driver import CaseRun, Instance  # noqa: E402
from workers.abitest.guest import Guest  # noqa: E402
from workers.abitest.host import Host  # noqa: E402
from workers.abitest.state import Context, World  # noqa: E402
from workers.abitest.validate import validate  # noqa: E402
from workers.abitest.vm import VM, Limits, compile_capped, compile_module, engine  # noqa: E402
from workers.abitest.wasi import Wasi  # noqa: E402

LIFECYCLE = (("proxy_on_context_create", (2, 1)), ("proxy_on_request_headers", (2, 4, 1)),
             ("proxy_on_response_headers", (2, 1, 1)), ("proxy_on_done", (2,)), ("proxy_on_log", (2,)),
             ("proxy_on_delete", (2,)))

# The C filter's behaviour without WASI (the test-framework links none): read :path, log,
# add a response header; a bump allocator.
PEER_FILTER = """(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 16) ":path")
  (data (i32.const 32) "request")
  (data (i32.const 48) "x-wasm-filter")
  (data (i32.const 64) "hello")
  (func (export "_initialize"))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32) (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (if (i32.gt_u (global.get $heap) (i32.const 120000)) (then (global.set $heap (i32.const 4096))))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $get (i32.const 0) (i32.const 16) (i32.const 5) (i32.const 0) (i32.const 8)))
    (drop (call $log (i32.const 2) (i32.const 32) (i32.const 7)))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (drop (call $add (i32.const 2) (i32.const 48) (i32.const 13) (i32.const 64) (i32.const 5)))
    (i32.const 0))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_delete") (param i32)))"""

LOOP = """(module
  (import "env" "{name}" (func $f (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
  (func (export "loop") (param $n i32)
    (loop $l (drop (call $f (i32.const 64)))
      (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1)))))))"""


def best(fn: Callable[[], None], repeat: int, clock: Callable[[], float] = time.thread_time) -> float:
    """The shortest of ``repeat`` runs, on this thread's CPU clock by default: wasm and the
    host run on the calling thread, and on a loaded machine wall time mostly measures the
    wait for a core."""
    times = []
    for _ in range(repeat):
        started = clock()
        fn()
        times.append(clock() - started)
    return min(times)


def build_filter(out: Path) -> bytes:
    subprocess.run(["clang", "--target=wasm32-wasi", "-O2", "-mexec-model=reactor", "-o", str(out),
                    str(ROOT / "tests/filters/c/filter.c")], check=True)
    return out.read_bytes()


def interleaved(loops: list[Callable[[], None]], repeat: int) -> list[float]:
    """The best time of each loop, the loops taking turns so that load hits them alike."""
    times = [math.inf] * len(loops)
    for _ in range(repeat):
        for i, loop in enumerate(loops):
            times[i] = min(times[i], best(loop, 1))
    return times


def harness_loop(wasm: bytes, n: int) -> Callable[[], None]:
    """``n`` requests through wasmbot's driver and host (one case, run ``n`` times)."""
    module, _ = compile_module(wasm, None)
    v = validate(module, len(wasm), 2**30)
    suite = cases.parse({"plugin_config": "bench", "cases": [{"name": "r"}]}, "add-header")
    inst = Instance(module, v, suite, Limits(), World())
    inst.start()
    case = suite.cases[0]

    def harness() -> None:
        for _ in range(n):
            out = CaseRun(inst, case).run()
            assert out.failure is None and out.streams[0].client.headers is not None
        inst.host.logs.clear()

    return harness


def constant(value: int | None) -> Callable[[int | None, int, Any, int], int]:
    """The cheapest host function there is: a raw callback writing a constant result."""
    if value is None:
        return lambda env, caller, raw, count: 0

    def answer(env: int | None, caller: int, raw: Any, count: int) -> int:
        raw[0] = value
        return 0
    return answer


def tight_loop(wasm: bytes, n: int, kind: str) -> Callable[[], None]:
    """The same six exports per request straight into wasmtime, every import a constant.

    ``tightest``: exports through wasmtime_func_call_unchecked called straight (no
    ``fastcall.Export`` wrapper), imports raw callbacks linked through
    wasmtime_linker_define_func_unchecked that only write their result.  ``define_func``:
    imports through wasmtime-py's ``Linker.define_func`` returning a ready ``Val`` (the
    harness's host-call path before it moved to the unchecked API), exports through
    ``fastcall.Export``.  ``public``: imports so, exports through ``Func.__call__``.
    """
    module, _ = compile_module(wasm, None)
    store = wasmtime.Store(engine())
    store.set_fuel(2**62)
    store.set_epoch_deadline(2**40)
    linker = wasmtime.Linker(engine())
    for imp in module.imports:
        t = imp.type
        assert isinstance(t, wasmtime.FuncType) and imp.name is not None
        # NOT_FOUND for the header: the same branch.
        status = 1 if imp.name == "proxy_get_header_map_value" else 0
        if kind == "tightest":
            assert fastcall.raw_supported(t)
            fastcall.define_raw(linker, imp.module, imp.name, t, constant(status if t.results else None))
        else:
            # A ready Val: wasmtime-py converts one faster than a plain int.
            value = wasmtime.Val.i32(status)
            linker.define_func(imp.module, imp.name, t, (lambda v: lambda *_: v)(value) if t.results
                               else (lambda *_: None))
    exports = linker.instantiate(store, module).exports(store)

    def func(name: str) -> wasmtime.Func:
        f = exports[name]
        assert isinstance(f, wasmtime.Func)
        return f
    init = exports.get("_initialize")
    if isinstance(init, wasmtime.Func):
        init(store)
    func("proxy_on_context_create")(store, 1, 0)
    func("proxy_on_vm_start")(store, 1, 0)
    func("proxy_on_configure")(store, 1, 0)
    if kind == "tightest":
        # wasmtime_func_call_unchecked itself, each export's argument array prebuilt and its
        # arguments written again before each call (its result overwrites the first one).
        raw = []
        for name, args in LIFECYCLE:
            e = fastcall.export(store, func(name))
            assert isinstance(e, fastcall.Export)
            slots = [(2 * i, value) for i, value in enumerate(args)]
            # e last: it keeps the function (and so the address in e.ref) alive
            raw.append((e.c_call, e.context, e.ref, e.at, e.size, e.trap_at, e.slots, slots, e.trap, e))

        def loop() -> None:
            for _ in range(n):
                for c_call, context, ref, at, size, trap_at, array, slots, trap, _ in raw:
                    for i, value in slots:
                        array[i] = value
                    if c_call(context, ref, at, size, trap_at) or trap.value:
                        raise RuntimeError(f"the tight loop's call failed ({ref})")
    elif kind == "define_func":
        steps = [(fastcall.export(store, func(name)), args) for name, args in LIFECYCLE]
        assert all(isinstance(call, fastcall.Export) for call, _ in steps)

        def loop() -> None:
            for _ in range(n):
                for call, args in steps:
                    call(*args)
    else:
        (create, ca), (req, ra), (resp, rsa), (done, da), (log, la), (delete, dla) = [
            (func(name), args) for name, args in LIFECYCLE]

        def loop() -> None:
            for _ in range(n):
                create(store, *ca)
                req(store, *ra)
                resp(store, *rsa)
                done(store, *da)
                log(store, *la)
                delete(store, *dla)

    return loop


def peer_rate(checkout: Path, wasm: Path, n: int) -> tuple[float, str]:
    """Requests per second through proxy-wasm/test-framework (bench/peer/wasmbot_peer.rs) and
    the clock it was timed on: its thread's CPU time, as the Python loops are, where Linux's
    schedstat is readable, else its wall clock."""
    manifest = checkout / "Cargo.toml"
    if 'name = "proxy-wasm-test-framework"' not in (manifest.read_text() if manifest.is_file() else ""):
        raise SystemExit(f"--peer {checkout}: not a checkout of github.com/proxy-wasm/test-framework "
                         "(no Cargo.toml naming proxy-wasm-test-framework)")
    if shutil.which("cargo") is None:
        raise SystemExit("--peer needs cargo on PATH to build the test-framework runner")
    shutil.copy(Path(__file__).with_name("peer") / "wasmbot_peer.rs", checkout / "examples")
    proc = subprocess.run(["cargo", "run", "--quiet", "--release", "--example", "wasmbot_peer", "--",
                           str(wasm), str(n)], cwd=checkout, capture_output=True, text=True, check=False)
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    if proc.returncode != 0:
        raise SystemExit(f"--peer: the test-framework runner failed (exit {proc.returncode}): "
                         f"{lines[-1] if lines else 'no output'}")
    wall, cpu = proc.stdout.split()[-2:]
    return (float(cpu), "CPU") if cpu != "-" else (float(wall), "wall")


def host_call_cost(calls: int, repeat: int) -> tuple[float, float, float]:
    name = "proxy_get_current_time_nanoseconds"
    module, _ = compile_module(wasmtime.wat2wasm(LOOP.format(name=name)), None)
    world, guest = World(), Guest()
    host = Host(guest, world, "0.2.1", vm_id="bench", vm_config=b"")
    vm = VM(module, host, Wasi(guest, host.log, world.now_ns), guest, "proxy_on_memory_allocate",
            Limits(fuel=2**62, seconds=3600))
    host.contexts = {1: Context(1, "bench", 0)}
    host.current = host.contexts[1]

    def bare(kind: str) -> Callable[[], None]:
        store = wasmtime.Store(engine())
        store.set_fuel(2**62)
        store.set_epoch_deadline(2**40)
        linker = wasmtime.Linker(engine())
        ty = wasmtime.FuncType([wasmtime.ValType.i32()], [wasmtime.ValType.i32()])
        if kind == "tightest":
            fastcall.define_raw(linker, "env", name, ty, constant(0))
        else:
            ok = wasmtime.Val.i32(0)
            linker.define_func("env", name, ty, lambda ptr: ok)
        loop = linker.instantiate(store, module).exports(store)["loop"]
        assert isinstance(loop, wasmtime.Func)
        call = fastcall.export(store, loop)
        return lambda: call(calls)

    ours_ns, tightest_ns, define_func_ns = (t / calls * 1e9 for t in interleaved(
        [lambda: vm.call("loop", calls), bare("tightest"), bare("define_func")], repeat))
    return ours_ns, tightest_ns, define_func_ns


def compile_cost(wasm: bytes, repeat: int) -> tuple[float, float]:
    def capped() -> None:
        wasmtime.Module.deserialize(engine(), compile_capped(wasm, Limits()))

    def direct() -> None:
        wasmtime.Module(engine(), wasm)

    wall = time.perf_counter  # a child compiles, and wasmtime compiles on threads
    return best(capped, repeat, wall), best(direct, repeat, wall)


def compare(label: str, wasm: bytes, n: int, repeat: int) -> float:
    """Harness, the tightest loop and the two looser reference loops on ``wasm``, printed;
    returns the harness's requests/s."""
    ours, tightest, define_func, public = (n / t for t in interleaved(
        [harness_loop(wasm, n), tight_loop(wasm, n, "tightest"), tight_loop(wasm, n, "define_func"),
         tight_loop(wasm, n, "public")], repeat))
    print(f"requests/s through {label}: {ours:,.0f}")
    print(f"  tightest wasmtime-py loop (exports straight through wasmtime_func_call_unchecked, "
          f"imports raw unchecked callbacks writing a constant): {tightest:,.0f}/s"
          f" -> harness/tightest {ours / tightest:.2f}")
    print(f"  reference, imports through Linker.define_func returning a ready Val: {define_func:,.0f}/s"
          f" -> harness/define_func loop {ours / define_func:.2f}")
    print(f"  reference, that loop with exports through Func.__call__: {public:,.0f}/s"
          f" -> harness/Func.__call__ loop {ours / public:.2f}")
    return ours


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--peer", type=Path, help="a checkout of proxy-wasm/test-framework")
    args = parser.parse_args()
    n, repeat = args.requests, args.repeat
    with tempfile.TemporaryDirectory() as tmp:
        wasm = build_filter(Path(tmp) / "filter.wasm")
        compare("the add-header C filter", wasm, n, repeat)
        if args.peer:
            peer_wasm = Path(tmp) / "peer-filter.wasm"
            peer_wasm.write_bytes(wasmtime.wat2wasm(PEER_FILTER))
            ours = compare("the WASI-free header filter", peer_wasm.read_bytes(), n, repeat)
            peer, clock = max(peer_rate(args.peer, peer_wasm, n) for _ in range(repeat))
            print(f"  proxy-wasm/test-framework on it ({clock} clock): {peer:,.0f}/s"
                  f" -> harness/test-framework {ours / peer:.2f}")
    ns, bare_ns, define_func_ns = host_call_cost(args.calls, repeat)
    print(f"one host call (proxy_get_current_time_nanoseconds): {ns:,.0f} ns")
    print(f"  baseline, a raw unchecked callback writing a constant: {bare_ns:,.0f} ns"
          f" -> harness/baseline {ns / bare_ns:.2f}")
    print(f"  reference, a Linker.define_func function returning a ready Val: {define_func_ns:,.0f} ns")
    capped, direct = compile_cost(wasm, repeat)
    print(f"compiling the filter ({len(wasm):,} bytes) through the capped child: {capped * 1e3:,.0f} ms")
    print(f"  baseline, wasmtime.Module in this process: {direct * 1e3:,.0f} ms")
    print(f"  capped/baseline: {capped / direct:.2f} (once per module: the result is cached)")


if __name__ == "__main__":
    main()
