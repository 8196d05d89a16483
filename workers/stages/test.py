"""Test stage: run the module through the ABI harness with the source's ``wasm-tests.yaml``.

The module and the cases are the build's, read from shared storage (the source itself may be
on another host); the report (JSON for front ends, JUnit XML) is kept there too, so any
worker may test and any front end may show it."""

from __future__ import annotations

import json
from pathlib import Path

from workers import abitest
from workers.abitest.report import render_text, to_junit
from workers.config import Settings
from workers.stages import StageContext, StageError, keep, load


def limits(settings: Settings) -> abitest.Limits:
    return abitest.Limits(fuel=settings.test_fuel, seconds=settings.test_callback_seconds,
                          memory_bytes=settings.test_memory_mb * 2**20,
                          max_module_bytes=settings.test_max_module_mb * 2**20,
                          compile_seconds=settings.test_compile_seconds,
                          compile_memory_mb=settings.test_compile_memory_mb)


def cache_dir(settings: Settings) -> Path:
    return settings.data_dir / "cache" / "compiled"


def run(ctx: StageContext) -> dict[str, str]:
    build = ctx.job.stage("build").result
    wasm = load(ctx, build["module"])
    root_id = (build.get("root_ids") or "").split(",")[0] or "root"
    if "test_cases" not in build:
        raise StageError("this module was built by an earlier wasmbot, which kept no test cases "
                         "with it: run the job again")
    name = build.get("test_cases_name") or "wasm-tests.yaml"
    try:
        if build["test_cases"]:
            suite = abitest.loads(load(ctx, build["test_cases"]).decode(errors="replace"), name, root_id)
        else:
            ctx.log(f"no {name} beside the source: running one plain GET")
            suite = abitest.smoke(root_id)
    except abitest.CasesError as exc:
        raise StageError(str(exc)) from None
    report = abitest.run(wasm, suite, limits=limits(ctx.settings), name="filter.wasm",
                         cache_dir=cache_dir(ctx.settings))
    for line in render_text(report).splitlines():
        ctx.log(line)
    junit = keep(ctx, "abi-test.xml", to_junit(report).encode())
    stored = keep(ctx, "abi-test.json", json.dumps(report.to_dict()).encode())  # front ends: Report.from_dict
    if not report.ok:
        details = [str(p) for p in report.problems] or [
            f"{c.name}: {c.differences[0]}" for c in report.failed]
        raise StageError(report.headline() + "\n" + "\n".join(f"- {d}" for d in details))
    return {"abi_version": report.abi_version or "",
            "cases": f"{len(report.passed)}/{len(report.cases)}", "junit": junit, "report": stored,
            "tested_sha256": f"sha256:{report.sha256}"}
