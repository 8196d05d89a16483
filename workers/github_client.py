"""PyGithub clients: as a GitHub App installation (preferred) or with a personal token.

Webhook handlers and workers pass installation *ids*, never tokens (the miss-islington rule):
each process mints its own installation token from the App's key, and PyGithub's
``AppInstallationAuth`` keeps it until shortly before it expires.

Each client (one per installation and process) is lazy: objects are made from their URL and read
only when a field is needed, so ``get_repo(NAME).get_check_run(ID).edit(...)`` is one PATCH.  Its
requests carry GitHub's recommended headers and revalidate what they read before with
``If-None-Match`` (workers/github_http.py), and follow GitHub's rate-limit guidance: writes one
at a time, ``Retry-After`` and ``x-ratelimit-reset`` honoured (workers/github_pacing.py); 5xx
answers and rate limits are retried ``github_retries`` times.
"""

from __future__ import annotations

import threading

from github import Auth, Github, GithubIntegration
from github.GithubRetry import GithubRetry
from urllib3.util.retry import Retry

from workers import github_http
from workers.config import Settings
from workers.github_pacing import PacedRetry, Pacer


class NotConfigured(RuntimeError):
    """GitHub access needs GITHUB_TOKEN, or GITHUB_APP_ID with GITHUB_APP_PRIVATE_KEY."""


_clients: dict[tuple[str, int | None], Github] = {}
_transports: dict[tuple[str, int | None], github_http.Transport] = {}
_lock = threading.Lock()
github_http.install()


def configured(settings: Settings) -> bool:
    return settings.github_token is not None or (
        settings.github_app_id is not None and settings.github_app_private_key is not None
    )


def retry(settings: Settings, transport: github_http.Transport | None = None) -> GithubRetry:
    """5xx answers and rate limits (403 and 429) retried; a rate limit's wait is the transport's pacer's."""
    return PacedRetry(
        transport,
        total=settings.github_retries,
        backoff_factor=settings.github_backoff,
        secondary_rate_wait=settings.github_secondary_wait,
        status_forcelist=[*range(500, 600), 429],
        allowed_methods=Retry.DEFAULT_ALLOWED_METHODS | {"GET", "POST", "PATCH"},
        raise_on_status=False,
    )


def client(settings: Settings, installation: int | None = None) -> Github:
    """A client for ``installation`` (App auth), or the token's client; one per process each.

    Lazy: ``get_repo(NAME).get_pull(N)`` is one request, not two; ``.complete()`` reads an
    object where its existence is the question.
    """
    key = (settings.github_api_url, installation if settings.github_token is None else None)
    with _lock:
        found = _clients.get(key)
        if found is None:
            transport = _transports[key] = github_http.Transport(Pacer(settings.github_write_interval))
            found = Github(
                auth=_auth(settings, installation),
                base_url=settings.github_api_url,
                retry=retry(settings, transport),
                seconds_between_requests=None,
                seconds_between_writes=None,  # the pacer's job, per installation
                lazy=True,
            )
            _clients[key] = found
        return found


def pacer(settings: Settings, installation: int | None = None) -> Pacer | None:
    """The pacer of ``installation``'s client, if this process made one."""
    key = (settings.github_api_url, installation if settings.github_token is None else None)
    with _lock:
        transport = _transports.get(key)
        return transport.pacer if transport is not None else None


def forget(settings: Settings, installation: int) -> None:
    """Drop the client of an installation that was removed, and its token with it."""
    with _lock:
        _clients.pop((settings.github_api_url, installation), None)
        _transports.pop((settings.github_api_url, installation), None)


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
