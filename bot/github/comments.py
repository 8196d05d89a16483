"""``issue_comment`` on a pull request: each ``/wasm`` line is a command for bot/dispatch.py.

The comment is read as Prow reads one (lines outside code blocks and quotes, at most five, on
an edit only the lines it added).  The webhook handler only reads it and hands the lines to
bot/github/answering.py, which answers them after the webhook has been acknowledged; this
module translates a comment line to a request and the reply to text.  Two translations are
GitHub's own: a bare ``/wasm build`` or ``/wasm test`` is a retest of the pull request, and
``/wasm deploy ENV`` deploys the pull request's newest pushed image.
"""

from __future__ import annotations

import asyncio
import shlex
from typing import TYPE_CHECKING, Any

from gidgethub import routing, sansio

from bot.dispatch import Reply, Request, Status, dispatch
from bot.github.identity import commenter
from bot.github.payload import plain
from bot.github.pulls import ran_before, start_pull_request, supersede, untrusted_reason
from workers import commands
from workers.github_client import client
from workers.jobs import State

if TYPE_CHECKING:
    from bot.github.app import GitHubFrontEnd

router = routing.Router()
MAX_COMMANDS = 5  # a comment is not a script


@router.register("issue_comment", action="created")
@router.register("issue_comment", action="edited")
async def issue_comment(event: sansio.Event, fe: GitHubFrontEnd) -> None:
    data = event.data
    comment = data["comment"]
    if (
        "pull_request" not in data["issue"]
        or comment["user"].get("type") == "Bot"
        or data["sender"].get("type") == "Bot"
    ):
        return
    lines = command_lines(comment.get("body") or "")
    if data["action"] == "edited":  # act only on commands the edit added
        before = command_lines(((data.get("changes") or {}).get("body") or {}).get("from") or "")
        lines = [line for line in lines if line not in before]
    if not lines:
        return
    _check_shape(data)
    await fe.comments.take(event.delivery_id, plain(data), lines[:MAX_COMMANDS])


def _check_shape(data: dict[str, Any]) -> None:
    """What answering reads later is there now, so a malformed delivery is refused (422) and
    not taken on as work that can never be done."""
    fields = (data["comment"]["id"], data["issue"]["number"], data["comment"]["user"]["login"],
              data["repository"]["full_name"])
    if not all(isinstance(value, kind) for value, kind in zip(fields, (int, int, str, str), strict=True)):
        raise TypeError("comment.id, issue.number, comment.user.login or repository.full_name "
                        "has the wrong type")


def command_lines(body: str) -> list[str]:
    """``/wasm`` lines outside code blocks and quotes (as Prow reads comments)."""
    found, fenced = [], False
    for raw in body.splitlines():
        line = raw.strip()
        if line.startswith("```") or line.startswith("~~~"):
            fenced = not fenced
            continue
        if not fenced and line.startswith("/wasm") and (len(line) == 5 or line[5].isspace()):
            found.append(line)
    return found


async def run_comment_command(
    fe: GitHubFrontEnd, event: sansio.Event, repo: str, installation: int | None, line: str, dedupe: str
) -> str | None:
    """Do what one ``/wasm`` line asks; return the reply to post, if any.  ``dedupe`` names this
    line of this comment: asked again (a resumed answer), a job it made is found, not made twice."""
    data = event.data
    pr_number = data["issue"]["number"]
    words = line.split()[1:]
    if words in (["build"], ["test"]):
        words = ["retest"]
    if len(words) == 2 and words[0] == "deploy":  # /wasm deploy ENV: this pull request's newest image
        pushed = next(
            (
                j
                for j in fe.reporter.runs(repo, pr_number)
                if j.state is State.SUCCEEDED and j.artifacts.get("digest")
            ),
            None,
        )
        if pushed is None:
            return (
                "this pull request has no pushed image to deploy yet: pull requests are pushed when "
                "wasmbot has a default_registry"
            )
        words = ["deploy", f"{pushed.artifacts['image']}@{pushed.artifacts['digest']}", "--env", words[1]]
    try:
        parsed = commands.parse(shlex.join(words))
    except commands.CommandError as exc:
        return f"{exc.message}\nusage: `{exc.usage}`"

    async def rerun(name: str) -> Reply:
        return await _retest(fe, data, repo, installation, pr_number, name, dedupe)

    request = Request(parsed, line, commenter(data["comment"]), origin=f"github:{repo}#{pr_number}",
                      dedupe_key=dedupe, rerun=rerun)
    return rendered(await dispatch(fe.settings, request))


def rendered(reply: Reply) -> str | None:
    """A reply as a comment shows it (None: nothing to say), a list or a diff as a code block."""
    text = reply.text
    if reply.detail:
        text += ("\n\n" if text else "\n") + f"```{reply.syntax}\n{reply.detail}\n```"
    return text or None


async def _retest(
    fe: GitHubFrontEnd, data: dict[str, Any], repo: str, installation: int | None, number: int, name: str,
    dedupe: str,
) -> Reply:
    """``retest`` and ``ok-to-test`` (who may say it is the policy's ``ok-to-test`` rule, checked in
    dispatch): an untrusted head commit runs once someone allowed has said ok-to-test."""
    association = data["comment"].get("author_association", "NONE")
    member = association in fe.settings.github_trusted
    gh = client(fe.settings, installation).get_repo(repo)
    pr = await asyncio.to_thread(lambda: gh.get_pull(number).raw_data)  # lazy: the read happens here
    if (
        name == "retest"
        and not member
        and untrusted_reason(fe, pr)
        and not await asyncio.to_thread(ran_before, fe, repo, number, pr["head"]["sha"])
    ):
        return Reply("this commit waits for a member's `/wasm ok-to-test` before it can be built",
                     Status.REFUSED)
    await asyncio.to_thread(supersede, fe, repo, number, pr["head"]["sha"])
    job = await start_pull_request(
        fe,
        repo,
        pr,
        installation,
        requester=f"github:{data['comment']['user']['login']}",
        reason=f"/wasm {name}",
        dedupe=dedupe,
    )
    return Reply("" if name == "retest" else f"building {pr['head']['sha'][:7]} (job `{job.id}`)", job=job)
