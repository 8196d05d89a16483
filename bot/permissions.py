"""Who may run what: one policy for every front end, checked server-side on every action.

The configuration maps an action to the principals allowed it::

    [permissions]
    build = ["*"]
    "deploy:staging" = ["group:S0DEVS", "user:U0LEAD", "user:github:octocat"]
    "deploy:prod" = ["group:S0SRE", "user:alice"]
    "approve:prod" = ["group:S0LEADS"]
    cancel = ["requester", "group:S0SRE"]
    "ok-to-test" = ["github:trusted"]

    [people]            # optional: one person's ids on each front end
    alice = ["slack:U0ALICE", "github:alice"]

A requester is known by the id job records keep: ``slack:U…`` (a Slack user), ``github:LOGIN``
(whoever wrote a pull request comment), or the CLI user's name.  Principals:

- ``*``: anyone;
- ``user:ID``: ``ID`` is ``slack:U…`` or a bare Slack id ``U…``, ``github:LOGIN`` (any case),
  or a name from ``[people]``, which stands for every id listed for it;
- ``group:ID``: a member of that Slack user group;
- ``channel:ID``: asked in that Slack channel;
- ``github:trusted``: a pull request commenter whose author association is in
  ``github_trusted`` (OWNER, MEMBER, COLLABORATOR by default); ``github:ASSOCIATION`` (such as
  ``github:member``, ``github:contributor``): a commenter with exactly that association;
- ``requester``: whoever asked for the job acted on (or the same person, through ``[people]``).

So the same command by the same person gets the same answer from Slack and from a pull
request comment.  Actions missing from the configuration fall back to what the command registry
declares (workers/commands/registry.py, ``Spec.allowed``); an action with no rule at all is
refused, so new powers (deploys, approvals) are closed until someone opens them.  The CLI runs
on the host with the job store itself, so the policy guards the chat front ends, not it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bot.markup import mention
from workers.commands import COMMANDS
from workers.config import Settings

DEFAULTS: dict[str, list[str]] = {spec.action: list(spec.allowed) for spec in COMMANDS if spec.allowed}
TRUSTED = ("OWNER", "MEMBER", "COLLABORATOR")


@dataclass(frozen=True)
class Principal:
    """Who is asking, and where: ``user`` as job records keep it ("slack:U1", "github:octocat"),
    the Slack ``channel`` asked in, and a GitHub commenter's ``association`` with the repository."""

    user: str
    channel: str | None = None
    association: str | None = None


@dataclass(frozen=True)
class Policy:
    """``[permissions]`` and ``[people]``, and who ``github:trusted`` is."""

    rules: dict[str, list[str]] = field(default_factory=dict)
    people: dict[str, list[str]] = field(default_factory=dict)
    trusted: tuple[str, ...] = TRUSTED

    def people_of(self, person: str) -> set[str]:
        """The ``[people]`` names ``person`` (an id) goes by."""
        own = _canonical(person)
        return {name for name, ids in self.people.items() if own in {_canonical(i) for i in ids}}

    def same_person(self, one: str, other: str) -> bool:
        """Whether ids ``one`` and ``other`` are one person: the same id, or listed together."""
        return _canonical(one) == _canonical(other) or bool(self.people_of(one) & self.people_of(other))

    def is_user(self, value: str, person: str) -> bool:
        """Whether ``user:VALUE`` names ``person``: a ``[people]`` name, or any of their ids."""
        if value in self.people:
            return value in self.people_of(person)
        return self.same_person(_id(value), person)


def policy_of(settings: Settings) -> Policy:
    return Policy(settings.permissions, settings.people, tuple(t.upper() for t in settings.github_trusted))


GroupLookup = Callable[[str], Awaitable[set[str]]]  # group id -> member user ids


def _canonical(person: str) -> str:
    """GitHub logins are case-insensitive."""
    return person.lower() if person.lower().startswith("github:") else person


def _id(value: str) -> str:
    """A rule's user id as job records keep it: a bare id is a Slack user's."""
    return value if ":" in value else f"slack:{value}"


def rules_for(policy: Policy, action: str) -> list[str]:
    return policy.rules.get(action, DEFAULTS.get(action, []))


async def check(policy: Policy, action: str, who: Principal, *, front_end: str, owner: str | None = None,
                members: GroupLookup | None = None) -> str | None:
    """None when ``who`` may do ``action``; otherwise the reason, naming what is missing, as
    ``front_end`` shows it.  ``owner``: the requester of the job the action is on."""
    rules = rules_for(policy, action)
    association = (who.association or "").upper()
    for rule in rules:
        kind, _, value = rule.partition(":")
        if rule == "*" or (kind == "user" and policy.is_user(value, who.user)) \
                or (kind == "channel" and value == who.channel) \
                or (rule == "github:trusted" and association in policy.trusted) \
                or (kind == "github" and value != "trusted" and association == value.upper()) \
                or (rule == "requester" and owner is not None and policy.same_person(owner, who.user)):
            return None
        slack_user = who.user.removeprefix("slack:") if who.user.startswith("slack:") else None
        if kind == "group" and members is not None and slack_user and slack_user in await members(value):
            return None
    if not rules:
        return f"nobody may {action} here yet: an admin must add `{action}` to [permissions]"
    wanted = ", ".join(_describe(rule, policy, front_end) for rule in rules)
    if association and any(rule.startswith("github:") for rule in rules):
        wanted += f" (GitHub lists you as {association})"
    return f"you may not {action}: that needs {wanted}"


def _describe(rule: str, policy: Policy, front_end: str) -> str:
    kind, _, value = rule.partition(":")
    if kind == "user":
        return value if value in policy.people else mention(_id(value), front_end)
    if kind == "github":
        associations = policy.trusted if value == "trusted" else (value.upper(),)
        return f"a GitHub author association of {' or '.join(associations)}"
    if front_end == "slack":
        described = {"group": f"membership of <!subteam^{value}>", "channel": f"asking in <#{value}>"}
    else:
        described = {"group": f"membership of Slack group {value}",
                     "channel": f"asking in Slack channel {value}"}
    return described.get(kind, "being the job's requester" if rule == "requester" else "anyone")
