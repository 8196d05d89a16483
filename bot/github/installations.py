"""``installation`` deleted or suspended: forget the installation's client, so no token minted
for it is used again (GitHub revokes them; a cached client would only fail later)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from gidgethub import routing, sansio

from workers.github_client import forget

if TYPE_CHECKING:
    from bot.github.app import GitHubFrontEnd

log = logging.getLogger(__name__)
router = routing.Router()


@router.register("installation", action="deleted")
@router.register("installation", action="suspend")
async def installation_removed(event: sansio.Event, fe: GitHubFrontEnd) -> None:
    installation = event.data["installation"]
    forget(fe.settings, int(installation["id"]))
    account = (installation.get("account") or {}).get("login", "?")
    log.info("GitHub App installation %s (%s) %s: its client is dropped", installation["id"], account,
             event.data["action"])
