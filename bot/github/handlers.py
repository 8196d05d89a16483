"""One handler per GitHub event and action, on a gidgethub router (as bedevere does).

Handlers decide and submit; they never build.  Trust follows Prow: a pull request from a
fork, or from an author GitHub does not list as a member (``github_trusted``), is held until
a member comments ``/wasm ok-to-test``, which lets that head commit run (a later push is held
again).  A newer push cancels the runs of older commits of the same pull request.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import logging
import shlex
from typing import TYPE_CHECKING, Any

from gidgethub import routing, sansio

from bot import permissions
from workers import commands
from workers.github_client import client, installation_for
from workers.jobs import Job, State

if TYPE_CHECKING:
    from bot.github.app import GitHubFrontEnd

log = logging.getLogger(__name__)
router = routing.Router()
PR_COMMANDS = (
    "help",
    "retest",
    "ok-to-test",
    "deploy",
    "rollback",
    "undeploy",
    "approve",
    "deny",
    "cancel",
    "jobs",
    "status",
    "history",
)


# -- pull requests ------------------------------------------------------------------------------


@router.register("pull_request", action="opened")
@router.register("pull_request", action="reopened")
@router.register("pull_request", action="synchronize")
async def pull_request(event: sansio.Event, fe: GitHubFrontEnd) -> None:
    pr, repo = event.data["pull_request"], event.data["repository"]["full_name"]
    installation = await _installation(fe, event, repo)
    await asyncio.to_thread(supersede, fe, repo, pr["number"], pr["head"]["sha"])
    untrusted = untrusted_reason(fe, pr)
    if untrusted and not await asyncio.to_thread(ran_before, fe, repo, pr["number"], pr["head"]["sha"]):
        await asyncio.to_thread(hold, fe, repo, pr, installation, untrusted)
        return
    await start_pull_request(
        fe,
        repo,
        pr,
        installation,
        requester=f"github:{event.data['sender']['login']}",
        reason=f"pull request {event.data['action']}",
        dedupe=event.delivery_id,
    )


def untrusted_reason(fe: GitHubFrontEnd, pr: dict[str, Any]) -> str | None:
    """Why a pull request's code may not run without a member's ok, or None if it may."""
    head = (pr.get("head") or {}).get("repo") or {}
    base = pr["base"]["repo"]["full_name"]
    if head.get("full_name") != base:
        return f"it comes from a fork ({head.get('full_name') or 'a deleted repository'})"
    association = pr.get("author_association", "NONE")
    if association not in fe.settings.github_trusted:
        return f"@{pr['user']['login']} is not a member here (author association {association})"
    return None


def ran_before(fe: GitHubFrontEnd, repo: str, number: int, sha: str) -> bool:
    """Whether this head commit was let run already (by a trusted author or an ok-to-test)."""
    return any(job.reports["github"].get("sha") == sha for job in fe.reporter.runs(repo, number))


def hold(fe: GitHubFrontEnd, repo: str, pr: dict[str, Any], installation: int | None, why: str) -> None:
    sha = pr["head"]["sha"]
    gh = client(fe.settings, installation).get_repo(repo)
    fe.reporter.pr_comment(
        gh,
        repo,
        pr["number"],
        held=(
            f"{sha[:7]} is not built: {why}. A member can comment `/wasm ok-to-test` to build this commit."
        ),
    )
    log.info("held %s#%s at %s: %s", repo, pr["number"], sha[:12], why)


def supersede(fe: GitHubFrontEnd, repo: str, number: int, sha: str) -> None:
    from workers.pipeline import cancel

    for job in fe.store.active():
        where = job.reports.get("github", {})
        if (
            where.get("repo") == repo
            and where.get("pr") == str(number)
            and where.get("sha") != sha
            and job.command.get("name") in ("build", "test")
        ):
            with contextlib.suppress(ValueError):  # it finished meanwhile
                cancel(job.id, by=f"wasmbot: superseded by {sha[:7]}")


async def start_pull_request(
    fe: GitHubFrontEnd,
    repo: str,
    pr: dict[str, Any],
    installation: int | None,
    *,
    requester: str,
    reason: str,
    dedupe: str | None,
) -> Job:
    """Build and test (and push, with a default registry) the pull request's head commit."""
    sha, number = pr["head"]["sha"], pr["number"]
    for job in await asyncio.to_thread(fe.store.active):
        where = job.reports.get("github", {})
        if (
            where.get("repo") == repo
            and where.get("pr") == str(number)
            and where.get("sha") == sha
            and job.command.get("name") in ("build", "test")
        ):
            return job  # this commit is being built already
    registry = fe.settings.default_registry
    command: commands.Command = (
        commands.BuildCommand(source=".", tag=f"{registry}/{repo.lower()}:pr-{number}")
        if registry
        else commands.TestCommand(source=".")
    )
    github = {
        "repo": repo,
        "sha": sha,
        "pr": str(number),
        "installation": str(installation or ""),
        "base": pr["base"]["ref"],
        "ref": pr["head"]["ref"],
    }
    return await _submit_commit(fe, command, github, requester, reason, dedupe)


# -- comments -----------------------------------------------------------------------------------


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
    repo = data["repository"]["full_name"]
    installation = await _installation(fe, event, repo)
    gh = client(fe.settings, installation).get_repo(repo)
    issue = await asyncio.to_thread(gh.get_issue, data["issue"]["number"])
    await asyncio.to_thread(lambda: issue.get_comment(comment["id"]).create_reaction("eyes"))
    for line in lines[:5]:  # a comment is not a script
        reply = await run_comment_command(fe, event, repo, installation, line)
        if reply:
            await asyncio.to_thread(issue.create_comment, f"> {line}\n\n@{comment['user']['login']} {reply}")


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
    fe: GitHubFrontEnd, event: sansio.Event, repo: str, installation: int | None, line: str
) -> str | None:
    """Do what one ``/wasm`` line asks; return the reply to post, if any."""
    data = event.data
    login = data["comment"]["user"]["login"]
    who = permissions.Principal(user=f"github:{login}")
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
    if parsed.name not in PR_COMMANDS:
        return f"`/wasm {parsed.name}` is not available in pull request comments; use Slack or the CLI"
    if isinstance(parsed, commands.HelpCommand):
        return "\n".join(
            ["wasmbot commands in pull requests:", ""]
            + [f"- `{commands.SPECS[n].usage}`: {commands.SPECS[n].summary}" for n in PR_COMMANDS]
        )
    if isinstance(parsed, commands.ListCommand):
        from bot.answers import list_text

        return "\n```\n" + await asyncio.to_thread(list_text, fe.settings, parsed) + "\n```"
    if isinstance(parsed, commands.PullRequestCommand):
        return await _retest(fe, data, repo, installation, pr_number, parsed.name)
    if isinstance(parsed, commands.ApproveCommand | commands.CancelCommand):
        return await _decide(fe, parsed, who)
    return await _environment_change(fe, parsed, who, f"github:{repo}#{pr_number}", line)


async def _retest(
    fe: GitHubFrontEnd, data: dict[str, Any], repo: str, installation: int | None, number: int, name: str
) -> str | None:
    association = data["comment"].get("author_association", "NONE")
    member = association in fe.settings.github_trusted
    gh = client(fe.settings, installation).get_repo(repo)
    pr = (await asyncio.to_thread(lambda: gh.get_pull(number))).raw_data
    if name == "ok-to-test" and not member:
        return (
            f"only members ({', '.join(fe.settings.github_trusted)}) may say `/wasm ok-to-test`; "
            f"GitHub lists you as {association}"
        )
    if (
        name == "retest"
        and not member
        and untrusted_reason(fe, pr)
        and not await asyncio.to_thread(ran_before, fe, repo, number, pr["head"]["sha"])
    ):
        return "this commit waits for a member's `/wasm ok-to-test` before it can be built"
    await asyncio.to_thread(supersede, fe, repo, number, pr["head"]["sha"])
    job = await start_pull_request(
        fe,
        repo,
        pr,
        installation,
        requester=f"github:{data['comment']['user']['login']}",
        reason=f"/wasm {name}",
        dedupe=f"{data['comment']['id']}:{name}",
    )
    return None if name == "retest" else f"building {pr['head']['sha'][:7]} (job `{job.id}`)"


async def _decide(
    fe: GitHubFrontEnd, parsed: commands.ApproveCommand | commands.CancelCommand, who: permissions.Principal
) -> str:
    from workers import pipeline

    job = await asyncio.to_thread(fe.store.get, parsed.job)
    if job is None:
        return f"there is no job `{parsed.job}`"
    action = "cancel" if parsed.name == "cancel" else f"approve:{job.command.get('env', '')}"
    reason = await permissions.check(fe.settings.permissions, action, who, requester=job.requester)
    if reason:
        return reason
    try:
        if parsed.name == "approve":
            await asyncio.to_thread(pipeline.approve, parsed.job, who.user)
            return f"approved job `{parsed.job}`: it runs now"
        await asyncio.to_thread(pipeline.cancel, parsed.job, who.user)
        return f"job `{parsed.job}` {'denied' if parsed.name == 'deny' else 'cancelled'}"
    except (KeyError, ValueError) as exc:
        return str(exc)


async def _environment_change(
    fe: GitHubFrontEnd, parsed: commands.Command, who: permissions.Principal, origin: str, line: str
) -> str:
    """deploy, rollback, undeploy: the same jobs as from Slack, for whoever may ``deploy:ENV``."""
    from workers.pipeline import submit_once

    reason = await permissions.check(fe.settings.permissions, f"deploy:{getattr(parsed, 'env', '')}", who)
    if reason:
        return reason
    try:
        job, _ = await asyncio.to_thread(
            submit_once,
            parsed,
            requester=who.user,
            origin=origin,
            text=line,
            source_root="",
        )
    except ValueError as exc:
        return str(exc)
    if job.awaiting_approval:
        return (
            f"job `{job.id}` waits for an approval: someone else allowed to {job.approval['action']} "
            f"comments `/wasm approve {job.id}`\n\n```diff\n{job.approval.get('diff', '')}\n```"
        )
    return f"job `{job.id}` queued: {line}"


# -- re-runs, releases, pushes ------------------------------------------------------------------


@router.register("check_run", action="rerequested")
async def check_run_rerequested(event: sansio.Event, fe: GitHubFrontEnd) -> None:
    job = await asyncio.to_thread(fe.store.get, event.data["check_run"].get("external_id") or "")
    if job is None or "github" not in job.reports:
        return  # not one of wasmbot's check runs
    where = job.reports["github"]
    installation = await _installation(fe, event, where["repo"])
    gh = client(fe.settings, installation).get_repo(where["repo"])
    requester = f"github:{event.data['sender']['login']}"
    if where.get("pr"):
        pr = (await asyncio.to_thread(lambda: gh.get_pull(int(where["pr"])))).raw_data
        if pr["head"]["sha"] != where["sha"]:
            return  # an outdated commit: its run was superseded
        await start_pull_request(
            fe,
            where["repo"],
            pr,
            installation,
            requester=requester,
            reason="check run re-requested",
            dedupe=event.delivery_id,
        )
        return
    await _submit_commit(fe, _same(job), where, requester, "check run re-requested", event.delivery_id)


def _same(job: Job) -> commands.Command:
    command = job.command
    if command.get("name") == "build":
        return commands.BuildCommand.model_validate(command)
    return commands.TestCommand.model_validate(command)


@router.register("release", action="published")
async def release_published(event: sansio.Event, fe: GitHubFrontEnd) -> None:
    release, repo = event.data["release"], event.data["repository"]["full_name"]
    await start_release(fe, event, repo, release["tag_name"], str(release["id"]))


@router.register("push")
async def push(event: sansio.Event, fe: GitHubFrontEnd) -> None:
    data = event.data
    repo, ref, sha = data["repository"]["full_name"], data["ref"], data["after"]
    if data.get("deleted") or set(sha) == {"0"}:
        return
    pattern = fe.settings.github_release_tags
    if (
        ref.startswith("refs/tags/")
        and pattern
        and fnmatch.fnmatchcase(ref.removeprefix("refs/tags/"), pattern)
    ):
        await start_release(fe, event, repo, ref.removeprefix("refs/tags/"), None)
    elif ref == f"refs/heads/{data['repository'].get('default_branch', 'main')}":
        # The default branch is built too: its module size is what pull requests compare with.
        installation = await _installation(fe, event, repo)
        where = {
            "repo": repo,
            "sha": sha,
            "installation": str(installation or ""),
            "ref": ref.removeprefix("refs/heads/"),
        }
        await _submit_commit(
            fe,
            commands.TestCommand(source="."),
            where,
            f"github:{data['sender']['login']}",
            f"push to {where['ref']}",
            event.delivery_id,
        )


async def start_release(
    fe: GitHubFrontEnd, event: sansio.Event, repo: str, tag: str, release: str | None
) -> None:
    registry = fe.settings.default_registry
    if not registry:
        log.error("release %s of %s not built: wasmbot has no default_registry to push it to", tag, repo)
        return
    once = await asyncio.to_thread(
        fe.store.claim_key, f"github-release:{repo}:{tag}", event.delivery_id, 7 * 86400
    )
    if once != event.delivery_id:
        return  # this tag is being released already (a tag push and its release)
    installation = await _installation(fe, event, repo)
    gh = client(fe.settings, installation).get_repo(repo)
    sha = await asyncio.to_thread(lambda: gh.get_commit(tag).sha)
    where = {"repo": repo, "sha": sha, "installation": str(installation or ""), "ref": tag, "tag": tag}
    if release:
        where["release"] = release
    command = commands.BuildCommand(source=".", tag=f"{registry}/{repo.lower()}:{tag}", release=True)
    job = await _submit_commit(
        fe, command, where, f"github:{event.data['sender']['login']}", f"release {tag}", event.delivery_id
    )
    if fe.announce is not None:
        fe.announce(job.id)


async def _submit_commit(
    fe: GitHubFrontEnd,
    command: commands.Command,
    where: dict[str, str],
    requester: str,
    text: str,
    dedupe: str | None,
) -> Job:
    """Queue ``command`` on the commit ``where`` names, and report on it to GitHub."""
    from workers.pipeline import submit_once

    origin = f"github:{where['repo']}" + (f"#{where['pr']}" if where.get("pr") else f"@{where['ref']}")
    job, new = await asyncio.to_thread(
        submit_once,
        command,
        requester=requester,
        origin=origin,
        text=text,
        source_root="",
        dedupe_key=f"github:{dedupe}" if dedupe else None,
        github=where,
    )
    if new:
        fe.reporter.follow(job.id)
    return job


async def _installation(fe: GitHubFrontEnd, event: sansio.Event, repo: str) -> int | None:
    given = (event.data.get("installation") or {}).get("id")
    return await asyncio.to_thread(installation_for, fe.settings, repo, int(given) if given else None)
