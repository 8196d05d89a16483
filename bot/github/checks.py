"""``check_run`` re-requested ("Re-run" on one of wasmbot's checks): run that commit again."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from gidgethub import routing, sansio

from bot.github.pulls import start_pull_request
from bot.github.submit import installation_of, submit_commit
from workers.github_client import client

if TYPE_CHECKING:
    from bot.github.app import GitHubFrontEnd

router = routing.Router()


@router.register("check_run", action="rerequested")
async def check_run_rerequested(event: sansio.Event, fe: GitHubFrontEnd) -> None:
    job = await asyncio.to_thread(fe.store.get, event.data["check_run"].get("external_id") or "")
    if job is None or "github" not in job.reports:
        return  # not one of wasmbot's check runs
    where = job.reports["github"]
    installation = await installation_of(fe, event, where["repo"])
    gh = client(fe.settings, installation).get_repo(where["repo"])
    requester = f"github:{event.data['sender']['login']}"
    if where.get("pr"):
        pr = await asyncio.to_thread(lambda: gh.get_pull(int(where["pr"])).raw_data)  # lazy: read here
        if pr["head"]["sha"] != where["sha"]:
            return  # an outdated commit: its run was superseded
        await start_pull_request(
            fe,
            where["repo"],
            pr,
            installation,
            requester=requester,
            reason="check run re-requested",
            dedupe=event.delivery_id,
        )
        return
    await submit_commit(fe, job.command, where, requester, "check run re-requested", event.delivery_id)
