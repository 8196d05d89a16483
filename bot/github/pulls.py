"""``pull_request``: build and test each new head commit, holding untrusted ones.

Trust follows Prow: a pull request from a fork, or from an author GitHub does not list as a
member (``github_trusted``), is held until a member comments ``/wasm ok-to-test``, which lets
that head commit run (a later push is held again).  A newer push cancels the runs of older
commits of the same pull request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from gidgethub import routing, sansio

from bot.github.submit import installation_of, submit_commit
from workers import commands
from workers.github_client import client
from workers.jobs import Job

if TYPE_CHECKING:
    from bot.github.app import GitHubFrontEnd

log = logging.getLogger(__name__)
router = routing.Router()


@router.register("pull_request", action="opened")
@router.register("pull_request", action="reopened")
@router.register("pull_request", action="synchronize")
async def pull_request(event: sansio.Event, fe: GitHubFrontEnd) -> None:
    pr, repo = event.data["pull_request"], event.data["repository"]["full_name"]
    installation = await installation_of(fe, event, repo)
    await asyncio.to_thread(supersede, fe, repo, pr["number"], pr["head"]["sha"])
    untrusted = untrusted_reason(fe, pr)
    if untrusted and not await asyncio.to_thread(ran_before, fe, repo, pr["number"], pr["head"]["sha"]):
        fe.reporter.in_background(lambda: hold(fe, repo, pr, installation, untrusted),
                                  f"{repo}#{pr['number']}")
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
            and job.command.name in ("build", "test")
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
            and job.command.name in ("build", "test")
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
    return await submit_commit(fe, command, github, requester, reason, dedupe)
