"""``release`` published and ``push``: build a release tag (once, whichever event comes first)
and the default branch, whose module size pull requests compare with."""

from __future__ import annotations

import asyncio
import fnmatch
import logging
from typing import TYPE_CHECKING

from gidgethub import routing, sansio

from bot.github.submit import installation_of, submit_commit
from workers import commands
from workers.github_client import client

if TYPE_CHECKING:
    from bot.github.app import GitHubFrontEnd

log = logging.getLogger(__name__)
router = routing.Router()


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
        installation = await installation_of(fe, event, repo)
        where = {
            "repo": repo,
            "sha": sha,
            "installation": str(installation or ""),
            "ref": ref.removeprefix("refs/heads/"),
        }
        await submit_commit(
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
    installation = await installation_of(fe, event, repo)
    gh = client(fe.settings, installation).get_repo(repo)
    # complete(): a lazy commit's sha is the ref it was asked for, the tag itself.
    sha = await asyncio.to_thread(lambda: gh.get_commit(tag).complete().sha)
    where = {"repo": repo, "sha": sha, "installation": str(installation or ""), "ref": tag, "tag": tag}
    if release:
        where["release"] = release
    command = commands.BuildCommand(source=".", tag=f"{registry}/{repo.lower()}:{tag}", release=True)
    job = await submit_commit(
        fe, command, where, f"github:{event.data['sender']['login']}", f"release {tag}", event.delivery_id
    )
    if fe.announce is not None:
        fe.announce(job.id)
