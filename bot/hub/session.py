"""Hub sessions: who is signed in, kept in a signed cookie that expires.

The cookie holds the viewer's GitHub login and name, the session's CSRF token and when it was
issued, signed (HMAC, itsdangerous) with ``hub_session_secret`` or, when that is not set, with
the key log links are signed with (bot/loglinks.py: configured and shared by every replica, or
in local mode the data directory's own), so one configured secret serves both.  A cookie
older than ``hub_session_ttl`` is refused, whatever the browser keeps.  Nothing is stored on
the server, so signing out clears the cookie, and changing the key signs everyone out.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from itsdangerous import BadSignature, URLSafeTimedSerializer

from bot import loglinks
from workers.config import Settings

COOKIE = "wasmbot_hub"
PATH = "/hub"


@dataclass(frozen=True)
class Viewer:
    """A signed-in person: their GitHub ``login`` and display ``name``, and the session's
    ``csrf`` token, which every state-changing form must send back."""

    login: str
    name: str
    csrf: str
    issued: float

    @property
    def user(self) -> str:
        """The id job records and bot/permissions.py know this person by."""
        return f"github:{self.login}"


def _secret(settings: Settings) -> str | bytes:
    """The session key; itsdangerous derives a separate key per purpose (its salt) from it, so
    sharing the log links' key gives no one a log link from a cookie or the reverse."""
    if settings.hub_session_secret is not None:
        return settings.hub_session_secret.get_secret_value()
    try:
        return loglinks.key(settings)
    except loglinks.NoKey as exc:  # Redis and no shared key: a cookie would not verify on a replica
        raise web.HTTPServiceUnavailable(
            text=f"sign-in is off: {exc} (or set WASMBOT_HUB_SESSION_SECRET)\n") from None


def serializer(settings: Settings, purpose: str) -> URLSafeTimedSerializer:
    """A signer for one ``purpose`` (``session``, ``oauth``): a value signed for one is not
    accepted as the other."""
    return URLSafeTimedSerializer(_secret(settings), salt=f"wasmbot-hub-{purpose}")


def secure(settings: Settings) -> bool:
    """Cookies only over HTTPS when the hub is served over HTTPS."""
    return bool(settings.public_url and settings.public_url.startswith("https://"))


VIEWER = web.RequestKey("viewer", Viewer)  # set by the hub's middleware when someone is signed in


def read_viewer(request: web.Request, settings: Settings) -> Viewer | None:
    """The viewer the request's session cookie names, or None (no cookie, forged or expired)."""
    raw = request.cookies.get(COOKIE)
    if not raw:
        return None
    try:
        data: Any = serializer(settings, "session").loads(raw, max_age=int(settings.hub_session_ttl))
    except BadSignature:
        return None
    if not isinstance(data, dict):
        return None
    try:
        return Viewer(login=str(data["login"]), name=str(data["name"]), csrf=str(data["csrf"]),
                      issued=float(data["issued"]))
    except (KeyError, TypeError, ValueError):
        return None


def viewer(request: web.Request) -> Viewer | None:
    """The signed-in viewer of ``request`` (read once by the hub's middleware), or None."""
    return request.get(VIEWER)


def sign_in(response: web.StreamResponse, settings: Settings, login: str, name: str) -> Viewer:
    """Start a session for ``login`` on ``response``, with a fresh CSRF token."""
    who = Viewer(login=login, name=name, csrf=secrets.token_urlsafe(32), issued=time.time())
    value = serializer(settings, "session").dumps(
        {"login": who.login, "name": who.name, "csrf": who.csrf, "issued": who.issued})
    response.set_cookie(COOKIE, value, max_age=int(settings.hub_session_ttl), path=PATH,
                        httponly=True, samesite="Lax", secure=secure(settings))
    return who


def sign_out(response: web.StreamResponse) -> None:
    response.del_cookie(COOKIE, path=PATH)
