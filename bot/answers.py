"""Commands answered at once, without a job: the same text for the CLI, Slack and GitHub.

A listing asked for from a pull request comment has a ``scope`` (``github:OWNER/REPO``): it
shows only that repository's own jobs and deploys, never what Slack or the CLI started (their
command text names internal registries and deploy configuration).
"""

from __future__ import annotations

import time

from workers import commands
from workers.config import Settings
from workers.jobs import Job
from workers.oci.connect import connect
from workers.oci.registry import RegistryError
from workers.oci.search import search
from workers.store import JobStore, open_store

SCANNED = 500  # the newest jobs a scoped listing looks through


def in_scope(job: Job | None, scope: str | None) -> bool:
    """Whether ``job`` may be shown where ``scope`` (None: anything) is asked from."""
    if scope is None:
        return True
    if job is None:
        return False
    origin, scope = job.origin.lower(), scope.lower()
    return origin == scope or origin.startswith((scope + "#", scope + "@"))


def _deploys(store: JobStore, env: str | None, scope: str | None) -> list[dict[str, str]]:
    """Deploy records, newest first, of jobs in ``scope``."""
    records = store.deploys(env)
    if scope is None:
        return records
    jobs: dict[str, Job | None] = {}
    for record in records:
        if record["job"] not in jobs:
            jobs[record["job"]] = store.get(record["job"])
    return [r for r in records if in_scope(jobs[r["job"]], scope)]


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


def list_text(settings: Settings, command: commands.ListCommand, scope: str | None = None) -> str:
    """The answer to ``/wasm jobs``, ``/wasm status`` and ``/wasm history``."""
    if command.name == "jobs":
        return jobs_text(settings, scope=scope)
    if command.name == "status":
        return status_text(settings, command.env, scope=scope)
    assert command.env is not None  # the parser requires ENV for history
    return history_text(settings, command.env, command.filter, scope=scope)


def jobs_text(settings: Settings, limit: int = 15, scope: str | None = None) -> str:
    store = open_store(settings)
    jobs = store.recent(limit) if scope is None else \
        [job for job in store.recent(SCANNED) if in_scope(job, scope)][:limit]
    if not jobs:
        return "no jobs yet" if scope is None else f"no jobs of {scope.removeprefix('github:')} yet"
    now = time.time()
    return "\n".join(
        f"{job.id}  {job.state.value:<9} {now - job.created_at:>6.0f}s ago  {job.text}" for job in jobs
    )


def status_text(settings: Settings, env: str | None = None, scope: str | None = None) -> str:
    """What is deployed to each environment now, from the deploy history."""
    latest: dict[tuple[str, str], dict[str, str]] = {}
    for record in _deploys(open_store(settings), env, scope):  # newest first
        latest.setdefault((record["environment"], record["filter"]), record)
    lines = [
        f"{environment}: {name} at {r['digest']} ({r['image']}; job {r['job']}, {_ago(r)})"
        for (environment, name), r in sorted(latest.items())
        if r["action"] != "undeploy"
    ]
    where = f"in {env}" if env else "anywhere"
    return "\n".join(lines) or f"wasmbot has nothing deployed {where}"


def history_text(settings: Settings, env: str, filter_name: str | None = None, limit: int = 20,
                 scope: str | None = None) -> str:
    """Who changed what in ``env`` and when, with the approver, newest first."""
    records = [r for r in _deploys(open_store(settings), env, scope)
               if filter_name is None or r["filter"] == filter_name][:limit]
    if not records:
        return f"no deploys to {env}{' of ' + filter_name if filter_name else ''} yet"
    lines = []
    for r in records:
        what = f"{r['digest']} ({r['image']})" if r["action"] != "undeploy" else "removed"
        approved = f", approved by {r['approver']}" if r.get("approver") else ""
        lines.append(f"{_ago(r)}  {r['action']:<8} {r['filter']} {what}  job {r['job']} by "
                     f"{r['requester']}{approved}")
    return "\n".join(lines)


def _ago(record: dict[str, str]) -> str:
    seconds = time.time() - float(record["at"])
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"
