"""Who may run what: one policy for every front end, checked server-side on every action.

The configuration maps an action to the principals allowed it::

    [permissions]
    build = ["*"]
    "deploy:staging" = ["group:S0DEVS", "user:U0LEAD"]
    "deploy:prod" = ["group:S0SRE"]
    "approve:prod" = ["group:S0LEADS"]
    cancel = ["requester", "group:S0SRE"]

Principals: ``*`` (anyone), ``user:ID``, ``group:ID`` (a Slack user group), ``channel:ID``
(when asked in that channel), ``requester`` (whoever asked for the job acted on).  Actions
missing from the configuration fall back to what the command registry declares
(workers/commands/registry.py, ``Spec.allowed``); an action with no rule at all is refused, so
new powers (deploys, approvals) are closed until someone opens them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from workers.commands import COMMANDS

DEFAULTS: dict[str, list[str]] = {spec.action: list(spec.allowed) for spec in COMMANDS if spec.allowed}


@dataclass(frozen=True)
class Principal:
    """Who is asking, and where: ``user`` and ``channel`` are front-end ids (Slack U…, C…)."""

    user: str
    channel: str | None = None


GroupLookup = Callable[[str], Awaitable[set[str]]]  # group id -> member user ids


def rules_for(policy: dict[str, list[str]], action: str) -> list[str]:
    return policy.get(action, DEFAULTS.get(action, []))


async def check(policy: dict[str, list[str]], action: str, who: Principal, *,
                requester: bool = False, members: GroupLookup | None = None) -> str | None:
    """None when ``who`` may do ``action``; otherwise the reason, naming what is missing.
    ``requester``: ``who`` asked for the job the action is on."""
    rules = rules_for(policy, action)
    for rule in rules:
        kind, _, value = rule.partition(":")
        if rule == "*" or (kind == "user" and value == who.user) \
                or (kind == "channel" and value == who.channel) \
                or (rule == "requester" and requester):
            return None
        if kind == "group" and members is not None and who.user in await members(value):
            return None
    if not rules:
        return f"nobody may {action} here yet: an admin must add `{action}` to [permissions]"
    wanted = ", ".join(_describe(rule) for rule in rules)
    return f"you may not {action}: that needs {wanted}"


def _describe(rule: str) -> str:
    kind, _, value = rule.partition(":")
    described = {"user": f"<@{value}>", "group": f"membership of <!subteam^{value}>",
                 "channel": f"asking in <#{value}>"}
    return described.get(kind, "being the job's requester" if rule == "requester" else "anyone")
