"""What wasmbot shows on GitHub: check run output (with annotations) and the one PR comment.

Pure functions of job records, so the text is easy to test and the same after a restart.
"""

from __future__ import annotations

import json
import posixpath
import re
import time
from pathlib import Path, PurePosixPath
from typing import Any

from workers.commands import source_of
from workers.jobs import Job, State

MARKER = "<!-- wasmbot:pull-request -->"
MAX_ANNOTATIONS = 50  # GitHub takes at most 50 per request
MAX_TEXT = 60000  # check run summary and text are capped at 65535 characters
MAX_COMMENT = 65000  # GitHub refuses a comment body of more than 65,536 characters
TRUNCATED = "\n\n… (cut short: a GitHub comment holds at most 65,536 characters)"
ICONS = {
    State.SUCCEEDED: "✅",
    State.FAILED: "❌",
    State.RUNNING: "⏳",
    State.QUEUED: "🕒",
    State.PENDING: "·",
    State.SKIPPED: "⏭",
    State.CANCELLED: "🚫",
}
# clang/gcc/go/tinygo "path:line[:col]: error: message"; rustc "--> path:line:col" after "error…".
_COMPILER = re.compile(
    r"^\s*(?:/src/)?(?P<path>[\w.+/-]+\.\w+):(?P<line>\d+)(?::(?P<col>\d+))?:\s*"
    r"(?:(?P<level>error|warning|fatal error):\s*)?(?P<message>.+)$"
)
_RUST_AT = re.compile(r"^\s*--> (?:/src/)?(?P<path>[\w.+/-]+):(?P<line>\d+):(?P<col>\d+)")
_AS = re.compile(
    r"^\s*(?:ERROR|WARNING) (?P<code>\w+): (?P<message>.+?)(?: in (?P<path>[\w./-]+)"
    r"\((?P<line>\d+),(?P<col>\d+)\))?$"
)


def size(n: int) -> str:
    return f"{n / 1024:.1f} KiB" if n >= 1024 else f"{n} B"


def size_change(job: Job, base: int | None, base_ref: str) -> str:
    current = job.artifacts.get("module_size")
    if not current:
        return ""
    if base is None:
        return f"{size(int(current))} (no build of {base_ref} to compare with yet)"
    delta = int(current) - base
    sign = "+" if delta >= 0 else "-"
    percent = f", {delta / base * 100:+.1f}%" if base else ""
    return f"{size(int(current))} ({sign}{size(abs(delta))}{percent} against {base_ref})"


def stage_table(job: Job) -> str:
    rows = ["| stage | result | time | details |", "|---|---|---|---|"]
    for stage in job.stages:
        elapsed = f"{stage.elapsed:.1f} s" if stage.elapsed is not None else ""
        detail = (stage.error or "").splitlines()[0] if stage.error else _detail(stage.name, stage.result)
        detail = detail.replace("|", "\\|")
        icon = ICONS.get(stage.state, "")
        rows.append(f"| {stage.name} | {icon} {stage.state.value} | {elapsed} | {detail} |")
    return "\n".join(rows)


def _detail(name: str, result: dict[str, Any]) -> str:
    if name == "build" and result.get("module_size"):
        return f"{result.get('lang', '')} module, {size(int(result['module_size']))}"
    if name == "test" and result.get("cases"):
        return f"ABI {result.get('abi_version') or '?'}: {result['cases']} cases passed"
    if name == "push" and result.get("digest"):
        return f"`{result.get('image')}@{result['digest']}`"
    if name == "fetch" and result.get("commit"):
        return f"commit {str(result['commit'])[:12]}"
    return ""


def conclusion(job: Job) -> str | None:
    """The check run conclusion for a finished job; None while it runs."""
    return {State.SUCCEEDED: "success", State.FAILED: "failure", State.CANCELLED: "cancelled"}.get(job.state)


def check_output(job: Job, base: int | None, base_ref: str) -> dict[str, Any]:
    failed = job.failed_stage()
    if job.state is State.SUCCEEDED:
        title = "built and tested" + (
            f", {size_change(job, base, base_ref)}" if job.artifacts.get("module_size") else ""
        )
    elif failed is not None and job.state is State.CANCELLED:
        title = (failed.error or "cancelled")[:200]
    elif failed is not None:
        title = f"{failed.name} failed: {(failed.error or '').splitlines()[0][:180]}"
    else:
        title = {State.QUEUED: "queued", State.RUNNING: "running"}.get(job.state, job.state.value)
    summary = [stage_table(job)]
    if job.artifacts.get("module_size"):
        summary.append(f"**Module size:** {size_change(job, base, base_ref)}")
    report = _abi_report(job)
    text = report or ""
    if failed is not None and failed.error and failed.name != "test":
        text = f"```\n{failed.error[:MAX_TEXT]}\n```\n\n{text}"
    output: dict[str, Any] = {"title": title, "summary": "\n\n".join(summary)[:MAX_TEXT]}
    if text:
        output["text"] = text[:MAX_TEXT]
    notes = compiler_annotations(job)
    if notes:
        output["annotations"] = notes
    return output


def _abi_report(job: Job) -> str | None:
    path = job.artifacts.get("report")
    if not path or not Path(path).is_file():
        return None
    from workers.abitest.report import Report, render_markdown

    return render_markdown(Report.from_dict(json.loads(Path(path).read_text())))


def compiler_annotations(job: Job) -> list[dict[str, Any]]:
    """Compiler errors with a file and line, as check run annotations on the repository's paths."""
    build = next((s for s in job.stages if s.name == "build"), None)
    if build is None or not build.error:
        return []
    source = source_of(job.command) or "."
    found: list[dict[str, Any]] = []
    lines = build.error.splitlines()
    for i, line in enumerate(lines):
        hit = _COMPILER.match(line)
        if hit and (hit["level"] or "error" in hit["message"].lower()):
            level, message = hit["level"] or "error", hit["message"]
        elif (hit := _RUST_AT.match(line)) and i > 0:
            level, message = "error", lines[i - 1].strip().removeprefix("error").lstrip(":[]E0123456789 ")
        elif (hit := _AS.match(line)) and hit["path"]:
            level, message = "error", f"{hit['code']}: {hit['message']}"
        else:
            continue
        # Recipes name sources "./NAME" (never an option) and compile in /src: repository paths.
        relative = posixpath.normpath(hit["path"]).removeprefix("/src/")
        path = str(PurePosixPath(source) / relative) if source not in ("", ".") else relative
        note = {
            "path": path,
            "start_line": int(hit["line"]),
            "end_line": int(hit["line"]),
            "annotation_level": "warning" if level == "warning" else "failure",
            "message": message,
        }
        if hit["col"]:
            note["start_column"] = note["end_column"] = int(hit["col"])
        if note not in found:
            found.append(note)
    return found[:MAX_ANNOTATIONS]


def pr_comment(runs: list[Job], held: str | None = None, check_urls: dict[str, str] | None = None) -> str:
    """The one comment wasmbot keeps on a pull request: the newest run first, then earlier ones."""
    lines = [MARKER, "### wasmbot"]
    if held:
        lines += ["", f"⏸ {held}"]
    if runs:
        latest = runs[0]
        sha = latest.reports.get("github", {}).get("sha", "")[:7]
        link = (check_urls or {}).get(latest.id)
        lines += [
            "",
            f"**{ICONS.get(latest.state, '')} {latest.state.value}** for {sha} "
            f"(job `{latest.id}`{f', [details]({link})' if link else ''})",
            "",
            stage_table(latest),
        ]
        if latest.artifacts.get("module_size") and latest.reports.get("github", {}).get("size_change"):
            lines += ["", f"**Module size:** {latest.reports['github']['size_change']}"]
    if len(runs) > 1:
        lines += ["", "<details><summary>Earlier runs</summary>", ""]
        for job in runs[1:10]:
            when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(job.created_at))
            failed = job.failed_stage()
            why = f": {failed.error.splitlines()[0][:120]}" if failed is not None and failed.error else ""
            lines.append(
                f"- {ICONS.get(job.state, '')} {job.reports.get('github', {}).get('sha', '')[:7]} "
                f"`{job.id}` {job.state.value}{why} ({when})"
            )
        lines += ["", "</details>"]
    lines += ["", "<sub>Commands: `/wasm retest`, `/wasm deploy ENV`, `/wasm help`.</sub>"]
    return capped("\n".join(lines))


def capped(text: str, limit: int = MAX_COMMENT) -> str:
    """``text`` cut to at most ``limit`` characters, ending in a visible marker when cut; a code
    block left open by the cut is closed, so the rest of the comment is not swallowed by it."""
    if len(text) <= limit:
        return text
    kept = text[: max(0, limit - len(TRUNCATED) - 4)]
    if kept.count("```") % 2:
        kept += "\n```"
    return kept + TRUNCATED
