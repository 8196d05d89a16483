"""Slack OAuth installations and install states in the job store, shared by every replica.

An install may begin on one replica (``/slack/install`` issues a state) and end on another
(``/slack/oauth_redirect`` consumes it), and any replica answers any workspace's commands with
that workspace's token; so neither may live in one server's data directory, as slack_sdk's
file stores keep them.  The rules are the file store's: a workspace (or an Enterprise Grid
org, for an org-wide install) has its latest bot, its latest installer and each user's latest
installation; an installation found for a user carries the workspace's latest bot token.

A workspace's installations are one document in the store (``save_view``), written whole:
two installs of the same workspace finishing at the same moment keep the later one.  A state
is a claimed key taken back once (``claim_key``/``take_key``), good for ``STATE_TTL`` seconds.
Installations kept by an earlier version under ``DATA_DIR/slack/installations`` are moved in
at start (``import_files``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from pathlib import Path
from typing import Any

from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.oauth.installation_store.models.bot import Bot
from slack_sdk.oauth.installation_store.models.installation import Installation
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore

from workers.store import JobStore

log = logging.getLogger(__name__)
STATE_TTL = 600  # seconds an install page's state is good for (slack_sdk's default)


def _name(enterprise: str | None, team: str | None) -> str:
    return f"slack-installations:{enterprise or ''}/{team or ''}"


class StoredInstallations(AsyncInstallationStore):
    """slack_sdk's installation store on wasmbot's job store (its calls are the store's, off the
    event loop)."""

    def __init__(self, store: JobStore) -> None:
        self.store = store

    @property
    def logger(self) -> logging.Logger:
        return log

    def _read(self, enterprise: str | None, team: str | None) -> dict[str, Any]:
        text = self.store.view(_name(enterprise, team))
        found: dict[str, Any] = json.loads(text) if text else {}
        return {"bot": None, "installer": None, "users": {}} | found

    def _write(self, enterprise: str | None, team: str | None, doc: dict[str, Any]) -> None:
        if doc["bot"] is None and doc["installer"] is None and not doc["users"]:
            self.store.drop_view(_name(enterprise, team))
        else:
            self.store.save_view(_name(enterprise, team), json.dumps(doc))

    def save(self, installation: Installation) -> None:
        team = None if installation.is_enterprise_install else installation.team_id
        doc = self._read(installation.enterprise_id, team)
        if installation.bot_token is not None:
            doc["bot"] = vars(installation.to_bot())
        doc["installer"] = vars(installation)
        doc["users"][installation.user_id or ""] = vars(installation)
        self._write(installation.enterprise_id, team, doc)

    def save_bot(self, bot: Bot) -> None:
        if bot.bot_token is None:
            return
        team = None if bot.is_enterprise_install else bot.team_id
        doc = self._read(bot.enterprise_id, team)
        doc["bot"] = vars(bot)
        self._write(bot.enterprise_id, team, doc)

    def find_installation(self, enterprise_id: str | None, team_id: str | None, user_id: str | None,
                          is_enterprise_install: bool | None) -> Installation | None:
        doc = self._read(enterprise_id, None if is_enterprise_install else team_id)
        found = doc["users"].get(user_id) if user_id is not None else doc["installer"]
        if not found:
            return None
        installation = Installation(**found)
        bot = doc["bot"]
        if bot and (user_id is not None or installation.bot_token is None):  # the latest bot token
            for field in ("bot_id", "bot_user_id", "bot_token", "bot_scopes", "bot_refresh_token",
                          "bot_token_expires_at"):
                setattr(installation, field, bot.get(field))
        return installation

    def delete(self, enterprise_id: str | None, team_id: str | None, *, bot: bool,
               user_id: str | None = None) -> None:
        """Forget the bot (``bot``), or one user's installation, or every installation."""
        doc = self._read(enterprise_id, team_id)
        if bot:
            doc["bot"] = None
        elif user_id is None:
            doc["installer"], doc["users"] = None, {}
        else:
            doc["users"].pop(user_id, None)
        self._write(enterprise_id, team_id, doc)

    async def async_save(self, installation: Installation) -> None:
        await asyncio.to_thread(self.save, installation)

    async def async_save_bot(self, bot: Bot) -> None:
        await asyncio.to_thread(self.save_bot, bot)

    async def async_find_bot(self, *, enterprise_id: str | None, team_id: str | None,
                             is_enterprise_install: bool | None = False) -> Bot | None:
        doc = await asyncio.to_thread(self._read, enterprise_id, None if is_enterprise_install else team_id)
        return Bot(**doc["bot"]) if doc["bot"] else None

    async def async_find_installation(self, *, enterprise_id: str | None, team_id: str | None,
                                      user_id: str | None = None,
                                      is_enterprise_install: bool | None = False) -> Installation | None:
        return await asyncio.to_thread(self.find_installation, enterprise_id, team_id, user_id,
                                       is_enterprise_install)

    async def async_delete_bot(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        await asyncio.to_thread(self.delete, enterprise_id, team_id, bot=True)

    async def async_delete_installation(self, *, enterprise_id: str | None, team_id: str | None,
                                        user_id: str | None = None) -> None:
        await asyncio.to_thread(self.delete, enterprise_id, team_id, bot=False, user_id=user_id)


class StoredStates(AsyncOAuthStateStore):
    """Install states as claimed keys: issued on one replica, taken back once on any."""

    def __init__(self, store: JobStore) -> None:
        self.store = store

    @property
    def logger(self) -> logging.Logger:
        return log

    async def async_issue(self, *args: Any, **kwargs: Any) -> str:
        state = secrets.token_urlsafe(24)
        await asyncio.to_thread(self.store.claim_key, f"slack-oauth-state:{state}", "issued", STATE_TTL)
        return state

    async def async_consume(self, state: str) -> bool:
        return await asyncio.to_thread(self.store.take_key, f"slack-oauth-state:{state}") == "issued"


def import_files(folder: Path, store: JobStore) -> int:
    """Move installations an earlier version kept under ``folder`` (slack_sdk's file store:
    ``ENTERPRISE-TEAM/bot-latest``, ``installer-latest``, ``installer-USER-latest``) into the
    store, then rename ``folder`` so they are moved once; the number of workspaces moved."""
    if not folder.is_dir():
        return 0
    stored, moved = StoredInstallations(store), 0
    for workspace in sorted(p for p in folder.iterdir() if p.is_dir()):
        for path in [*sorted(workspace.glob("installer-*-latest")), workspace / "installer-latest"]:
            if path.is_file():  # each user's, then the workspace's latest installer
                stored.save(Installation(**json.loads(path.read_text())))
        if (workspace / "bot-latest").is_file():
            stored.save_bot(Bot(**json.loads((workspace / "bot-latest").read_text())))
        moved += 1
    folder.rename(folder.with_name(folder.name + ".moved-to-store"))
    log.info("moved the Slack installations of %d workspaces from %s into the store", moved, folder)
    return moved
