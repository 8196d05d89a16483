"""Benchmark: the ABI harness's simulated requests per second and the cost of one host call.

    python3 bench/abitest.py [--requests 2000] [--calls 200000] [--repeat 5]

Each figure comes with a baseline measured in the same run on the same engine:

* requests/s: full HTTP lifecycles (context create, request headers, response headers, done,
  log, delete) through tests/filters/c, a header-adding filter built here with clang, against
  a bare wasmtime loop that calls the same number of no-op exports per "request" from Python;
* host call: a guest loop calling ``proxy_get_current_time_nanoseconds`` through wasmbot's host
  against the same guest loop calling a bare Python host function linked with plain wasmtime;
* compile: the filter compiled through the capped path (a child process with time and memory
  caps, its result deserialised; no cache) against ``wasmtime.Module`` in this process.

The best of ``--repeat`` runs is reported (the least disturbed by the rest of the machine).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import wasmtime

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from workers.abitest import cases  # noqa: E402
from workers.abitest.driver import CaseRun, Instance  # noqa: E402
from workers.abitest.guest import Guest  # noqa: E402
from workers.abitest.host import Host  # noqa: E402
from workers.abitest.state import Context, World  # noqa: E402
from workers.abitest.validate import validate  # noqa: E402
from workers.abitest.vm import VM, Limits, compile_capped, compile_module, engine  # noqa: E402
from workers.abitest.wasi import Wasi  # noqa: E402

CALLS_PER_REQUEST = 6  # context create, request headers, response headers, done, log, delete

LOOP = """(module
  (import "env" "{name}" (func $f (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
  (func (export "noop") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "loop") (param $n i32)
    (loop $l (drop (call $f (i32.const 64)))
      (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1)))))))"""


def best(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def build_filter(out: Path) -> bytes:
    subprocess.run(["clang", "--target=wasm32-wasi", "-O2", "-mexec-model=reactor", "-o", str(out),
                    str(ROOT / "tests/filters/c/filter.c")], check=True)
    return out.read_bytes()


def requests_per_second(wasm: bytes, n: int, repeat: int) -> tuple[float, float]:
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

    # Baseline: the same number of export calls per request, straight into wasmtime.
    store = wasmtime.Store(engine())
    store.set_fuel(2**62)
    store.set_epoch_deadline(2**40)
    bare = wasmtime.Instance(store, wasmtime.Module(engine(), wasmtime.wat2wasm(
        LOOP.format(name="unused").replace('(import "env" "unused" (func $f (param i32) (result i32)))', "")
        .replace("(drop (call $f (i32.const 64)))", ""))), [])
    noop = bare.exports(store)["noop"]
    assert isinstance(noop, wasmtime.Func)

    def baseline() -> None:
        for _ in range(n * CALLS_PER_REQUEST):
            noop(store, 1, 2, 0)

    return n / best(harness, repeat), n / best(baseline, repeat)


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
    linker.define_func("env", name, wasmtime.FuncType([wasmtime.ValType.i32()], [wasmtime.ValType.i32()]),
                       lambda ptr: 0)
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

    return best(capped, repeat), best(direct, repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wasm = build_filter(Path(tmp) / "filter.wasm")
    ours, bare = requests_per_second(wasm, args.requests, args.repeat)
    print(f"requests/s through the add-header filter: {ours:,.0f}")
    print(f"  baseline, {CALLS_PER_REQUEST} bare wasmtime export calls per request: {bare:,.0f}/s")
    print(f"  harness/baseline: {ours / bare:.2f}")
    ns, bare_ns = host_call_cost(args.calls, args.repeat)
    print(f"one host call (proxy_get_current_time_nanoseconds): {ns:,.0f} ns")
    print(f"  baseline, bare Python host function: {bare_ns:,.0f} ns")
    print(f"  harness/baseline: {ns / bare_ns:.2f}")
    capped, direct = compile_cost(wasm, args.repeat)
    print(f"compiling the filter ({len(wasm):,} bytes) through the capped child: {capped * 1e3:,.0f} ms")
    print(f"  baseline, wasmtime.Module in this process: {direct * 1e3:,.0f} ms")
    print(f"  capped/baseline: {capped / direct:.2f} (once per module: the result is cached)")


if __name__ == "__main__":
    main()
