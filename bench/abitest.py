"""Benchmark: the ABI harness's simulated requests per second and the cost of one host call.

    python3 bench/abitest.py [--requests 2000] [--calls 200000] [--repeat 5] [--peer DIR]

Each figure comes with a baseline measured in the same run on the same engine:

* requests/s: full HTTP lifecycles (context create, request headers, response headers, done,
  log, delete) through tests/filters/c, a header-adding filter built here with clang, against
  the tightest wasmtime-py loop over the same module: the same six exports called through
  ``workers.abitest.fastcall`` (the call path the harness itself uses), every import a Python
  function linked as the harness links its host functions (``Linker.define_func``) that only
  returns a ready ``Val`` (``proxy_get_header_map_value`` answers NOT_FOUND, so the guest takes
  the same branch), fuel and epoch deadline set once.  harness/tightest is the headline.  The
  same loop through wasmtime-py's public ``Func.__call__`` is printed as a reference (its
  per-call type introspection makes it slower than the harness itself);
* ``--peer DIR``: DIR is a checkout of github.com/proxy-wasm/test-framework (not on crates.io;
  its dependencies must be fetchable or cached for cargo).  bench/peer/wasmbot_peer.rs is
  copied into its examples and run on a WASI-free header filter (``PEER_FILTER``; the
  framework links no WASI), side by side with the harness and the tightest loop on that module;
* host call: a guest loop calling ``proxy_get_current_time_nanoseconds`` through wasmbot's host
  against the same guest loop calling a bare Python host function (returning a ready ``Val``)
  linked with plain wasmtime;
* compile: the filter compiled through the capped path (a child process with time and memory
  caps, its result deserialised; no cache) against ``wasmtime.Module`` in this process.

The best of ``--repeat`` runs is reported (the least disturbed by the rest of the machine), on
the calling thread's CPU clock except for compiling (a child process) and the peer (its own
wall clock).
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


def tight_loop(wasm: bytes, n: int, fast: bool) -> Callable[[], None]:
    """The same six exports per request straight into wasmtime, every import a constant."""
    module, _ = compile_module(wasm, None)
    store = wasmtime.Store(engine())
    store.set_fuel(2**62)
    store.set_epoch_deadline(2**40)
    linker = wasmtime.Linker(engine())
    for imp in module.imports:
        t = imp.type
        assert isinstance(t, wasmtime.FuncType) and imp.name is not None
        # NOT_FOUND for the header: the same branch.  A ready Val, as the harness returns its
        # statuses: wasmtime-py converts one faster than a plain int.
        value = wasmtime.Val.i32(1 if imp.name == "proxy_get_header_map_value" else 0)
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
    if fast:
        steps = [(fastcall.export(store, func(name)), args) for name, args in LIFECYCLE]

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


def peer_rate(checkout: Path, wasm: Path, n: int) -> float:
    """Requests per second through proxy-wasm/test-framework (bench/peer/wasmbot_peer.rs)."""
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
    return float(proc.stdout.split()[-1])


def host_call_cost(calls: int, repeat: int) -> tuple[float, float]:
    name = "proxy_get_current_time_nanoseconds"
    module, _ = compile_module(wasmtime.wat2wasm(LOOP.format(name=name)), None)
    world, guest = World(), Guest()
    host = Host(guest, world, "0.2.1", vm_id="bench", vm_config=b"")
    vm = VM(module, host, Wasi(guest, host.log, world.now_ns), guest, "proxy_on_memory_allocate",
            Limits(fuel=2**62, seconds=3600))
    host.contexts = {1: Context(1, "bench", 0)}
    host.current = host.contexts[1]

    def ours() -> None:
        vm.call("loop", calls)

    store = wasmtime.Store(engine())
    store.set_fuel(2**62)
    store.set_epoch_deadline(2**40)
    linker = wasmtime.Linker(engine())
    ok = wasmtime.Val.i32(0)  # ready, as the harness returns its statuses
    linker.define_func("env", name, wasmtime.FuncType([wasmtime.ValType.i32()], [wasmtime.ValType.i32()]),
                       lambda ptr: ok)
    bare = linker.instantiate(store, module).exports(store)["loop"]
    assert isinstance(bare, wasmtime.Func)

    def baseline() -> None:
        bare(store, calls)

    return best(ours, repeat) / calls * 1e9, best(baseline, repeat) / calls * 1e9


def compile_cost(wasm: bytes, repeat: int) -> tuple[float, float]:
    def capped() -> None:
        wasmtime.Module.deserialize(engine(), compile_capped(wasm, Limits()))

    def direct() -> None:
        wasmtime.Module(engine(), wasm)

    wall = time.perf_counter  # a child compiles, and wasmtime compiles on threads
    return best(capped, repeat, wall), best(direct, repeat, wall)


def compare(label: str, wasm: bytes, n: int, repeat: int) -> float:
    """Harness, tightest loop and the public-API loop on ``wasm``, printed; returns the
    harness's requests/s."""
    ours, tightest, public = (n / t for t in interleaved(
        [harness_loop(wasm, n), tight_loop(wasm, n, True), tight_loop(wasm, n, False)], repeat))
    print(f"requests/s through {label}: {ours:,.0f}")
    print(f"  tightest wasmtime-py loop (same exports through fastcall, constant host functions): "
          f"{tightest:,.0f}/s -> harness/tightest {ours / tightest:.2f}")
    print(f"  reference, the same loop through Func.__call__: {public:,.0f}/s"
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
            peer = max(peer_rate(args.peer, peer_wasm, n) for _ in range(repeat))
            print(f"  proxy-wasm/test-framework on it: {peer:,.0f}/s"
                  f" -> harness/test-framework {ours / peer:.2f}")
    ns, bare_ns = host_call_cost(args.calls, repeat)
    print(f"one host call (proxy_get_current_time_nanoseconds): {ns:,.0f} ns")
    print(f"  baseline, bare Python host function: {bare_ns:,.0f} ns")
    print(f"  harness/baseline: {ns / bare_ns:.2f}")
    capped, direct = compile_cost(wasm, repeat)
    print(f"compiling the filter ({len(wasm):,} bytes) through the capped child: {capped * 1e3:,.0f} ms")
    print(f"  baseline, wasmtime.Module in this process: {direct * 1e3:,.0f} ms")
    print(f"  capped/baseline: {capped / direct:.2f} (once per module: the result is cached)")


if __name__ == "__main__":
    main()
