"""The web hub: jobs, modules, environments and approvals pages under ``/hub/`` of
``wasmbot serve`` (issue 23, docs/hub.md).

Pages are rendered on the server (Jinja2; templates in bot/hub/templates, CSS and the few lines
of JavaScript in bot/hub/static, served at ``/hub/static/``: no CDN, no build step).  The hub is
an aiohttp sub-application, so its middleware (sign-in gate, CSRF) covers its routes only.

How a page module plugs in (bot/hub/jobs.py is one):

- It defines ``routes(hub: web.Application, settings: Settings) -> None`` that adds its routes
  to the hub with paths relative to ``/hub`` (``hub.router.add_get("/jobs", jobs_page)``), and
  is named in ``PAGES`` below.
- A handler renders with ``await render(request, "jobs.html", jobs=...)`` (bot.hub.pages): the
  template ``{% extends "base.html" %}``, sets ``{% set section = "jobs" %}`` (the nav entry
  marked current) and fills ``{% block title %}`` and ``{% block content %}``.  Every template
  sees ``viewer`` (the signed-in user or None), ``settings``, ``csrf_field()`` (the hidden input
  a form needs) and the filters ``when`` (a timestamp, UTC) and ``duration`` (seconds).
- Who asks: ``viewer(request)`` (bot.hub.session) is a ``Viewer`` or None; ``Viewer.user`` is
  the id job records and bot/permissions.py use, ``github:LOGIN``.
- Reading needs no check in the handler: the hub's middleware lets through only a signed-in
  viewer (one the ``view`` rule allows, when ``[permissions]`` has one), or anyone when the
  operator set ``hub_anonymous_read`` (then pages are read-only).
- Acting: ``await require(request, "deploy:prod", owner=job.requester)`` (bot.hub.access)
  raises 403 with the reason unless the viewer may; ``await allowed(...)`` returns that reason
  or None (to grey out a button).  Both ask ``bot.permissions.check``: the rules chat obeys.
- CSRF: every POST, PUT, PATCH and DELETE under ``/hub/`` must come from a signed-in viewer and
  carry the session's token (form field ``csrf_token``, or header ``X-CSRF-Token``); the
  middleware answers 403 otherwise, before the handler runs, so no handler checks it itself.
  A form includes ``{{ csrf_field() }}``.
- The job store: ``store(request)`` (bot.hub.pages); its calls block, so run them with
  ``asyncio.to_thread``.  Settings: ``settings_of(request)``.
- Pages are sent with ``Content-Security-Policy: default-src 'self'``: no inline ``<script>``
  or ``style=""``; put JavaScript in bot/hub/static and load it in ``{% block scripts %}``,
  and make the page work without it.  Classes in static/hub.css: ``table.stack`` (rows become
  cards on a phone; give cells ``data-label``), ``dl.facts``, ``.filters``, ``.state-STATE``,
  ``button.primary``/``button.danger``, ``.pager``, ``.muted``, ``.refused``.

URL shapes (``bot.hublinks`` builds the absolute ones chat messages link to): ``/hub/jobs``
(``?repo=&requester=&state=&page=``), ``/hub/jobs/ID``, ``/hub/jobs/ID/events`` (the log as
server-sent events), ``/hub/modules``, ``/hub/modules/REPOSITORY`` (a repository of the
default registry, slashes kept), ``/hub/environments``, ``/hub/environments/NAME``,
``/hub/approvals``, ``/hub/signin``, ``/hub/oauth/callback``, ``/hub/signout`` (POST).
"""

from __future__ import annotations

import importlib
from pathlib import Path

from aiohttp import web

from bot.hub.access import gate
from bot.hub.pages import SETTINGS, setup_templates
from workers.config import Settings

PREFIX = "/hub"
STATIC = Path(__file__).parent / "static"
# Page modules, each with ``routes(hub, settings)``; one per line so helpers add theirs apart.
PAGES = [
    "bot.hub.auth",
    "bot.hub.jobs",
    "bot.hub.modules",
    "bot.hub.environments",
    "bot.hub.approvals",
]


def make_hub(settings: Settings) -> web.Application:
    """The hub sub-application: its pages, static files, sign-in gate and CSRF check."""
    hub = web.Application(middlewares=[gate])
    hub[SETTINGS] = settings
    setup_templates(hub)
    hub.router.add_static("/static/", STATIC, name="static")
    for name in PAGES:
        importlib.import_module(name).routes(hub, settings)
    return hub


def mount(app: web.Application, settings: Settings) -> None:
    """Serve the hub under ``/hub/`` of ``app``; ``/`` and ``/hub`` lead to the jobs list."""
    async def to_jobs(_request: web.Request) -> web.Response:
        raise web.HTTPFound(f"{PREFIX}/jobs")

    for path in ("/", PREFIX, f"{PREFIX}/"):  # before the hub, whose prefix would take them
        app.router.add_get(path, to_jobs)
    app.add_subapp(PREFIX, make_hub(settings))
