"""Signing in to the hub with GitHub (an OAuth app's web flow) and signing out.

``/hub/signin`` offers the sign-in; ``/hub/signin/github`` redirects to GitHub's
``/login/oauth/authorize`` with a random ``state`` that a short-lived signed cookie also holds;
GitHub sends the browser back to ``/hub/oauth/callback`` with a ``code``, which is exchanged at
``/login/oauth/access_token`` (the app's client id and secret), and the token asks the API's
``GET /user`` who signed in.  The token is then dropped: the hub acts with wasmbot's own
credentials, and the session only names the person.  A callback whose state does not match the
cookie (a forged or replayed sign-in) is refused.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from itsdangerous import BadSignature

from bot.hub.pages import render, settings_of
from bot.hub.session import PATH, secure, serializer, sign_in, sign_out
from workers.config import Settings

STATE_COOKIE = "wasmbot_hub_oauth"
STATE_TTL = 600  # seconds a sign-in may take at GitHub
TIMEOUT = aiohttp.ClientTimeout(total=15)


class SignInError(Exception):
    """GitHub did not confirm who is signing in; the message says why, for the sign-in page."""


def configured(settings: Settings) -> bool:
    return bool(settings.github_client_id and settings.github_client_secret)


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a hub path only, so the sign-in is no open redirect."""
    if target and target.startswith("/hub/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/hub/jobs"


def callback_url(request: web.Request, settings: Settings) -> str:
    base = settings.public_url.rstrip("/") if settings.public_url else f"{request.scheme}://{request.host}"
    return f"{base}/hub/oauth/callback"


async def signin_page(request: web.Request) -> web.Response:
    settings = settings_of(request)
    return await render(request, "signin.html", configured=configured(settings),
                        next=safe_next(request.query.get("next")), error=None)


async def start(request: web.Request) -> web.Response:
    """Off to GitHub to sign in, remembering (signed, in a cookie) the state and where to return."""
    settings = settings_of(request)
    if not configured(settings):
        raise web.HTTPNotFound(text="sign-in with GitHub is not configured\n")
    state = secrets.token_urlsafe(24)
    query = urlencode({"client_id": settings.github_client_id, "state": state, "allow_signup": "false",
                       "redirect_uri": callback_url(request, settings)})
    response = web.HTTPFound(f"{settings.github_web_url.rstrip('/')}/login/oauth/authorize?{query}")
    back = safe_next(request.query.get("next"))
    remembered = serializer(settings, "oauth").dumps({"state": state, "next": back})
    response.set_cookie(STATE_COOKIE, remembered, max_age=STATE_TTL, path=PATH, httponly=True,
                        samesite="Lax", secure=secure(settings))
    raise response


async def _identify(settings: Settings, code: str, redirect_uri: str) -> dict[str, Any]:
    """The GitHub user whose sign-in produced ``code``."""
    assert settings.github_client_secret is not None
    form = {"client_id": settings.github_client_id or "", "code": code, "redirect_uri": redirect_uri,
            "client_secret": settings.github_client_secret.get_secret_value()}
    async with aiohttp.ClientSession(timeout=TIMEOUT) as http:
        async with http.post(f"{settings.github_web_url.rstrip('/')}/login/oauth/access_token", data=form,
                             headers={"Accept": "application/json"}) as answer:
            grant: Any = await answer.json(content_type=None) if answer.status == 200 else {}
        if not isinstance(grant, dict) or "access_token" not in grant:
            said = grant.get("error_description") or grant.get("error") if isinstance(grant, dict) else None
            raise SignInError(f"GitHub refused the sign-in: {said or f'HTTP {answer.status}'}")
        headers = {"Authorization": f"Bearer {grant['access_token']}",
                   "Accept": "application/vnd.github+json"}
        async with http.get(f"{settings.github_api_url.rstrip('/')}/user", headers=headers) as answer:
            user: Any = await answer.json(content_type=None) if answer.status == 200 else None
    if not isinstance(user, dict) or not isinstance(user.get("login"), str):
        raise SignInError(f"GitHub did not say who signed in (GET /user: HTTP {answer.status})")
    return user


async def callback(request: web.Request) -> web.Response:
    settings = settings_of(request)
    if not configured(settings):
        raise web.HTTPNotFound(text="sign-in with GitHub is not configured\n")
    try:
        remembered: Any = serializer(settings, "oauth").loads(request.cookies.get(STATE_COOKIE, ""),
                                                               max_age=STATE_TTL)
    except BadSignature:
        remembered = None
    state = request.query.get("state", "")
    try:
        if not isinstance(remembered, dict) or not state \
                or not secrets.compare_digest(state.encode(), str(remembered.get("state")).encode()):
            raise SignInError("this sign-in was not started here, or took too long: please sign in again")
        if "error" in request.query:
            raise SignInError(f"GitHub: {request.query.get('error_description') or request.query['error']}")
        user = await _identify(settings, request.query.get("code", ""), callback_url(request, settings))
    except (SignInError, aiohttp.ClientError, TimeoutError) as exc:
        reason = str(exc) if isinstance(exc, SignInError) else f"could not reach GitHub: {type(exc).__name__}"
        page = await render(request, "signin.html", status=403, configured=True, next="/hub/jobs",
                            error=reason)
        page.del_cookie(STATE_COOKIE, path=PATH)
        return page
    response = web.HTTPFound(safe_next(remembered.get("next")))
    response.del_cookie(STATE_COOKIE, path=PATH)
    sign_in(response, settings, user["login"], str(user.get("name") or user["login"]))
    raise response


async def signout(request: web.Request) -> web.Response:
    """Sign out (a POST: the hub's middleware has checked the CSRF token)."""
    response = web.HTTPFound("/hub/signin")
    sign_out(response)
    raise response


def routes(hub: web.Application, settings: Settings) -> None:
    hub.router.add_get("/signin", signin_page)
    hub.router.add_get("/signin/github", start)
    hub.router.add_get("/oauth/callback", callback)
    hub.router.add_post("/signout", signout)
