"""Hub actions (rollback, approve, deny) are chat commands: the hub writes the command text a
person would type and hands it to bot.dispatch as the signed-in viewer, so the permission
rules, the approval flow and the job are exactly chat's.  The gate (bot/hub/access.py) has
already checked the viewer is signed in and the form's CSRF token.
"""

from __future__ import annotations

from aiohttp import web

from bot import permissions
from bot.dispatch import Request, Requester, Status, dispatch
from bot.hub.access import refuse
from bot.hub.pages import render, settings_of
from bot.hub.session import viewer
from workers import commands

FRONT_END = "web"
ORIGIN = "web"  # a job's origin when the hub asked for it


async def act(request: web.Request, text: str) -> web.Response:
    """Run ``text`` (``/wasm approve JOB``) for the viewer; a job made or acted on leads to its
    page, a refusal is a 403 saying why, any other failure a 409 saying why."""
    who = viewer(request)
    if who is None:  # the gate lets no anonymous POST through; this keeps handlers honest
        return await refuse(request, "sign in to do that")
    try:
        command = commands.parse(text)
    except commands.CommandError as exc:
        return await render(request, "refused.html", status=400, reason=exc.message)
    requester = Requester(FRONT_END, who.user, permissions.Principal(who.user))
    reply = await dispatch(settings_of(request), Request(command, text, requester, origin=ORIGIN))
    if reply.status is Status.REFUSED:
        return await refuse(request, reply.text.replace("`", ""))
    if not reply.ok:
        return await render(request, "refused.html", status=409, reason=reply.text.replace("`", ""))
    if reply.job is not None:
        raise web.HTTPSeeOther(f"/hub/jobs/{reply.job.id}")
    raise web.HTTPSeeOther("/hub/jobs")
