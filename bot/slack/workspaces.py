"""Which Slack workspace a request comes from, and the Web API client that answers it there.

One bot token serves one workspace; with a client id and secret wasmbot is installed through
OAuth instead, and each workspace (or an Enterprise Grid org) has its own installation token,
kept in the job store so that every replica has it (bot/slack/installations.py).
"""

from __future__ import annotations

from slack_bolt.async_app import AsyncApp
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack.installations import STATE_TTL, StoredInstallations, StoredStates, import_files
from workers.config import Settings
from workers.store import JobStore

# The bot token scopes the app manifest asks for (deploy/slack-app-manifest.yaml says why).
SCOPES = ["commands", "chat:write", "chat:write.public", "usergroups:read", "app_mentions:read"]


def workspace(enterprise: str | None, team: str | None) -> str:
    """One key for a workspace: ``ENTERPRISE/TEAM`` (either part may be empty)."""
    return f"{enterprise or ''}/{team or ''}"


def oauth_settings(settings: Settings, store: JobStore) -> AsyncOAuthSettings | None:
    """OAuth installs, kept in the job store, when a client id and secret are set (those an
    earlier version kept under the data directory are moved in first)."""
    if not (settings.slack_client_id and settings.slack_client_secret):
        return None
    import_files(settings.data_dir / "slack" / "installations", store)
    return AsyncOAuthSettings(
        client_id=settings.slack_client_id,
        client_secret=settings.slack_client_secret.get_secret_value(),
        scopes=SCOPES,
        installation_store=StoredInstallations(store),
        state_store=StoredStates(store),
        state_expiration_seconds=STATE_TTL,
        install_path="/slack/install",
        redirect_uri_path="/slack/oauth_redirect",
    )


async def client_for(app: AsyncApp, client: AsyncWebClient, settings: Settings,
                     key: str | None) -> AsyncWebClient:
    """The Web API client for workspace ``key`` (``ENTERPRISE/TEAM``): ``client`` with the bot
    token, or a client with that workspace's installation token when installed through OAuth."""
    store = app.installation_store
    if app.oauth_flow is None or store is None:
        return client
    enterprise, _, team = (key or "/").partition("/")
    bot = await store.async_find_bot(enterprise_id=enterprise or None, team_id=team or None)
    if bot is None and enterprise:  # an org-wide installation serves every team of the org
        bot = await store.async_find_bot(enterprise_id=enterprise, team_id=None, is_enterprise_install=True)
    if bot is None or not bot.bot_token:
        raise LookupError(f"wasmbot is not installed in Slack workspace {key}")
    return AsyncWebClient(token=bot.bot_token, base_url=settings.slack_api_url,
                          retry_handlers=client.retry_handlers)
