"""Stages that talk to GitHub: check out a commit, attach a release's module, create a repository.

They run in workers with a client of their own (workers/github_client.py), minted from the
installation id recorded in the job: no token travels through the broker.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import requests
from github import Github, GithubException, InputGitTreeElement

from workers import repoconfig
from workers.commands import InitCommand, source_of
from workers.config import Settings
from workers.github_client import NotConfigured, client
from workers.stages import StageContext, StageError, build, checkout, keep, load

MAX_ARCHIVE = 200 * 2**20  # bytes of a repository tarball wasmbot will download
TOPICS = ["envoy-wasm", "proxy-wasm"]


def _github(ctx: StageContext) -> Github:
    where = ctx.job.reports.get("github", {})
    installation = int(where["installation"]) if where.get("installation") else None
    try:
        return client(ctx.settings, installation)
    except NotConfigured as exc:
        raise StageError(str(exc)) from None


def _failed(what: str, exc: GithubException) -> StageError:
    message = exc.data.get("message") if isinstance(exc.data, dict) else exc.data
    return StageError(f"{what}: GitHub answered {exc.status} {message or ''}".rstrip())


def fetch(ctx: StageContext) -> dict[str, str]:
    """Download the tarball of ``repo`` at ``sha``, keep it for the later stages (which may run
    on other hosts: workers/stages/checkout.py) and unpack it into this worker's source root."""
    where = ctx.job.reports["github"]
    repo_name, sha = where["repo"], where["sha"]
    try:
        link = _github(ctx).get_repo(repo_name).get_archive_link("tarball", sha)
        with requests.get(link, stream=True, timeout=ctx.settings.registry_timeout) as answer:
            answer.raise_for_status()
            data = io.BytesIO()
            for chunk in answer.iter_content(1 << 16):
                data.write(chunk)
                if data.tell() > MAX_ARCHIVE:
                    raise StageError(f"{repo_name}@{sha[:12]} is larger than {MAX_ARCHIVE >> 20} MiB")
    except GithubException as exc:
        raise _failed(f"cannot download {repo_name}@{sha[:12]}", exc) from None
    except requests.RequestException as exc:
        raise StageError(f"cannot download {repo_name}@{sha[:12]}: {exc}") from None
    archive = data.getvalue()
    count = checkout.unpack(archive, Path(ctx.job.source_root))
    ctx.log(f"checked out {repo_name}@{sha} ({count} files)")
    return {"commit": sha, "checkout": keep(ctx, checkout.ARCHIVE, archive, large=True)} | _language(ctx)


def _language(ctx: StageContext) -> dict[str, str]:
    """The checkout's build language, which routes the build to its toolchain's workers
    (workers/routing.py); nothing when it cannot be told: the build stage then says why."""
    source = source_of(ctx.job.command)
    if source is None:
        return {}
    try:
        path = build.locate(ctx.job.source_root, source)
        return {"lang": build.language(ctx.job.command, path, repoconfig.load(path))}
    except (StageError, repoconfig.RepoConfigError):
        return {}


def attach(ctx: StageContext) -> dict[str, str]:
    """Upload the tested module to the GitHub release the job was started by."""
    where = ctx.job.reports["github"]
    module = load(ctx, ctx.job.stage("build").result["module"])
    name = f"{where['repo'].split('/')[1]}-{where['tag']}.wasm"
    try:
        release = _github(ctx).get_repo(where["repo"]).get_release(int(where["release"]))
        existing = next((a for a in release.get_assets() if a.name == name), None)
        if existing is not None:  # a retried job: replace what an earlier attempt uploaded
            existing.delete_asset()
        asset = release.upload_asset_from_memory(io.BytesIO(module), len(module), name=name,
                                                 content_type="application/wasm")
    except GithubException as exc:
        raise _failed(f"cannot attach {name} to release {where['tag']}", exc) from None
    ctx.log(f"attached {name} ({asset.size} bytes) to release {where['tag']}")
    return {"release_asset": asset.browser_download_url}


def create_repository(ctx: StageContext) -> dict[str, str]:
    """``/wasm init``: a new repository whose first commit is the scaffolded filter."""
    owner = ctx.settings.github_repo_owner
    assert owner is not None
    command = ctx.job.command
    if not isinstance(command, InitCommand):
        raise StageError(f"a {command.name} job creates no repository")
    name, source = command.filter, Path(ctx.job.source_root) / command.source
    gh = _github(ctx)
    try:
        repo = _new_repository(ctx.settings, gh, owner, name, command.lang)
        tree = [
            InputGitTreeElement(
                path,
                "100755" if (source / path).stat().st_mode & 0o111 else "100644",
                "blob",
                sha=repo.create_git_blob(_b64(source / path), "base64").sha,
            )
            for path in _files(source)
        ]
        commit = repo.create_git_commit(f"{name}: scaffolded by wasmbot", repo.create_git_tree(tree), [])
        # The repository was created with a README commit (the Git Data API refuses empty
        # repositories with 409); the scaffold replaces it as the branch's first commit.
        ref = repo.get_git_ref(f"heads/{repo.default_branch}")
        ref.object  # noqa: B018 - a lazy ref's URL is the read endpoint (git/ref/…); reading it gives
        # GitHub's own URL (git/refs/…), which is the one that updates it
        ref.edit(commit.sha, force=True)
        repo.replace_topics([*TOPICS, command.lang])
    except GithubException as exc:
        raise _failed(f"cannot create {owner}/{name}", exc) from None
    ctx.log(f"created {repo.html_url} with the scaffold as its first commit {commit.sha[:12]}")
    return {"repository_url": repo.html_url, "repository_commit": commit.sha}


def _new_repository(settings: Settings, gh: Github, owner: str, name: str, lang: str):  # type: ignore[no-untyped-def]
    try:
        gh.get_repo(f"{owner}/{name}").complete()  # the client is lazy: ask GitHub
    except GithubException as exc:
        if exc.status != 404:
            raise
    else:
        raise StageError(f"{owner}/{name} already exists on GitHub: choose another NAME, or delete it first")
    description = f"Envoy proxy-wasm filter ({lang}), created by wasmbot"
    if gh.get_user().login.lower() == owner.lower():
        return gh.get_user().create_repo(name, description=description, auto_init=True)
    return gh.get_organization(owner).create_repo(name, description=description, auto_init=True)


def _files(source: Path) -> list[str]:
    return sorted(
        str(p.relative_to(source))
        for p in source.rglob("*")
        if p.is_file() and ".git" not in p.relative_to(source).parts
    )


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()
