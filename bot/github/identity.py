"""Who wrote a pull request comment, as the one permission model (bot/permissions.py) sees them:
``github:LOGIN``, with the comment's author association for ``github:trusted`` and
``github:ASSOCIATION`` rules."""

from __future__ import annotations

from typing import Any

from bot.dispatch import Requester
from bot.permissions import Principal


def commenter(comment: dict[str, Any]) -> Requester:
    """The requester of a command in ``comment`` (an ``issue_comment`` payload's comment)."""
    person = f"github:{comment['user']['login']}"
    association = comment.get("author_association") or "NONE"
    return Requester("github", person, Principal(person, association=association))
