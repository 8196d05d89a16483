"""Commands answered at once, without a job: the same text for the CLI, Slack and GitHub."""

from __future__ import annotations

import time

from bot import commands
from bot.config import Settings
from workers.jobs import State
from workers.oci.connect import connect
from workers.oci.registry import RegistryError
from workers.oci.search import search
from workers.store import open_store


def search_text(settings: Settings, command: commands.SearchCommand) -> str:
    """The answer to ``/wasm search``."""
    host = command.registry or settings.default_registry
    if not host:
        raise RegistryError(
            "no registry named and no default_registry configured: "
            "search REGISTRY/TEXT, e.g. /wasm search localhost:5000/add-header"
        )
    found = search(connect(settings, host), command.text)
    if not found:
        return f"no repository in {host} matches {command.text!r}"
    return "\n".join(f"{host}/{f.repository}: {', '.join(f.tags) or '(no tags)'}" for f in found)


def jobs_text(settings: Settings, limit: int = 15) -> str:
    jobs = open_store(settings).recent(limit)
    if not jobs:
        return "no jobs yet"
    now = time.time()
    return "\n".join(
        f"{job.id}  {job.state.value:<9} {now - job.created_at:>6.0f}s ago  {job.text}" for job in jobs
    )


def status_text(settings: Settings, env: str | None = None) -> str:
    """What wasmbot last did to each filter in each environment, from the job history."""
    latest: dict[tuple[str, str], tuple[str, dict[str, str]]] = {}
    for job in open_store(settings).recent(limit=2000):
        art = job.artifacts
        if job.state is not State.SUCCEEDED or not art.get("environment") or art.get("dry_run") == "true":
            continue
        if env is not None and art["environment"] != env:
            continue
        key = (art["environment"], art.get("filter", ""))
        latest.setdefault(key, (job.id, art))  # recent() is newest first
    lines = []
    for (environment, name), (job_id, art) in sorted(latest.items()):
        if art.get("removed"):
            continue
        lines.append(
            f"{environment}: {name} at {art['deployed_digest']} ({art['deployed_image']}; job {job_id})"
        )
    where = f"in {env}" if env else "anywhere"
    return "\n".join(lines) or f"wasmbot has nothing deployed {where}"
