"""Compile an untrusted module in a child process with an address-space cap; the parent kills
it at the time cap.

wasmtime has no compile timeout or memory limit, and a module of 200k empty functions takes
over a gigabyte and tens of seconds to compile, so compiling happens here, not in the worker.
Run as ``python3 -P compiler.py MEMORY_MB SECONDS < module.wasm > module.cwasm``: the child
sets ``RLIMIT_AS`` (and, against an orphaned child, ``RLIMIT_CPU``) before compiling, compiles
with the engine configuration the parent uses (``engine_config``, so the parent can
deserialise the result) and writes ``Module.serialize()`` to stdout.  Exit status 3: wasmtime
refused it (reason on stderr).  This file imports only wasmtime, so the child starts in about 0.2 s.
"""

from __future__ import annotations

import os
import resource
import sys

import wasmtime

INVALID = 3


def engine_config() -> wasmtime.Config:
    """The one engine configuration of parent and child (deserialising checks it matches).

    Fuel bounds the instructions of a callback; epochs bound its wall-clock time (a loop
    that spends its time in host calls burns little fuel).  Linear memory never moves (it
    grows in place within its reservation, 4 GiB on 64-bit hosts, far above the memory cap),
    so the host keeps its base address for the instance's life (``Guest``).
    """
    config = wasmtime.Config()
    config.consume_fuel = True
    config.epoch_interruption = True
    config.max_wasm_stack = 1 << 20
    config.memory_may_move = False
    return config


def main(argv: list[str]) -> int:
    cap, seconds = int(argv[1]) * 2**20, int(argv[2])
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    cpu = seconds * (os.cpu_count() or 1) + 1  # wall-clock seconds on every core: a backstop
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    wasm = sys.stdin.buffer.read()
    try:
        module = wasmtime.Module(wasmtime.Engine(engine_config()), wasm)
    except wasmtime.WasmtimeError as exc:
        sys.stderr.write(str(exc).splitlines()[0])
        return INVALID
    sys.stdout.buffer.write(module.serialize())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
