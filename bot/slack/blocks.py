"""Block Kit for wasmbot's Slack messages: pure functions from records to blocks.

One message per job shows every stage with its state and time, the pushed image and digest,
a link to the full log, and the buttons that make sense now (Retry on failure, Cancel while
running).

User text (command text, errors, diffs, image names) is escaped for mrkdwn and people are named
with bot/markup.py's ``mention``.  Block Kit's limits are kept here, with a visible marker
where text is cut: 50 blocks a message, 3,000 characters a section, 10 fields of 2,000, a
150-character header, 10 context elements, 25 buttons of 75 characters, and the 40,000
characters of a message's ``text`` (tests/blockkit.py checks every message the tests see).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from bot.markup import escape_mrkdwn, mention
from workers.jobs import Job, Stage, State

ICONS = {
    State.PENDING: ":white_circle:",
    State.QUEUED: ":hourglass_flowing_sand:",
    State.RUNNING: ":arrows_counterclockwise:",
    State.SUCCEEDED: ":white_check_mark:",
    State.FAILED: ":x:",
    State.SKIPPED: ":fast_forward:",
    State.CANCELLED: ":no_entry_sign:",
}
RETRY, CANCEL, APPROVE, DENY = "wasmbot_retry", "wasmbot_cancel", "wasmbot_approve", "wasmbot_deny"
DEPLOY = "wasmbot_deploy"
MAX_ERROR = 600
MAX_BLOCKS, MAX_SECTION, MAX_FIELDS, MAX_FIELD, MAX_HEADER = 50, 3000, 10, 2000, 150
MAX_CONTEXT, MAX_BUTTONS, MAX_BUTTON_TEXT, MAX_TEXT = 10, 25, 75, 40_000
TRUNCATED = "… (truncated)"

Blocks = list[dict[str, Any]]


def clip(text: str, limit: int) -> str:
    """``text`` within ``limit`` characters, ending in ``TRUNCATED`` when cut; never inside an
    entity (``&amp;``) or a link or mention (``<…>``), which Slack would show broken."""
    if len(text) <= limit:
        return text
    cut = text[:max(limit - len(TRUNCATED), 0)]
    for opening, closing in (("&", ";"), ("<", ">")):
        at = cut.rfind(opening)
        if at != -1 and closing not in cut[at:]:
            cut = cut[:at]
    return cut + TRUNCATED


def code(text: str, limit: int = MAX_SECTION) -> str:
    """``text`` (not yet escaped) as a mrkdwn code block of at most ``limit`` characters."""
    return f"```{clip(escape_mrkdwn(text), limit - 6)}```"


def fallback(text: str) -> str:
    """A message's ``text`` (mrkdwn, already escaped) within Slack's limit."""
    return clip(text, MAX_TEXT)


def fit(blocks: Blocks) -> Blocks:
    """At most ``MAX_BLOCKS`` blocks: the first ones, a marker, and the last (its buttons)."""
    if len(blocks) <= MAX_BLOCKS:
        return blocks
    kept = blocks[:MAX_BLOCKS - 2]
    return [*kept, _context(f"{len(blocks) - len(kept) - 1} more blocks not shown {TRUNCATED}"), blocks[-1]]


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, MAX_SECTION)}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(text, MAX_SECTION)}]}


def _button(text: str, action: str, value: str, style: str | None = None) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": clip(text, MAX_BUTTON_TEXT)},
        "action_id": action,
        "value": value,
    }
    if style:
        button["style"] = style
    return button


def _error(stage: Stage) -> str:
    """A stage's error, escaped and cut; who cancelled it (an id, see workers/pipeline.py) mentioned."""
    error = stage.error or ""
    by = error.removeprefix("cancelled by ")
    if stage.state is State.CANCELLED and by != error:
        return f"cancelled by {mention(by, 'slack')}"
    return clip(escape_mrkdwn(error), MAX_ERROR)


def summary(job: Job) -> str:
    """The notification text (Slack shows it where blocks cannot be shown)."""
    return fallback(f"wasmbot job {job.id} {job.state.value}: {escape_mrkdwn(job.text)}")


def job_message(
    job: Job, log_url: str | None = None, now: float | None = None, environments: list[str] | None = None,
    links: Sequence[tuple[str, str]] = (),
) -> Blocks:
    """The job's message; ``environments`` get a *Deploy to* button once an image is pushed;
    ``links`` (label, URL) go before the log's: the hub's pages (bot/hublinks.py)."""
    now = time.time() if now is None else now
    requester = mention(job.requester, "slack")
    elapsed = (job.updated_at if job.state.finished else now) - job.created_at
    blocks: Blocks = [
        _section(f"{ICONS[job.state]} *{job.state.value}* `{escape_mrkdwn(job.text)}`"),
        _context(f"job `{job.id}` · asked by {requester} · {elapsed:.0f}s"),
    ]
    lines = []
    for stage in job.stages:
        shown = stage.elapsed is not None and stage.state is not State.QUEUED
        took = f" {stage.elapsed:.1f}s" if shown else ""
        line = f"{ICONS[stage.state]} *{stage.name}* {stage.state.value}{took}"
        if stage.error:
            line += f"\n> {_error(stage)}"
        lines.append(line)
    blocks.append(_section("\n".join(lines)))
    if job.artifacts.get("digest"):
        pushed = f"*image* `{job.artifacts['image']}`\n*digest* `{job.artifacts['digest']}`"
        if job.artifacts.get("oci_digest"):
            pushed += f"\n*solo.io image* `{job.artifacts['oci_image']}@{job.artifacts['oci_digest']}`"
        blocks.append(_section(escape_mrkdwn(pushed)))
    footer = [*links, ("full log", log_url)] if log_url else list(links)
    if footer:
        blocks.append(_context(" · ".join(f"<{url}|{escape_mrkdwn(label)}>" for label, url in footer)))
    buttons = []
    if job.awaiting_approval:
        digest = job.approval.get("digest")
        what = escape_mrkdwn(job.approval.get("image", "") + (f"@{digest}" if digest else ""))
        expires = time.strftime("%H:%M UTC", time.gmtime(float(job.approval["expires_at"])))
        blocks.append(
            _section(
                f":raised_hand: *waiting for approval* to {escape_mrkdwn(job.approval['action'])} {what}\n"
                f"someone other than {requester} who may approve there; expires {expires}"
            )
        )
        if job.approval.get("diff"):
            blocks.append(_section(code(job.approval["diff"])))
        buttons += [_button("Approve", APPROVE, job.id, "primary"), _button("Deny", DENY, job.id, "danger")]
    elif job.approval.get("approved_by"):
        blocks.append(_context(f"approved by {mention(job.approval['approved_by'], 'slack')}"))
    if job.state is State.FAILED or job.state is State.CANCELLED:
        buttons.append(_button("Retry", RETRY, job.id, "primary"))
    if not job.state.finished and not job.awaiting_approval:
        buttons.append(_button("Cancel", CANCEL, job.id, "danger"))
    if (
        job.state is State.SUCCEEDED
        and job.artifacts.get("digest")
        and "deployed_digest" not in job.artifacts
    ):
        buttons += [
            _button(f"Deploy to {env}", DEPLOY, f"{job.id}:{env}") for env in (environments or [])[:4]
        ]
    if buttons:
        blocks.append({"type": "actions", "block_id": f"job-{job.id}", "elements": buttons[:MAX_BUTTONS]})
    return fit(blocks)


def announcement(job: Job, inspected: dict[str, Any]) -> Blocks:
    """A published release: name, version, image, digest, ABI versions, root ids and size."""
    annotations = inspected.get("annotations", {})
    name = annotations.get("org.opencontainers.image.title") or job.artifacts.get("name") or "filter"
    version = annotations.get("org.opencontainers.image.version", "")
    fields = [
        ("Image", f"`{inspected['reference']}`"),
        ("Digest", f"`{inspected['digest']}`"),
        ("ABI versions", ", ".join(inspected.get("abi_versions", [])) or "not recorded"),
        ("Root ids", ", ".join(inspected.get("root_ids", [])) or "not recorded"),
        ("Size", module_size(job, inspected)),
    ]
    return [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": f":rocket: {name} {version} released"[:150]},
        },
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in fields]},
        _context(f"job `{job.id}` · asked by {mention(job.requester, 'slack')}"),
    ]


def module_size(job: Job, inspected: dict[str, Any]) -> str:
    """The module's own size (what the build made), then what a pull downloads: for the compat
    layout the module is a gzipped layer, so the two differ."""
    pulled = f"{inspected.get('size', 0):,} bytes to pull, {inspected.get('variant', '')} layout"
    built = job.artifacts.get("module_size")
    return f"{int(built):,} bytes ({pulled})" if built else pulled


def help_blocks(text: str) -> Blocks:
    """Help (already escaped, as dispatch quotes it for Slack) as a code block."""
    return [_section(f"```{clip(text, MAX_SECTION - 6)}```")]
