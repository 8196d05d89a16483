"""The one aiohttp application ``wasmbot serve`` runs: the web front end's routes, the hub's
pages (``/hub/``), and the Slack front end at ``/slack/events`` and the GitHub one at
``/github/webhook`` when each is configured.  This is where the front ends meet (releases
built from GitHub are announced in Slack), so that none of them imports another.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bot import hub, loglinks
from bot import web as web_front_end
from bot.loglinks import log_url
from workers.config import Settings

SLACK: web.AppKey[Any] = web.AppKey("slack")
GITHUB: web.AppKey[Any] = web.AppKey("github")


def make_app(settings: Settings) -> web.Application:
    # Webhooks read their bodies with read_body and their own limits; other routes take none.
    app = web.Application(client_max_size=2**16)
    web_front_end.mount(app, settings)
    hub.mount(app, settings)
    from bot.slack import app as slack

    if slack.configured(settings):
        app[SLACK] = slack.SlackFrontEnd(settings)
        app[SLACK].mount(app)
    from bot.github import app as github

    if github.configured(settings):
        app[GITHUB] = github.GitHubFrontEnd(settings, log_url=lambda job: log_url(settings, job.id))
        app[GITHUB].mount(app)
        app[web_front_end.FLUSH_COUNTS].append(app[GITHUB].counts.flush)
        if SLACK in app:  # releases published on GitHub are announced in Slack
            app[GITHUB].announce = app[SLACK].reporter.announce_when_released
    loglinks.check(settings)
    app.on_startup.append(_adopt_reports)
    return app


async def _adopt_reports(app: web.Application) -> None:
    """Each front end's reporter takes over the reports another replica (or this one, before a
    restart) left unfinished (bot/follow.py)."""
    for front_end in (SLACK, GITHUB):
        if front_end in app:
            app[front_end].reporter.adopt()
