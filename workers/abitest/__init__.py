"""wasmbot's ABI test harness: load, exercise and judge a proxy-wasm module as Envoy would.

``run(wasm, suite)`` validates the module's ABI surface, starts it on a wasmtime host with
every proxy-wasm host function, drives each case of ``wasm-tests.yaml`` through a request's
lifecycle and returns a ``Report`` (renderers in ``workers.abitest.report``).
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import wasmtime

from workers.abitest.cases import Case, CasesError, Suite, load, loads, smoke
from workers.abitest.driver import CaseRun, Instance
from workers.abitest.expect import Difference, judge
from workers.abitest.report import CaseResult, Report
from workers.abitest.state import World
from workers.abitest.validate import Problem, validate
from workers.abitest.vm import CallbackFailed, CompileRefused, Limits, compile_module

__all__ = ["CasesError", "Limits", "Report", "Suite", "load", "loads", "run", "smoke"]

# Where a module that cannot find its root context fails (SDKs register root contexts by name).
ROOT_CALLBACKS = frozenset({"proxy_on_context_create", "proxy_on_vm_start", "proxy_on_configure"})


def _shut_down(inst: Instance, report: Report) -> None:
    """The VM's last callbacks; a failure there is reported like a failed case."""
    try:
        waiting = inst.stop()
    except CallbackFailed as exc:
        report.cases.append(CaseResult("VM shutdown", [Difference("trap", "no failed callback", str(exc))]))
        return
    for root_id in waiting:
        report.warnings.append(Problem(
            "proxy_on_done", f"root context {root_id!r} answered false and never called proxy_done",
            "Envoy waits for proxy_done before it deletes the plugin, delaying its shutdown"))


def _root_id_hint(suite: Suite, case: Case, failure: CallbackFailed | None) -> list[str]:
    """A case whose root context failed under a guessed root id: say how to give the right one."""
    if failure is None or failure.callback not in ROOT_CALLBACKS or not suite.root_id_guess \
            or case.own_root_id:
        return []
    return [f"the root id {case.root_id!r} is {suite.root_id_guess}, a guess: if the module registers "
            "its root context under another name, pass that with --root-id (or root_id in "
            "wasm-tests.yaml)"]


def run(wasm: bytes, suite: Suite, *, limits: Limits | None = None, name: str = "module",
        cache_dir: Path | None = None) -> Report:
    """Validate, then run every case; a module that fails validation runs nothing."""
    limits = limits or Limits()
    started = time.perf_counter()
    report = Report(module=name, size=len(wasm), sha256=hashlib.sha256(wasm).hexdigest(),
                    cases_source=suite.source)
    if len(wasm) > limits.max_module_bytes:
        report.problems.append(Problem("module size", f"{len(wasm)} bytes is over the limit of "
                                       f"{limits.max_module_bytes}", "Istio refuses to fetch it"))
        return report
    if not wasm.startswith(b"\0asm"):
        report.problems.append(Problem("module", "does not start with the \\0asm magic number",
                                       "Envoy and Istio refuse anything but a wasm binary"))
        return report
    try:
        module, report.compile_source = compile_module(wasm, cache_dir, limits)
    except wasmtime.WasmtimeError as exc:
        report.problems.append(Problem("module", f"not a valid WebAssembly module: "
                                       f"{str(exc).splitlines()[0]}", "Envoy fails to load it"))
        return report
    except CompileRefused as exc:
        report.problems.append(Problem("module", str(exc), exc.envoy))
        report.seconds = time.perf_counter() - started
        return report
    v = validate(module, len(wasm), limits.max_module_bytes)
    report.abi_version, report.allocator, report.imports = v.abi_version, v.allocator, v.imports
    report.problems, report.warnings = v.problems, v.warnings
    if not v.ok:
        report.seconds = time.perf_counter() - started
        return report
    world = World(clock_ns=suite.time_ns)
    inst: Instance | None = None
    used: set[str] = set()
    started_roots: set[str] = set()
    for case in suite.cases:
        t0 = time.perf_counter()
        result = CaseResult(case.name)
        if inst is None or inst.broken:
            try:
                inst = Instance(module, v, suite, limits, world)
                inst.start()
            except CallbackFailed as exc:
                result.differences.append(Difference("VM start", "the VM to start", str(exc)))
                report.cases.append(result)
                inst = None
                continue
        out = CaseRun(inst, case).run()
        result.differences = judge(out)
        result.notes = out.notes
        result.notes += _root_id_hint(suite, case, out.failure)
        result.logs = [f"[{line.level_name}] {line.message}" for line in out.logs]
        result.seconds = time.perf_counter() - t0
        report.cases.append(result)
        used |= {name for name, n in inst.host.calls.items() if n}
        started_roots |= set(inst.roots)
    if inst is not None and not inst.broken:
        _shut_down(inst, report)
    report.root_ids = [r for r in suite.root_ids if r in started_roots]
    report.imports_used = sorted(used)
    report.seconds = time.perf_counter() - started
    return report
