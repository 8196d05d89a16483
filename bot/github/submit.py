"""What every GitHub event handler shares: the installation a delivery acts for, and queueing a
job on a commit that reports back to GitHub (checks and the pull request comment)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from gidgethub import sansio

from workers import commands
from workers.github_client import installation_for
from workers.jobs import Job

if TYPE_CHECKING:
    from bot.github.app import GitHubFrontEnd


async def installation_of(fe: GitHubFrontEnd, event: sansio.Event, repo: str) -> int | None:
    given = (event.data.get("installation") or {}).get("id")
    return await asyncio.to_thread(installation_for, fe.settings, repo, int(given) if given else None)


async def submit_commit(
    fe: GitHubFrontEnd,
    command: commands.Command,
    where: dict[str, str],
    requester: str,
    text: str,
    dedupe: str | None,
) -> Job:
    """Queue ``command`` on the commit ``where`` names, and report on it to GitHub."""
    from workers.pipeline import submit_once

    origin = f"github:{where['repo']}" + (f"#{where['pr']}" if where.get("pr") else f"@{where['ref']}")
    job, new = await asyncio.to_thread(
        submit_once,
        command,
        requester=requester,
        origin=origin,
        text=text,
        source_root="",
        dedupe_key=f"github:{dedupe}" if dedupe else None,
        github=where,
    )
    if new:
        fe.reporter.follow(job.id)
    return job
