"""Keep GitHub in step with each job: one check run per job, one comment per pull request.

One task per job follows its events (bot/follow.py) and, on each change, edits the job's
check run (queued → in_progress → completed, with the stage table, ABI report, module size
and its change against the base branch, and compiler errors as annotations on completion),
then the pull request's wasmbot comment, which is found by its marker and edited, never
posted twice.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import threading
from typing import Any

from github.Repository import Repository

from bot.follow import Follower, follow
from bot.github import render
from workers.config import Settings
from workers.github_client import client
from workers.jobs import Job, State
from workers.store import JobStore

log = logging.getLogger(__name__)
CHECK_NAME = "wasmbot"


class Reporter(Follower):
    def __init__(self, settings: Settings, store: JobStore, log_url: Any = None) -> None:
        super().__init__(store, "github-report", threads=32)
        self.settings = settings
        self.log_url = log_url or (lambda job: None)
        self.comment_ids: dict[tuple[str, int], int] = {}
        self.pr_locks: dict[tuple[str, int], threading.Lock] = {}
        self.guard = threading.Lock()

    async def _follow(self, job_id: str) -> None:
        await follow(
            self.store,
            job_id,
            self.threads,
            self.settings.github_update_interval,
            self._update,
            wanted=lambda job: "github" in job.reports,
        )

    async def _update(self, job: Job) -> None:
        try:
            await asyncio.to_thread(self.publish, job)
        except Exception:  # a lost update must not stop the next one
            log.exception("could not report job %s to GitHub", job.id)

    def repo(self, job: Job) -> Repository:
        where = job.reports["github"]
        installation = int(where["installation"]) if where.get("installation") else None
        return client(self.settings, installation).get_repo(where["repo"])

    def publish(self, job: Job) -> None:
        repo = self.repo(job)
        self.check_run(repo, job)
        if job.reports["github"].get("pr"):
            self.pr_comment(repo, job.reports["github"]["repo"], int(job.reports["github"]["pr"]))

    # -- the check run --------------------------------------------------------------------------

    def base_size(self, job: Job) -> int | None:
        """The module size of the newest passed build of the base branch (or of the same ref)."""
        where = job.reports["github"]
        base = where.get("base") or where.get("ref")
        for other in self.store.recent(500):
            theirs = other.reports.get("github", {})
            if (
                other.id != job.id
                and other.state is State.SUCCEEDED
                and theirs.get("repo") == where["repo"]
                and theirs.get("ref") == base
                and not theirs.get("pr")
                and other.artifacts.get("module_size")
            ):
                return int(other.artifacts["module_size"])
        return None

    def check_run(self, repo: Repository, job: Job) -> None:
        where = job.reports["github"]
        base_ref = where.get("base") or where.get("ref") or "the base branch"
        base = self.base_size(job)
        output = render.check_output(job, base, base_ref)
        conclusion = render.conclusion(job)
        fields: dict[str, Any] = {"output": output}
        if conclusion:
            fields |= {"status": "completed", "conclusion": conclusion,
                       "completed_at": datetime.datetime.now(datetime.UTC)}
        else:
            fields["status"] = "in_progress" if job.state is State.RUNNING else "queued"
            output.pop("annotations", None)  # annotations add up on GitHub: send them once, at the end
        url = self.log_url(job)
        if url:
            fields["details_url"] = url
        noted: dict[str, str] = {}
        if where.get("check_run"):
            repo.get_check_run(int(where["check_run"])).edit(**fields)
        else:
            run = repo.create_check_run(CHECK_NAME, where["sha"], external_id=job.id, **fields)
            noted |= {"check_run": str(run.id), "check_url": run.html_url or ""}
        if job.artifacts.get("module_size"):
            noted["size_change"] = render.size_change(job, base, base_ref)  # for the PR comment
        if any(where.get(k) != v for k, v in noted.items()):
            def record(stored: Job) -> None:
                stored.reports["github"] = stored.reports["github"] | noted

            self.store.update(job.id, record)
            where |= noted

    # -- the pull request comment ---------------------------------------------------------------

    def runs(self, repo_name: str, pr: int) -> list[Job]:
        return [
            job
            for job in self.store.recent(500)
            if job.reports.get("github", {}).get("repo") == repo_name
            and job.reports["github"].get("pr") == str(pr)
        ]

    def pr_comment(self, repo: Repository, repo_name: str, pr: int, held: str | None = None) -> None:
        """Create or edit the pull request's one wasmbot comment."""
        key = (repo_name, pr)
        with self.guard:
            lock = self.pr_locks.setdefault(key, threading.Lock())
        with lock:
            runs = self.runs(repo_name, pr)
            latest_sha = runs[0].reports["github"].get("sha") if runs else None
            body = render.pr_comment(
                runs,
                held,
                {
                    j.id: j.reports["github"].get("check_url", "")
                    for j in runs
                    if j.reports["github"].get("sha") == latest_sha
                },
            )
            issue = repo.get_issue(pr)
            comment_id = self.comment_ids.get(key)
            if comment_id is None:
                found = next((c for c in issue.get_comments() if render.MARKER in (c.body or "")), None)
                if found is not None:
                    comment_id = self.comment_ids[key] = found.id
            if comment_id is None:
                self.comment_ids[key] = issue.create_comment(body).id
            else:
                issue.get_comment(comment_id).edit(body)
