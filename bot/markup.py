"""How a reply names a person and quotes user text, on the front end that shows it.

A person is the id job records keep: ``slack:U0123`` (a Slack user), ``github:octocat`` (a
GitHub login) or a CLI user's login name (``alice``).  Slack's mrkdwn turns ``<@U0123>`` into a
mention, so only Slack users are written that way there; a GitHub login becomes a link to its
profile, ``<https://github.com/octocat|@octocat>``, and anyone else plain (escaped) text.  A pull
request comment mentions ``@octocat``; the CLI prints ids as they are.

Slack reads ``&``, ``<`` and ``>`` in mrkdwn as markup (links, mentions, entities), so every
piece of user text in a Slack message (command text, errors, log excerpts, lists) goes through
``quote``; the other front ends show text as it is.
"""

from __future__ import annotations

_MRKDWN = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def escape_mrkdwn(text: str) -> str:
    """``text`` as Slack shows it literally in a mrkdwn (or ``text``) field."""
    return text.translate(_MRKDWN)


def quote(text: str, front_end: str) -> str:
    """User text, escaped for ``front_end`` (only Slack needs it)."""
    return escape_mrkdwn(text) if front_end == "slack" else text


def mention(person: str, front_end: str) -> str:
    """``person`` (a job record's requester id) named in a message on ``front_end``."""
    kind, _, value = person.partition(":")
    if front_end == "slack":
        if kind == "slack" and value:
            return f"<@{escape_mrkdwn(value)}>"
        if kind == "github" and value:
            return f"<https://github.com/{escape_mrkdwn(value)}|@{escape_mrkdwn(value)}>"
        return escape_mrkdwn(person)
    if front_end == "github":
        if kind == "github" and value:
            return f"@{value}"
        if kind == "slack" and value:
            return f"Slack user {value}"
    return person
