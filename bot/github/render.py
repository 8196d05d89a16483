"""What wasmbot shows on GitHub: check run output (with annotations) and the one PR comment.

Pure functions of job records, so the text is easy to test and the same after a restart.
"""

from __future__ import annotations

import json
import posixpath
import time
from pathlib import PurePosixPath
from typing import Any

from workers.commands import source_of
from workers.diagnostics import Diagnostic
from workers.jobs import Job, State
from workers.store import JobStore

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
TITLE_MAX = 255  # characters of an annotation's title
DETAIL_MAX = 65535  # bytes of an annotation's message or raw_details ("64 KB")
ANNOTATIONS_MAX = 1000  # per check run (20 requests of 50): past that, the log has the rest
LEVELS = {"error": "failure", "warning": "warning"}


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


def _headline(error: str | None, limit: int) -> str:
    """An error's first line as a title part: no dangling colon where its details followed."""
    first = (error or "").strip().splitlines()[0] if (error or "").strip() else ""
    first = first.rstrip(" :")
    return first if len(first) <= limit else first[: limit - 1] + "…"


def counted(diagnostics: list[Diagnostic]) -> str:
    """"2 errors and 61 warnings"."""
    errors = sum(d.level == "error" for d in diagnostics)
    warnings = len(diagnostics) - errors
    parts = [f"{n} {word}{'s' if n != 1 else ''}"
             for n, word in ((errors, "error"), (warnings, "warning")) if n]
    return " and ".join(parts)


def check_output(job: Job, base: int | None, base_ref: str,
                 diagnostics: list[Diagnostic] | None = None, report: str | None = None) -> dict[str, Any]:
    """The check run's output (annotations apart: see ``check_annotations``); ``report``: the
    ABI report (``abi_report``)."""
    diagnostics = diagnostics or []
    failed = job.failed_stage()
    if job.state is State.SUCCEEDED:
        title = "built and tested" + (
            f", {size_change(job, base, base_ref)}" if job.artifacts.get("module_size") else ""
        )
    elif failed is not None and job.state is State.CANCELLED:
        title = _headline(failed.error, 200) or "cancelled"
    elif failed is not None:
        title = f"{failed.name} failed: {_headline(failed.error, 150) or 'no reason given'}"
        if failed.name == "build" and diagnostics:
            title += f" ({counted(diagnostics)})"
    else:
        title = {State.QUEUED: "queued", State.RUNNING: "running"}.get(job.state, job.state.value)
    summary = [stage_table(job)]
    if job.artifacts.get("module_size"):
        summary.append(f"**Module size:** {size_change(job, base, base_ref)}")
    if diagnostics:
        summary.append(f"**Compiler diagnostics:** {diagnostics_note(job, diagnostics)}")
    text = report or ""
    if diagnostics:
        listing = "\n".join(f"{d.path}:{d.line}{f':{d.column}' if d.column else ''}: {d.level}"
                            f"{f'[{d.code}]' if d.code else ''}: {d.message}" for d in diagnostics)
        text = f"### Compiler diagnostics\n\n```\n{_cut(listing, MAX_TEXT // 2)}\n```\n\n{text}"
    if failed is not None and failed.error and failed.name != "test":
        text = f"```\n{_cut(failed.error, MAX_TEXT // 4)}\n```\n\n{text}"
    output: dict[str, Any] = {"title": title, "summary": _cut("\n\n".join(summary), MAX_TEXT)}
    if text:
        output["text"] = _cut(text, MAX_TEXT)
    return output


def diagnostics_note(job: Job, diagnostics: list[Diagnostic]) -> str:
    """What the summary says of the diagnostics: how many, and how many are annotations."""
    annotated = len(check_annotations(job, diagnostics))
    note = f"{counted(diagnostics)}"
    if annotated == len(diagnostics):
        return note + (", each an annotation on its line" if annotated > 1 else ", an annotation on its line")
    return note + f"; {annotated} are annotations, the rest (outside the repository, or past " \
                  f"{ANNOTATIONS_MAX}) are in the listing below and the job log"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 40] + "\n… (cut: the job log has it all)"


def _cut_bytes(text: str, limit: int = DETAIL_MAX) -> str:
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[: limit - 3].decode(errors="ignore") + "…"


def abi_report(store: JobStore, job: Job) -> str | None:
    """The test stage's ABI report as Markdown, read from the job store (where the stage, on
    whichever worker, kept it: workers/artifacts.py); None when there is none, or no longer."""
    from workers.artifacts import in_store

    data = in_store(store, job.artifacts.get("report", ""))
    if data is None:
        return None
    from workers.abitest.report import Report, render_markdown

    return render_markdown(Report.from_dict(json.loads(data)))


def check_annotations(job: Job, diagnostics: list[Diagnostic]) -> list[dict[str, Any]]:
    """The diagnostics on the repository's files, as check run annotations, whole (up to GitHub's
    64 KB a message).  The reporter sends them 50 a request, as the Checks API requires."""
    source = source_of(job.command) or "."
    found: list[dict[str, Any]] = []
    for d in diagnostics:
        # Recipes name sources "./NAME" and compile in /src: those are the repository's paths.
        relative = posixpath.normpath(d.path.removeprefix("/src/"))
        if relative.startswith(("/", "../")) or relative == "..":
            continue  # a system header or a dependency: not a file of this repository
        path = str(PurePosixPath(source) / relative) if source not in ("", ".") else relative
        note: dict[str, Any] = {
            "path": path,
            "start_line": d.line,
            "end_line": d.line,
            "annotation_level": LEVELS.get(d.level, "notice"),
            "title": f"{d.level} {d.code}".strip()[:TITLE_MAX],
            "message": _cut_bytes(d.message),
        }
        if d.column:
            note["start_column"] = note["end_column"] = d.column
        if d.details:
            note["raw_details"] = _cut_bytes("\n".join(d.details))
        found.append(note)
    return found[:ANNOTATIONS_MAX]


def pr_comment(runs: list[Job], held: str | None = None, check_urls: dict[str, str] | None = None,
               pages: dict[str, str] | None = None) -> str:
    """The one comment wasmbot keeps on a pull request: the newest run first, then earlier ones;
    job ids link to ``pages`` (the hub's job pages) where given."""
    pages = pages or {}

    def named(job_id: str) -> str:
        return f"[`{job_id}`]({pages[job_id]})" if job_id in pages else f"`{job_id}`"

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
            f"(job {named(latest.id)}{f', [details]({link})' if link else ''})",
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
                f"{named(job.id)} {job.state.value}{why} ({when})"
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
