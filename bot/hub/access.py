"""Who may read and act on the hub: the sign-in gate, the CSRF check and the permission check.

Every hub request passes ``gate``: it reads the session cookie; a request that changes state
(any method but GET, HEAD, OPTIONS) needs a signed-in viewer and the session's CSRF token, and
a page read needs a signed-in viewer unless the operator allows anonymous reading
(``hub_anonymous_read``), and, when ``[permissions]`` has a ``view`` rule, a viewer it allows
(without one, anyone who signs in with GitHub may read).  Sign-in pages and static files are
open to all.  Actions are decided
by ``bot.permissions.check`` on the viewer's ``github:LOGIN``, the same rules and the same
answer as a pull request comment by that person (no author association: a web page is not
asked on a repository).
"""

from __future__ import annotations

import hmac
from urllib.parse import quote

from aiohttp import web
from aiohttp.typedefs import Handler

from bot import permissions
from bot.hub.pages import render, settings_of
from bot.hub.session import VIEWER, read_viewer, viewer

SAFE = frozenset({"GET", "HEAD", "OPTIONS"})
OPEN = ("/hub/signin", "/hub/oauth/", "/hub/static/")  # readable by anyone, signed in or not
CSRF_FIELD, CSRF_HEADER = "csrf_token", "X-CSRF-Token"
VIEW = "view"  # the [permissions] action that reading the hub needs, when it is configured


async def refuse(request: web.Request, reason: str) -> web.Response:
    """A 403 page saying why."""
    return await render(request, "refused.html", status=403, reason=reason)


@web.middleware
async def gate(request: web.Request, handler: Handler) -> web.StreamResponse:
    settings = settings_of(request)
    who = read_viewer(request, settings)
    if who is not None:
        request[VIEWER] = who
    if request.method not in SAFE:
        if who is None:
            return await refuse(request, "sign in to do that")
        sent = request.headers.get(CSRF_HEADER) or (await request.post()).get(CSRF_FIELD)
        if not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), who.csrf.encode()):
            return await refuse(request, "this form is missing its CSRF token or has a stale one: "
                                         "reload the page and try again")
    elif not request.path.startswith(OPEN):
        if who is None and not settings.hub_anonymous_read:
            raise web.HTTPFound(f"/hub/signin?next={quote(request.path_qs, safe='')}")
        if who is not None and VIEW in settings.permissions and (reason := await allowed(request, VIEW)):
            return await refuse(request, reason)
    return await handler(request)


async def allowed(request: web.Request, action: str, owner: str | None = None) -> str | None:
    """None when the viewer may do ``action`` (on a job requested by ``owner``), else why not."""
    who = viewer(request)
    if who is None:
        return f"sign in to {action}"
    policy = permissions.policy_of(settings_of(request))
    return await permissions.check(policy, action, permissions.Principal(who.user), front_end="web",
                                   owner=owner)


async def require(request: web.Request, action: str, owner: str | None = None) -> None:
    """Raise 403 (a page saying why) unless the viewer may do ``action``."""
    reason = await allowed(request, action, owner)
    if reason is not None:
        raise web.HTTPForbidden(text=(await refuse(request, reason)).text, content_type="text/html")
