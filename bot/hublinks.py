"""Links to the hub's pages (bot/hub/), for chat messages: a job's page, the page of the module
it pushed or deploys, and the environment it changes.  Every front end imports this and none
imports the hub; there are no links where wasmbot has no public URL (``public_url``).

Modules are the default registry's (the hub's catalogue), so an image elsewhere gets no module
link; ``/hub/modules/REPOSITORY`` keeps the repository's slashes.
"""

from __future__ import annotations

from urllib.parse import quote

from workers.commands import DeployCommand, EnvironmentCommand
from workers.config import Settings
from workers.jobs import Job
from workers.oci import reference


def _hub(base: str | None, path: str) -> str | None:
    return None if base is None else f"{base.rstrip('/')}/hub/{path}"


def job_url(settings: Settings, job_id: str) -> str | None:
    return _hub(settings.public_url or None, f"jobs/{job_id}")


def module_path(settings: Settings, image: str) -> str | None:
    """``/hub/modules/REPOSITORY`` of ``image`` (a reference), if it is in the default registry."""
    try:
        ref = reference.parse(image)
    except reference.InvalidReference:
        return None  # a job id, or a reference the job itself will refuse
    if ref.registry != settings.default_registry:
        return None
    return _hub("", f"modules/{quote(ref.repository, safe='/')}")


def job_links(settings: Settings, job: Job, base: str | None = None) -> list[tuple[str, str]]:
    """(label, URL) of the hub pages about ``job``: its own, its module's, its environment's;
    below ``base`` (default: the public URL; "" for paths, as the hub's own pages link)."""
    base = settings.public_url or None if base is None else base
    if base is None:
        return []
    links = [("job page", _hub(base, f"jobs/{job.id}"))]
    deploying = job.command.target if isinstance(job.command, DeployCommand) else ""
    path = module_path(settings, job.artifacts.get("image") or deploying)
    if path:
        links.append(("module", base.rstrip("/") + path))
    if isinstance(job.command, EnvironmentCommand):
        env = job.command.env
        links.append((f"environment {env}", _hub(base, f"environments/{quote(env, safe='')}")))
    return [(label, url) for label, url in links if url]
