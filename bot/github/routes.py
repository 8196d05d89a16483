"""The GitHub front end's router: one module per event, each with its own handlers (bedevere's
layout); the webhook (bot/github/app.py) hands every verified delivery to ``router``."""

from gidgethub import routing

from bot.github import checks, comments, installations, pulls, releases

router = routing.Router(pulls.router, comments.router, checks.router, releases.router, installations.router)
