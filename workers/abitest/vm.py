"""One proxy-wasm VM on wasmtime: compile (capped, cached), link the host, call exports under limits.

Each export call gets a fresh fuel allowance and a wall-clock deadline, so one runaway callback
fails alone and never hangs the worker; linear memory is capped by the store's limits, and
compiling happens in a child process with a time and memory cap (``workers.abitest.compiler``).
Failures come back as ``CallbackFailed`` or ``CompileRefused`` with a sentence an engineer can
act on.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import wasmtime

from workers.abitest import compiler, epoch, fastcall
from workers.abitest.abi import HOST_FUNCTIONS, WASI_MODULES
from workers.abitest.guest import Guest
from workers.abitest.host import Host, HostViolation, OutOfTime
from workers.abitest.wasi import ENOSYS, ProcExit, Wasi

PAGE = 65536
# What the guest runtimes print when an allocation fails (Rust, Go, TinyGo, C++, AssemblyScript).
OUT_OF_MEMORY = re.compile(r"out of memory|memory allocation of \d+ bytes failed|allocation too large|"
                           r"bad_alloc|failed to allocate", re.IGNORECASE)


@dataclass(frozen=True)
class Limits:
    fuel: int = 1_000_000_000  # per callback: about a second of straight-line work
    seconds: float = 10.0  # per callback, wall clock: catches loops spent in host calls
    memory_bytes: int = 256 * 2**20
    max_module_bytes: int = 256 * 2**20  # Istio's image fetcher default cap
    table_elements: int = 1_000_000
    compile_seconds: float = 30.0  # a 10 MB Go filter compiles in a few seconds
    compile_memory_mb: int = 1024  # the compiler child's address space


class CallbackFailed(Exception):
    """A guest callback trapped, ran out of fuel, exited or broke a host rule."""

    def __init__(self, callback: str, reason: str) -> None:
        super().__init__(f"{callback}: {reason}")
        self.callback = callback
        self.reason = reason


class CompileRefused(Exception):
    """The module is too costly to compile within the caps (or the compiler failed)."""

    envoy = "not tested: raise the cap if a module this costly to compile is intended"


_engine_lock = threading.Lock()
_engine: wasmtime.Engine | None = None
_deadlines: tuple[int, epoch.Deadlines] | None = None  # per process: timers do not survive fork
_modules: OrderedDict[str, wasmtime.Module] = OrderedDict()
_MEMORY_CACHE = 16


def engine() -> wasmtime.Engine:
    """The process's one engine (engines are thread-safe and compiling is the expensive part).

    Its epoch moves only at a guest call's deadline (``deadlines``).
    """
    global _engine
    with _engine_lock:
        if _engine is None:
            _engine = wasmtime.Engine(compiler.engine_config())
        return _engine


def deadlines() -> epoch.Deadlines:
    """This process's deadline timer on the engine."""
    global _deadlines
    eng = engine()
    with _engine_lock:
        if _deadlines is None or _deadlines[0] != os.getpid():
            _deadlines = (os.getpid(), epoch.Deadlines(eng))
        return _deadlines[1]


def _fingerprint() -> str:
    version = getattr(wasmtime, "__version__", "") or _wasmtime_version()
    return hashlib.sha256(f"wasmtime {version} fuel stack=1M fixed-memory".encode()).hexdigest()[:16]


def _wasmtime_version() -> str:
    from importlib.metadata import version
    return version("wasmtime")


def _leb(data: bytes, at: int) -> tuple[int, int]:
    """An unsigned LEB128 at ``at``: (value, offset after it)."""
    value = shift = 0
    while at < len(data) and shift < 35:
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at, shift = at + 1, shift + 7
        if not byte & 0x80:
            return value, at
    raise ValueError("truncated LEB128")


def shape(wasm: bytes) -> tuple[int, int]:
    """(functions defined, bytes of code) from the section headers, for error messages."""
    functions = code = 0
    at = 8
    try:
        while at < len(wasm):
            kind = wasm[at]
            size, at = _leb(wasm, at + 1)
            if kind == 3:
                functions = _leb(wasm, at)[0]
            elif kind == 10:
                code = size
            at += size
    except ValueError:
        return 0, 0
    return functions, code


_CHILD_ENV = {"MALLOC_ARENA_MAX": "2", "RUST_BACKTRACE": "0",  # no secrets, few malloc arenas
              **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}}


def compile_capped(wasm: bytes, limits: Limits) -> bytes:
    """``wasm`` compiled and serialised by a child process held to the limits' compile caps."""
    functions, code = shape(wasm)
    size = f"{functions:,} functions, {code / 2**20:.1f} MiB of code"
    cmd = [sys.executable, "-P", compiler.__file__, str(limits.compile_memory_mb),
           str(math.ceil(limits.compile_seconds))]
    try:
        done = subprocess.run(cmd, input=wasm, capture_output=True, timeout=limits.compile_seconds,
                              env=_CHILD_ENV, cwd="/", check=False)
    except subprocess.TimeoutExpired:
        raise CompileRefused(f"too large to compile within {limits.compile_seconds:g} s "
                             f"(test_compile_seconds): {size}") from None
    if done.returncode == 0:
        return done.stdout
    err = done.stderr.decode("utf-8", "replace").strip()
    if done.returncode == -signal.SIGXCPU:
        raise CompileRefused(f"too large to compile within {limits.compile_seconds:g} s "
                             f"(test_compile_seconds): {size}")
    if done.returncode == -signal.SIGABRT or "memory" in err.lower() or "alloc" in err.lower():
        raise CompileRefused(f"too large to compile within {limits.compile_memory_mb} MiB of "
                             f"memory (test_compile_memory_mb): {size}")
    last = err.splitlines()[-1][:300] if err else f"exit status {done.returncode}"
    raise CompileRefused(f"wasmtime failed to compile it ({size}): {last}")


def compile_module(wasm: bytes, cache_dir: Path | None,
                   limits: Limits | None = None) -> tuple[wasmtime.Module, str]:
    """The compiled module and where it came from: "memory", "disk" or "compiled".

    Compiled code is cached by content hash and engine fingerprint in memory and, when a
    cache directory is given, on disk (wasmtime's own serialisation, written atomically into
    wasmbot's private data directory), so a module is compiled in a child only once.
    Raises ``wasmtime.WasmtimeError`` for an invalid module, ``CompileRefused`` past a cap.
    """
    digest = hashlib.sha256(wasm).hexdigest()
    key = f"{digest}-{_fingerprint()}"
    with _engine_lock:
        if key in _modules:
            _modules.move_to_end(key)
            return _modules[key], "memory"
    eng = engine()
    source = "compiled"
    module: wasmtime.Module | None = None
    path = cache_dir / f"{key}.cwasm" if cache_dir else None
    if path is not None and path.is_file():
        try:
            # Read, not mmap: a file replaced or truncated later cannot fault a running module.
            module = wasmtime.Module.deserialize(eng, path.read_bytes())
            source = "disk"
        except wasmtime.WasmtimeError:
            path.unlink(missing_ok=True)  # made by another wasmtime: compile again
    if module is None:
        wasmtime.Module.validate(eng, wasm)  # cheap and linear: the invalid get wasmtime's reason
        compiled = compile_capped(wasm, limits or Limits())
        module = wasmtime.Module.deserialize(eng, compiled)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as out:
                out.write(compiled)
            os.replace(tmp, path)
    with _engine_lock:
        _modules[key] = module
        while len(_modules) > _MEMORY_CACHE:
            _modules.popitem(last=False)
    return module, source


def _stub(result_count: int) -> Any:
    def stub(*_: Any) -> int | None:
        return ENOSYS if result_count else None
    return stub


class VM:
    """An instantiated module with its host.  Not thread-safe: one VM per running test."""

    def __init__(self, module: wasmtime.Module, host: Host, wasi: Wasi, guest: Guest,
                 allocator: str, limits: Limits) -> None:
        self.limits = limits
        self.host = host
        self.wasi = wasi
        self.guest = guest
        self._first_log = 0  # the running callback's first log line
        self.store = wasmtime.Store(engine())
        self.store.set_limits(memory_size=limits.memory_bytes, table_elements=limits.table_elements)
        self._set_fuel = fastcall.fuel_setter(self.store)
        self._clock = deadlines()
        linker = wasmtime.Linker(engine())
        host_fns = host.functions(list(HOST_FUNCTIONS[host.abi]))
        wasi_fns = wasi.functions()
        defined: set[tuple[str, str]] = set()
        for imp in module.imports:
            t = imp.type
            if not isinstance(t, wasmtime.FuncType) or imp.name is None:
                continue
            if (imp.module, imp.name) in defined:  # a module may import one function twice
                continue
            defined.add((imp.module, imp.name))
            if imp.module == "env" and imp.name in host_fns:
                fn = host_fns[imp.name]
            elif imp.module in WASI_MODULES:
                fn = host.wrap(imp.name, wasi_fns.get(imp.name, _stub(len(t.results))))
            else:
                continue
            fastcall.define(linker, imp.module, imp.name, t, fn)
        clock = self._clock
        self._arm()  # for the start function
        try:
            self.instance = linker.instantiate(self.store, module)
        except wasmtime.Trap as exc:
            raise CallbackFailed("instantiation", self._trap_reason(exc)) from None
        except OutOfTime:
            raise CallbackFailed("instantiation", self._over_time()) from None
        except wasmtime.WasmtimeError as exc:
            raise CallbackFailed("instantiation", str(exc).splitlines()[0]) from None
        finally:
            clock.done()
        self._allocator = guest.bind(self.store, self.instance, allocator)  # the guest's is weak
        self.exports = self.instance.exports(self.store)
        self._callers: dict[str, Any] = {}  # export name -> fastcall caller, or None if absent

    def _caller(self, name: str) -> Any:
        try:
            return self._callers[name]
        except KeyError:
            func = self.exports.get(name)
            caller = self._callers[name] = (fastcall.export(self.store, func)
                                            if isinstance(func, wasmtime.Func) else None)
            return caller

    def has(self, name: str) -> bool:
        callers = self._callers
        return (callers[name] if name in callers else self._caller(name)) is not None

    def call(self, name: str, *args: int) -> int | None:
        """Call export ``name`` with a fresh fuel allowance; None if it returns nothing."""
        return self.call_if_exported(name, *args, missing=CallbackFailed(name, "not exported"))

    def call_if_exported(self, name: str, *args: int, missing: CallbackFailed | None = None) -> int | None:
        """``call``, or None when the module does not export ``name`` (raising ``missing`` then,
        if given): one lookup for the driver, which skips callbacks a module lacks, as Envoy does."""
        try:
            func = self._callers[name]
        except KeyError:
            func = self._caller(name)
        if func is None:
            if missing is not None:
                raise missing
            return None
        host = self.host
        self._first_log = len(host.logs)
        clock = self._clock
        self._set_fuel(self.limits.fuel)
        seconds = self.limits.seconds
        host.deadline = clock.arm(self.store, seconds) + seconds  # _arm, inlined (once a callback)
        try:
            result = func(*args)
        except wasmtime.Trap as exc:
            raise CallbackFailed(name, self._trap_reason(exc)) from None
        except ProcExit as exc:
            raise CallbackFailed(name, f"{exc}{self._memory_hint()}; Envoy treats this as a crash of "
                                 "the VM") from None
        except OutOfTime:
            raise CallbackFailed(name, self._over_time()) from None
        except HostViolation as exc:
            raise CallbackFailed(name, str(exc)) from None
        except wasmtime.WasmtimeError as exc:
            raise CallbackFailed(name, str(exc).splitlines()[0]) from None
        finally:
            clock.done()
            if self.wasi.pending:
                self.wasi.flush()
        return result  # type: ignore[no-any-return]

    def _arm(self) -> None:
        """A fresh fuel allowance, the wall-clock deadline for guest code (``deadlines().arm``;
        call ``self._clock.done()`` after the call) and the one host calls check on return."""
        self._set_fuel(self.limits.fuel)
        seconds = self.limits.seconds
        self.host.deadline = self._clock.arm(self.store, seconds) + seconds

    def _over_time(self) -> str:
        return (f"ran longer than {self.limits.seconds:g} s of wall-clock time: a loop, "
                "probably spent in host calls")

    def memory_bytes(self) -> int:
        mem = self.guest.memory
        return mem.data_len(self.store) if mem is not None else 0

    def _trap_reason(self, exc: wasmtime.Trap) -> str:
        code = exc.trap_code
        if code == wasmtime.TrapCode.OUT_OF_FUEL:
            return (f"ran out of fuel ({self.limits.fuel:,} units for one callback): an infinite "
                    "loop, or far more work than a proxy should do per callback")
        if code == wasmtime.TrapCode.INTERRUPT:
            return self._over_time()
        message = [line.strip() for line in (exc.message or "").splitlines() if line.strip()]
        cause = message[-1].removeprefix("wasm trap: ") if message else ""
        what = f"trap ({code.name.lower().replace('_', ' ')})" if code else "trap"
        frames = [f.func_name or f"func[{f.func_index}]" for f in (exc.frames or [])[:3]]
        where = f" in {' ← '.join(frames)}" if frames else ""
        return f"{what}{where}" + (f": {cause}" if cause else "") + self._memory_hint()

    def _memory_hint(self) -> str:
        """Why a failed callback most likely ran out of memory, or "".  Memory near the cap says
        so; so does the module's own out-of-memory report, since a memory.grow asking for more
        than the cap allows fails (and the guest aborts) with memory far below it."""
        if self.guest.memory is None:
            return ""
        used, cap = self.memory_bytes(), self.limits.memory_bytes
        at = f", with linear memory at {used / 2**20:.1f} MiB of its {cap // 2**20} MiB cap"
        if used >= cap * 3 // 4:
            return f"{at}: the module most likely ran out of memory"
        self.wasi.flush()
        said = next((line.message for line in reversed(self.host.logs[self._first_log:])
                     if OUT_OF_MEMORY.search(line.message)), None)
        if said is None:
            return ""
        return (f"{at}, after the module reported {said[:200]!r}: it most likely asked for more "
                "memory than the cap (test_memory_mb) allows")
