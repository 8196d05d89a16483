"""Messages have the formatting each platform needs (issue 19, acceptance 6, Slack part): people
named by one helper, user text escaped for mrkdwn, Block Kit's limits kept with a visible
marker; and tests/blockkit.py, which the Slack stand-in runs on every message, catches each."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import blockkit
import pytest

from bot import permissions
from bot.dispatch import Reply
from bot.markup import escape_mrkdwn, mention
from bot.slack import blocks
from bot.slack.app import rendered
from workers.commands import parse
from workers.jobs import Job, Stage, State

HOSTILE = "/wasm deploy 127.0.0.1:1/f:v1 --env dev --config '{\"a\":\"<!channel> & <@U0BOSS>\"}'"


def job(text: str = HOSTILE, requester: str = "slack:W111", **changes: Any) -> Job:
    made = Job(requester=requester, origin="slack:T1:C1", command=parse(text), text=text, source_root="/",
               stages=[Stage(name="deploy")])
    return made.model_copy(update=changes)


@pytest.mark.parametrize(("person", "slack", "github", "cli"), [
    ("slack:W111", "<@W111>", "Slack user W111", "slack:W111"),
    ("github:Codertocat", "<https://github.com/Codertocat|@Codertocat>", "@Codertocat", "github:Codertocat"),
    ("alice", "alice", "alice", "alice"),
    ("a<b>&c", "a&lt;b&gt;&amp;c", "a<b>&c", "a<b>&c"),
])
def test_one_helper_names_a_person_on_each_front_end(person: str, slack: str, github: str, cli: str) -> None:
    assert [mention(person, fe) for fe in ("slack", "github", "cli")] == [slack, github, cli]


def test_user_text_is_escaped_in_every_part_of_a_job_message() -> None:
    failed = job(state=State.FAILED, stages=[Stage(name="deploy", state=State.FAILED, error="x < y && z > 0")],
                 artifacts={"image": "r/<i>", "digest": "sha256:&"},
                 approval={"approved_by": "github:Codertocat"})
    message = blocks.job_message(failed, "http://127.0.0.1:1/jobs/x/log?sig=a")
    shown = json.dumps(message)
    assert "&lt;!channel&gt; &amp; &lt;@U0BOSS&gt;" in shown and "<!channel>" not in shown
    assert "x &lt; y &amp;&amp; z &gt; 0" in shown and "r/&lt;i&gt;" in shown
    assert "approved by <https://github.com/Codertocat|@Codertocat>" in shown and "<@github:" not in shown
    assert "&lt;!channel&gt;" in blocks.summary(failed)
    assert blockkit.problems("chat.update", {"text": blocks.summary(failed), "blocks": message}) == []


def test_who_cancelled_a_stage_is_mentioned() -> None:
    cancelled = job(state=State.CANCELLED,
                    stages=[Stage(name="deploy", state=State.CANCELLED, error="cancelled by github:Codertocat")])
    assert "> cancelled by <https://github.com/Codertocat|@Codertocat>" in blocks.job_message(cancelled)[2]["text"]["text"]


def test_the_release_announcement_links_a_github_requester() -> None:
    released = job("/wasm build examples/hello-c --tag 127.0.0.1:1/f:v1 --release", requester="github:Codertocat")
    inspected = {"reference": "127.0.0.1:1/f:v1", "digest": "sha256:" + "0" * 64, "size": 10}
    announced = blocks.announcement(released, inspected)
    assert "asked by <https://github.com/Codertocat|@Codertocat>" in json.dumps(announced)
    assert blockkit.problems("chat.postMessage", {"text": "released", "blocks": announced}) == []


def test_block_kit_limits_are_kept_with_a_visible_marker() -> None:
    long = job(stages=[Stage(name=f"s{i}", state=State.FAILED, error="e" * 5000) for i in range(40)],
               state=State.PENDING,
               approval={"action": "deploy:prod", "expires_at": str(time.time() + 60), "diff": "+ <x>\n" * 2000})
    message = blocks.job_message(long)
    for block in message:
        if block["type"] == "section":
            assert len(block["text"]["text"]) <= blocks.MAX_SECTION
    diff = next(b["text"]["text"] for b in message if b["type"] == "section" and b["text"]["text"].startswith("```"))
    assert diff.endswith(blocks.TRUNCATED + "```") and "&lt;x&gt;" in diff
    assert blockkit.problems("chat.update", {"text": blocks.summary(long), "blocks": message}) == []

    many = [blocks._section(f"block {i}") for i in range(60)] + [{"type": "actions", "elements": []}]
    fitted = blocks.fit(many)
    assert len(fitted) == blocks.MAX_BLOCKS and fitted[-1]["type"] == "actions"
    assert "12 more blocks not shown" in fitted[-2]["elements"][0]["text"]

    listed = rendered(Reply("here:", detail="job <1> & more\n" * 5000))
    assert len(listed) <= blocks.MAX_TEXT and listed.endswith(blocks.TRUNCATED + "```")
    assert blockkit.problems("response_url", {"text": listed}) == []


def test_clipping_never_splits_an_entity_or_a_mention() -> None:
    assert blocks.clip("ab &amp; cd, and more text after it", 5 + len(blocks.TRUNCATED)) == "ab " + blocks.TRUNCATED
    assert blocks.clip("hi <@W111> there, and more text after it", 7 + len(blocks.TRUNCATED)) == "hi " + blocks.TRUNCATED
    assert blocks.clip("short", 100) == "short"


@pytest.mark.parametrize(("args", "found"), [
    ({"text": "x", "blocks": [{"type": "divider"}] * 51}, "/blocks: 51 blocks"),
    ({"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}]}, "/blocks/0/text/text: 3001"),
    ({"blocks": [{"type": "section", "fields": [{"type": "mrkdwn", "text": "x"}] * 11}]}, "/blocks/0/fields: 11"),
    ({"blocks": [{"type": "header", "text": {"type": "plain_text", "text": "x" * 151}}]}, "/blocks/0/text/text: 151"),
    ({"blocks": [{"type": "context", "elements": [{"type": "mrkdwn", "text": "x"}] * 11}]}, "/elements: 11"),
    ({"text": "asked by <@github:Codertocat>"}, "'<@github:Codertocat>' is not Slack markup"),
    ({"text": "a < b"}, "unescaped < or >"),
    ({"text": "fish & chips"}, "unescaped &"),
    ({"text": "x" * 40_001}, "/text: 40001 characters"),
])
def test_the_checker_catches_what_slack_refuses_or_shows_broken(args: dict[str, Any], found: str) -> None:
    assert any(found in problem for problem in blockkit.problems("chat.postMessage", args)), \
        blockkit.problems("chat.postMessage", args)


def test_a_refusal_names_people_as_each_front_end_shows_them() -> None:
    policy = permissions.Policy({"deploy:prod": ["user:W1", "user:github:Lead", "group:S1", "channel:C1",
                                                 "github:trusted", "user:alice"]},
                                people={"alice": ["slack:W2", "github:alice"]})

    def refusal(front_end: str) -> str | None:
        who = permissions.Principal("github:mallory", association="CONTRIBUTOR")
        return asyncio.run(permissions.check(policy, "deploy:prod", who, front_end=front_end))

    assert refusal("slack") == (
        "you may not deploy:prod: that needs <@W1>, <https://github.com/Lead|@Lead>, membership of "
        "<!subteam^S1>, asking in <#C1>, a GitHub author association of OWNER or MEMBER or COLLABORATOR, alice "
        "(GitHub lists you as CONTRIBUTOR)")
    assert refusal("github") == (
        "you may not deploy:prod: that needs Slack user W1, @Lead, membership of Slack group S1, asking in "
        "Slack channel C1, a GitHub author association of OWNER or MEMBER or COLLABORATOR, alice "
        "(GitHub lists you as CONTRIBUTOR)")


@pytest.mark.parametrize(("who", "allowed"), [
    (permissions.Principal("slack:W1"), True),  # a bare id in a rule is a Slack user's
    (permissions.Principal("github:W1"), False),
    (permissions.Principal("github:lead"), True),  # logins are case-insensitive
    (permissions.Principal("slack:W2"), True),  # alice, through [people]
    (permissions.Principal("github:ALICE"), True),
    (permissions.Principal("github:x", association="member"), True),
    (permissions.Principal("github:x", association="CONTRIBUTOR"), False),
    (permissions.Principal("github:x", association="FIRST_TIME_CONTRIBUTOR"), True),
    (permissions.Principal("slack:W9", channel="C1"), True),
    (permissions.Principal("slack:W9", channel="C2"), False),
])
def test_principals(who: permissions.Principal, allowed: bool) -> None:
    policy = permissions.Policy({"x": ["user:W1", "user:github:Lead", "user:alice", "channel:C1", "github:trusted",
                                       "github:first_time_contributor"]},
                                people={"alice": ["slack:W2", "github:alice"]})
    assert (asyncio.run(permissions.check(policy, "x", who, front_end="slack")) is None) == allowed


def test_the_requester_is_the_same_person_under_either_id() -> None:
    policy = permissions.Policy({"cancel": ["requester"]}, people={"alice": ["slack:W2", "github:Alice"]})

    def may(who: str, owner: str) -> bool:
        return asyncio.run(permissions.check(policy, "cancel", permissions.Principal(who), front_end="github",
                                             owner=owner)) is None

    assert may("github:alice", "slack:W2") and may("slack:W2", "github:ALICE") and may("github:bob", "github:Bob")
    assert not may("github:bob", "slack:W2") and not may("slack:W3", "slack:W2")
    assert escape_mrkdwn("<&>") == "&lt;&amp;&gt;"
