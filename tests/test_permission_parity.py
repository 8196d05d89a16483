"""One permission model for every front end (issue 19, acceptance 1): the same command by the same
person gets the same answer from a Slack slash command (signed, to ``/slack/events``) and from
a pull request comment (a signed ``issue_comment`` webhook), under the default policy and under
a configured one; and a pull request comment sees only its own repository's jobs.

Alice is Slack user W111 and GitHub user alice, Bob is W222 and bob (``[people]``); Carol asks
for the jobs the others act on.  The expected answers are written out in ``TABLE``, not derived
from the policy code.  The CLI runs on the host with the job store itself, outside the policy
(docs/security.md): it is checked to answer every one of these commands.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests
from conftest import Wasmbot
from githubapi import TOKEN, WEBHOOK_SECRET, GitHubStandIn, webhook_headers
from slackapi import BOT_TOKEN, SIGNING_SECRET, SlackStandIn, signed_headers, slash_command
from test_github import FILTER, REPO, comment_event

from bot.localservices import free_port
from workers.commands import parse
from workers.jobs import Job, Stage, State

PEOPLE = {"alice": ["slack:W111", "github:alice"], "bob": ["slack:W222", "github:bob"]}
SLACK_ID = {"alice": "W111", "bob": "W222"}
CONFIGURED = {"deploy:prod": ["user:alice"], "approve:prod": ["user:bob"], "history": ["user:alice"],
              "cancel": ["requester", "user:bob"], "jobs": ["user:alice", "user:bob"]}
OK, OWN, NO_JOB = "allowed", "your own change", "no such job"
NOBODY = "nobody may {0} here yet: an admin must add `{0}` to [permissions]"

# (command, who asks, answer under the default policy, answer under CONFIGURED).  In commands,
# {carols} is a queued job Carol asked for, {alices} one Alice asked for (from Slack), and
# {pending} / {bobs_pending} a deploy to prod waiting for approval, asked for by Carol / Bob.
TABLE = [
    ("help", "alice", OK, OK),
    ("jobs", "bob", OK, OK),
    ("status", "alice", OK, OK),
    ("history prod", "alice", OK, OK),
    ("history prod", "bob", OK, "you may not history: that needs alice"),
    ("deploy 127.0.0.1:1/f:v1 --env prod", "alice", NOBODY.format("deploy:prod"), OK),
    ("deploy 127.0.0.1:1/f:v1 --env prod", "bob", NOBODY.format("deploy:prod"),
     "you may not deploy:prod: that needs alice"),
    ("rollback prod", "bob", NOBODY.format("deploy:prod"), "you may not deploy:prod: that needs alice"),
    ("undeploy prod f", "bob", NOBODY.format("deploy:prod"), "you may not deploy:prod: that needs alice"),
    ("cancel {alices}", "alice", OK, OK),  # asked for in Slack, cancelled from either
    ("cancel {carols}", "alice", "you may not cancel: that needs being the job's requester",
     "you may not cancel: that needs being the job's requester, bob"),
    ("cancel {carols}", "bob", "you may not cancel: that needs being the job's requester", OK),
    ("cancel 000000000000", "alice", NO_JOB, NO_JOB),
    ("approve {pending}", "alice", NOBODY.format("approve:prod"), "you may not approve:prod: that needs bob"),
    ("approve {pending}", "bob", NOBODY.format("approve:prod"), OK),
    ("deny {pending}", "bob", NOBODY.format("approve:prod"), OK),
    ("approve {bobs_pending}", "bob", NOBODY.format("approve:prod"), OWN),
]


def answer_of(text: str) -> str:
    """What an answer says about permission, whatever front end wrote it."""
    text = re.sub(r"^:\w+: ", "", text.strip())
    refused = re.search(r"(?:you may not|nobody may) .*", text)
    if refused:
        return refused.group(0)
    if "you asked for this change" in text:
        return OWN
    if "there is no job" in text:
        return NO_JOB
    return OK


@dataclass
class Both:
    """``wasmbot serve`` with the Slack and GitHub front ends, against both stand-ins."""

    url: str
    slack: SlackStandIn
    github: GitHubStandIn
    bot: Wasmbot

    def slack_says(self, text: str, person: str) -> str:
        name = f"commands/{uuid.uuid4().hex}"
        posted = len(self.slack.called("chat.postMessage"))
        body = slash_command(text, self.slack.response_url(name), user=SLACK_ID[person])
        acked = requests.post(f"{self.url}/slack/events", data=body.encode(),
                              headers=signed_headers(body, "application/x-www-form-urlencoded"), timeout=30)
        assert acked.status_code == 200, acked.text
        if acked.text:  # answered in the acknowledgement
            said: str = acked.json()["text"]
            return said
        # Told privately, or a new job's message in the channel.
        found = self.slack.wait_for(lambda api: [a["text"] for n, a in api.responses if n == name]
                                    or [c.args["text"] for c in api.called("chat.postMessage")[posted:]], timeout=60)
        return str(found[0])

    def github_says(self, text: str, person: str) -> str:
        line = f"/wasm {text}"
        event = comment_event(self.github, line, "NONE", person)
        raw = json.dumps(event).encode()
        posted = requests.post(f"{self.url}/github/webhook", data=raw, timeout=30,
                               headers=webhook_headers("issue_comment", raw, delivery=str(uuid.uuid4()),
                                                       secret=WEBHOOK_SECRET))
        assert posted.status_code in (200, 202), posted.text

        def reply(api: GitHubStandIn) -> str | None:
            for comment in api.comments_on(REPO, 2):
                body = comment["body"]
                if comment["id"] > event["comment"]["id"] and f"> {line}\n" in body:  # written after it
                    part = body.split(f"> {line}\n", 1)[1].split("\n> /wasm", 1)[0]
                    return part.strip().removeprefix(f"@{person}").strip()
            return None
        said: str = self.github.wait_for(reply, timeout=60)
        return said


@pytest.fixture
def both(wasmbot: Wasmbot, request: pytest.FixtureRequest) -> Iterator[Both]:
    slack, github = SlackStandIn(), GitHubStandIn()
    slack.start()
    github.start()
    github.add_repo(REPO, FILTER)
    port = free_port()
    wasmbot.env |= {"WASMBOT_PEOPLE": json.dumps(PEOPLE), "WASMBOT_PERMISSIONS": json.dumps(request.param)}
    process = wasmbot.serve(port, {
        "SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_API_URL": slack.api_url,
        "GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET, "GITHUB_TOKEN": TOKEN, "GITHUB_API_URL": github.url,
        "WASMBOT_GITHUB_WRITE_INTERVAL": "0", "WASMBOT_PUBLIC_URL": f"http://127.0.0.1:{port}"})
    try:
        yield Both(f"http://127.0.0.1:{port}", slack, github, wasmbot)
    finally:
        process.terminate()
        process.wait(30)
        slack.stop()
        github.stop()


def job(bot: Wasmbot, requester: str, *, pending: bool = False, origin: str = f"github:{REPO}#2",
        text: str = "/wasm build examples/hello-c") -> str:
    """A job record as the pipeline keeps it: queued, or a deploy to prod waiting for approval."""
    if pending:
        text = "/wasm deploy 127.0.0.1:1/f:v1 --env prod"
    made = Job(requester=requester, origin=origin, command=parse(text), text=text, source_root="/",
               stages=[Stage(name="deploy" if pending else "build")])
    if pending:
        made.state = State.PENDING
        made.approval = {"action": "deploy:prod", "expires_at": str(time.time() + 3600), "image": "127.0.0.1:1/f:v1"}
    bot.store.create(made)
    return made.id


def filled(bot: Wasmbot, text: str) -> str:
    return text.format(alices=job(bot, "slack:W111"), carols=job(bot, "github:carol"),
                       pending=job(bot, "github:carol", pending=True),
                       bobs_pending=job(bot, "slack:W222", pending=True))


@pytest.mark.parametrize("wasmbot", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("both", "column"), [({}, 2), (CONFIGURED, 3)], indirect=["both"],
                         ids=["default-policy", "configured-policy"])
def test_the_same_person_gets_the_same_answer_from_slack_and_a_pull_request(both: Both, column: int) -> None:
    differences = []
    for row in TABLE:
        command, person, expected = row[0], row[1], row[column]
        said = {"slack": both.slack_says(filled(both.bot, command), person),
                "github": both.github_says(filled(both.bot, command), person)}
        answers = {front_end: answer_of(text) for front_end, text in said.items()}
        if set(answers.values()) != {expected}:
            differences.append(f"{command!r} by {person}: expected {expected!r}, got {said}")
    assert not differences, "\n".join(differences)


@pytest.mark.parametrize("wasmbot", ["sqlite"], indirect=True)
def test_the_cli_answers_every_command_outside_the_policy(wasmbot: Wasmbot) -> None:
    wasmbot.env |= {"WASMBOT_PERMISSIONS": json.dumps(CONFIGURED), "LOGNAME": "mallory"}
    for command in ("history prod", "deploy 127.0.0.1:1/f:v1 --env prod --dry-run", "cancel {carols}",
                    "deny {pending}"):
        ran = wasmbot.cli("run", "--detach", "/wasm " + filled(wasmbot, command))
        assert "may not" not in ran.stdout + ran.stderr and "nobody may" not in ran.stdout + ran.stderr, \
            (command, ran.stdout, ran.stderr)


@pytest.mark.parametrize("wasmbot", ["sqlite"], indirect=True)
@pytest.mark.parametrize("both", [{}], indirect=True)
def test_a_pull_request_sees_only_its_own_repositorys_jobs(both: Both) -> None:
    secret = "/wasm deploy registry.internal.corp/team/f:v1 --env prod --config '{\"upstream\":\"vault.corp\"}'"
    from_slack = job(both.bot, "slack:W111", origin="slack:T111:C111", text="/wasm build examples/hello-c")
    both.bot.store.update(from_slack, lambda j: setattr(j, "text", secret))
    from_cli = job(both.bot, "alice", origin="cli")
    other_repo = job(both.bot, "github:carol", origin="github:someone/else#4")
    own = job(both.bot, "github:carol")
    for made, env in ((from_slack, "prod"), (other_repo, "prod"), (own, "staging")):
        both.bot.store.record_deploy({"environment": env, "filter": "f", "digest": "sha256:" + made * 5 + "abcd",
                                      "image": f"image-of-{made}", "job": made, "action": "deploy",
                                      "requester": "x", "at": str(time.time())})

    listed = both.github_says("jobs", "alice")
    assert own in listed and from_slack not in listed and from_cli not in listed and other_repo not in listed
    assert "registry.internal.corp" not in listed and "vault.corp" not in listed
    everything = both.slack_says("jobs", "alice")
    assert all(made in everything for made in (own, from_slack, from_cli, other_repo))

    status = both.github_says("status", "alice")
    assert f"image-of-{own}" in status and f"image-of-{from_slack}" not in status and "other" not in status
    assert "no deploys to prod yet" in both.github_says("history prod", "alice")
    assert f"image-of-{from_slack}" in both.slack_says("history prod", "alice")
    # Acting on another front end's job from a pull request: it is not there.
    assert answer_of(both.github_says(f"cancel {from_slack}", "alice")) == NO_JOB
    assert both.bot.store.get(from_slack).state is State.QUEUED  # type: ignore[union-attr]


def test_the_table_covers_every_command_both_chat_front_ends_take() -> None:
    """So a new shared command needs its row."""
    from workers.commands import COMMANDS

    shared = {spec.name for spec in COMMANDS if {"slack", "github"} <= spec.where}
    assert shared <= {row[0].split()[0] for row in TABLE}, shared - {row[0].split()[0] for row in TABLE}
