"""PyGithub clients: as a GitHub App installation (preferred) or with a personal token.

Webhook handlers and workers pass installation *ids*, never tokens (the miss-islington rule):
each process mints its own installation token from the App's key, and PyGithub's
``AppInstallationAuth`` keeps it until shortly before it expires.  Every client retries 5xx
answers and secondary rate limits (403 or 429 with ``Retry-After``) with exponential backoff.
"""

from __future__ import annotations

import threading

from github import Auth, Github, GithubIntegration
from github.GithubRetry import GithubRetry
from urllib3.util.retry import Retry

from workers.config import Settings


class NotConfigured(RuntimeError):
    """GitHub access needs GITHUB_TOKEN, or GITHUB_APP_ID with GITHUB_APP_PRIVATE_KEY."""


_clients: dict[tuple[str, int | None], Github] = {}
_lock = threading.Lock()


def configured(settings: Settings) -> bool:
    return settings.github_token is not None or (
        settings.github_app_id is not None and settings.github_app_private_key is not None
    )


def retry(settings: Settings) -> GithubRetry:
    return GithubRetry(
        total=settings.github_retries,
        backoff_factor=settings.github_backoff,
        secondary_rate_wait=max(settings.github_backoff, 1.0),
        allowed_methods=Retry.DEFAULT_ALLOWED_METHODS | {"GET", "POST", "PATCH"},
        raise_on_status=False,
    )


def client(settings: Settings, installation: int | None = None) -> Github:
    """A client for ``installation`` (App auth), or the token's client; one per process each.

    Lazy: ``get_repo(NAME).get_pull(N)`` is one request, not two.
    """
    key = (settings.github_api_url, installation if settings.github_token is None else None)
    with _lock:
        found = _clients.get(key)
        if found is None:
            found = Github(
                auth=_auth(settings, installation),
                base_url=settings.github_api_url,
                retry=retry(settings),
                seconds_between_requests=None,
                seconds_between_writes=settings.github_write_interval or None,
            )
            _clients[key] = found
        return found


def forget(settings: Settings, installation: int) -> None:
    """Drop the client of an installation that was removed, and its token with it."""
    with _lock:
        _clients.pop((settings.github_api_url, installation), None)


def _auth(settings: Settings, installation: int | None) -> Auth.Auth:
    if settings.github_token is not None:
        return Auth.Token(settings.github_token.get_secret_value())
    if settings.github_app_id is None or settings.github_app_private_key is None:
        raise NotConfigured(
            "GitHub is not configured: set GITHUB_TOKEN, or GITHUB_APP_ID and "
            "GITHUB_APP_PRIVATE_KEY (see docs/github.md)"
        )
    app = Auth.AppAuth(settings.github_app_id, settings.github_app_private_key.get_secret_value())
    if installation is None:
        raise NotConfigured("this GitHub App call needs an installation id (the event had none)")
    # The client's requester (base URL, retries) is handed to the token exchange as well.
    return app.get_installation_auth(installation)


def installation_for(settings: Settings, repo: str, given: int | None) -> int | None:
    """The installation to act as on ``repo``: the event's, else looked up (App auth only)."""
    if given is not None or settings.github_token is not None:
        return given
    if settings.github_app_id is None or settings.github_app_private_key is None:
        raise NotConfigured(
            "GitHub is not configured: set GITHUB_TOKEN, or GITHUB_APP_ID and "
            "GITHUB_APP_PRIVATE_KEY (see docs/github.md)"
        )
    app = Auth.AppAuth(settings.github_app_id, settings.github_app_private_key.get_secret_value())
    owner, _, name = repo.partition("/")
    integration = GithubIntegration(auth=app, base_url=settings.github_api_url, retry=retry(settings))
    return int(integration.get_repo_installation(owner, name).id)
