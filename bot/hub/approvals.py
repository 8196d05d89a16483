"""The approvals page: changes to protected environments that wait for someone to approve or
deny them, with what each would change (the server-side dry run's diff the approver reads in
chat too).

Approve and deny are ``/wasm approve JOB`` and ``/wasm deny JOB`` run through chat's dispatch
(bot/hub/acting.py): the same rule (``approve:ENV``), the same refusal of one's own change, the
same expiry.  Buttons show only to those who may; a POST from anyone else is refused with 403.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from aiohttp import web

from bot import permissions
from bot.hub.access import allowed
from bot.hub.acting import act
from bot.hub.pages import render, settings_of, store
from bot.hub.session import viewer
from workers.config import Settings
from workers.jobs import Job
from workers.store import JobStore


@dataclass
class Waiting:
    job: Job
    env: str
    expired: bool
    refused: str | None  # why the viewer may not decide (None: they may)


def waiting(store: JobStore) -> list[Job]:
    """Jobs waiting for an approval, oldest first."""
    return [job for job in store.waiting() if job.awaiting_approval]


async def approvals_page(request: web.Request) -> web.Response:
    jobs = await asyncio.to_thread(waiting, store(request))
    policy = permissions.policy_of(settings_of(request))
    who = viewer(request)
    now = time.time()
    rows = []
    for job in jobs:
        env = job.approval.get("action", "").removeprefix("deploy:")
        refused = await allowed(request, f"approve:{env}", owner=job.requester)
        if refused is None and who is not None and policy.same_person(job.requester, who.user):
            refused = "you asked for this change: someone else who may approve must approve it"
        rows.append(Waiting(job, env, float(job.approval.get("expires_at", "0")) < now, refused))
    return await render(request, "approvals.html", section="approvals", rows=rows)


async def decide(request: web.Request) -> web.Response:
    """``/wasm approve JOB`` or ``/wasm deny JOB``, as the viewer."""
    verb = request.match_info["verb"]
    return await act(request, f"/wasm {verb} {request.match_info['job']}")


def routes(hub: web.Application, settings: Settings) -> None:
    hub.router.add_get("/approvals", approvals_page)
    hub.router.add_post(r"/approvals/{job:[0-9a-f]{12}}/{verb:approve|deny}", decide)
