"""Links to the hub's pages (bot/hub/), for chat messages: the job, module and environment
pages.  Every front end imports this and none imports the hub; None where wasmbot has no public
URL (``public_url``), as for log links."""

from __future__ import annotations

from urllib.parse import quote

from workers.config import Settings


def _hub(settings: Settings, path: str) -> str | None:
    if not settings.public_url:
        return None
    return f"{settings.public_url.rstrip('/')}/hub/{path}"


def job_url(settings: Settings, job_id: str) -> str | None:
    return _hub(settings, f"jobs/{job_id}")


def module_url(settings: Settings, repository: str) -> str | None:
    """A registry repository's page (``registry.example:5000/team/filter``; slashes kept)."""
    return _hub(settings, f"modules/{quote(repository, safe='/:')}")


def environment_url(settings: Settings, name: str) -> str | None:
    return _hub(settings, f"environments/{quote(name, safe='')}")
