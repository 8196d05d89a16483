"""Test stage: load the built module under wasmtime and run its first lifecycle calls."""

from __future__ import annotations

from pathlib import Path

from workers import abicheck
from workers.stages import StageContext, StageError


def run(ctx: StageContext) -> dict[str, str]:
    build = ctx.job.stage("build").result
    wasm = Path(build["module"]).read_bytes()
    report = abicheck.check(wasm, fuel=ctx.settings.test_fuel)
    for level, text in report.logs:
        ctx.log(f"module [{level}] {text}")
    if report.abi_version:
        ctx.log(f"ABI version {report.abi_version}")
    if not report.ok:
        raise StageError("module would not load in Envoy:\n" + "\n".join(
            f"- {p}" for p in report.problems))
    ctx.log("exports, imports and allocator are valid; proxy_on_vm_start and "
            "proxy_on_configure ran without a trap")
    return {"abi_version": report.abi_version or ""}
