"""Keep GitHub in step with each job: one check run per job, one comment per pull request.

One task per job follows its events (bot/follow.py) and, on each change, edits the job's
check run (queued → in_progress → completed, with the stage table, ABI report, module size
and its change against the base branch, and on completion every compiler error and warning
as an annotation, 50 a request), then the pull request's wasmbot comment, which is found by
its marker and edited, never posted twice.  An edit that would change nothing is not sent.

With several server replicas, each job's report is kept by one of them at a time (bot/follow.py);
jobs of one pull request may be followed by different replicas, so the comment is written under
a lease on the pull request in the store: two replicas never both post it.  A check run is
noted as sent before it is created, so a replica that takes over from one killed in between
finds it (by its external id, the job's) instead of making a second.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime
import hashlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

from github.CheckRun import CheckRun
from github.Repository import Repository

from bot.follow import Follower, follow
from bot.github import render
from bot.hublinks import job_url
from workers import diagnostics, lease
from workers.config import Settings
from workers.github_client import client
from workers.jobs import Job, State
from workers.store import JobStore

log = logging.getLogger(__name__)
CHECK_NAME = "wasmbot"
PR_LEASE = "github-pr-comment"  # the store's lease group of pull request comments
PR_LEASE_POLL = 0.05  # seconds between tries for a pull request's comment another replica writes


class Reporter(Follower):
    def __init__(self, settings: Settings, store: JobStore, log_url: Any = None) -> None:
        super().__init__(store, "github-report", threads=32, lease_ttl=settings.lease_ttl)
        self.settings = settings
        self.log_url = log_url or (lambda job: None)
        self.comment_ids: dict[tuple[str, int], int] = {}
        self.sent: dict[str, str] = {}  # job id or PR → digest of what was last sent, to skip repeats
        self.pr_locks: dict[tuple[str, int], threading.Lock] = {}
        self.guard = threading.Lock()

    async def _follow(self, job_id: str) -> None:
        await follow(
            self.store,
            job_id,
            self.threads,
            self.settings.github_update_interval,
            self.fenced(self._update),
            wanted=lambda job: "github" in job.reports,
        )
        self.sent.pop(job_id, None)

    async def _update(self, job: Job) -> None:
        try:
            await asyncio.to_thread(self.publish, job)
        except Exception:  # a lost update must not stop the next one
            log.exception("could not report job %s to GitHub", job.id)

    def in_background(self, work: Callable[[], None], what: str) -> None:
        """Run ``work`` (GitHub writes, which may wait out a rate limit) on the reporter's threads,
        so that the webhook that asked for it is answered at once."""
        def done(future: concurrent.futures.Future[None]) -> None:
            if future.exception() is not None:
                log.error("could not update GitHub for %s", what, exc_info=future.exception())

        self.threads.submit(work).add_done_callback(done)

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

    def diagnostics(self, job: Job) -> list[diagnostics.Diagnostic]:
        """The build's compiler errors and warnings, read from its log."""
        if not any(s.name == "build" and s.state.finished for s in job.stages):
            return []
        lines = (line for event in self.store.events(job.id)
                 if event.kind == "log" and event.stage == "build" for line in event.text.split("\n"))
        return diagnostics.parse(lines)

    def check_run(self, repo: Repository, job: Job) -> None:
        where = job.reports["github"]
        base_ref = where.get("base") or where.get("ref") or "the base branch"
        base = self.base_size(job)
        conclusion = render.conclusion(job)
        found = self.diagnostics(job) if conclusion else []
        output = render.check_output(job, base, base_ref, found, render.abi_report(self.store, job))
        fields: dict[str, Any] = {"output": output}
        if conclusion:
            fields |= {"status": "completed", "conclusion": conclusion}
        else:
            fields["status"] = "in_progress" if job.state is State.RUNNING else "queued"
        url = job_url(self.settings, job.id) or self.log_url(job)  # "Details": the hub's job page
        if url:
            fields["details_url"] = url
        # Annotations add up on GitHub: each is sent once, at the end, 50 a request.
        done = int(where.get("annotations_sent") or 0)
        notes = render.check_annotations(job, found)[done:]
        batches = [notes[i:i + render.MAX_ANNOTATIONS] for i in range(0, len(notes), render.MAX_ANNOTATIONS)]
        first = batches.pop(0) if batches else []
        digest = _digest(fields)
        noted: dict[str, str] = {}
        try:
            if not where.get("check_run"):
                sent = self._sent_check_run(repo, job)
                if sent is None:
                    self._note(job, {"check_run_sent": "1"})  # a replica taking over looks for it
                    run = repo.create_check_run(CHECK_NAME, where["sha"], external_id=job.id,
                                                **_with(fields, first))
                else:
                    run = sent
                    run.edit(**_with(fields, first))
                noted |= {"check_run": str(run.id), "check_url": run.html_url or ""}
            elif first or self.sent.get(job.id) != digest:
                run = repo.get_check_run(int(where["check_run"]))  # lazy: the edit is one PATCH
                run.edit(**_with(fields, first))
            done += len(first)
            for batch in batches:  # the title and summary go with each output
                run.edit(output={"title": output["title"], "summary": output["summary"],
                                 "annotations": batch})
                done += len(batch)
            self.sent[job.id] = digest
        finally:
            if done != int(where.get("annotations_sent") or 0):
                noted["annotations_sent"] = str(done)
            if job.artifacts.get("module_size"):
                noted["size_change"] = render.size_change(job, base, base_ref)  # for the PR comment
            self._note(job, noted)

    def _sent_check_run(self, repo: Repository, job: Job) -> CheckRun | None:
        """The check run a replica sent for ``job`` but died before noting (found by its
        external id), if one was sent."""
        where = job.reports["github"]
        if not where.get("check_run_sent"):
            return None
        runs = repo.get_commit(where["sha"]).get_check_runs(check_name=CHECK_NAME)  # lazy commit
        return next((run for run in runs if run.external_id == job.id), None)

    def _note(self, job: Job, noted: dict[str, str]) -> None:
        """Record in the job what later updates need (the check run, annotations sent)."""
        where = job.reports["github"]
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
        with lock, self._pr_lease(f"{repo_name}#{pr}"):
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
                pages={j.id: url for j in runs if (url := job_url(self.settings, j.id))},
            )
            if self.sent.get(f"{repo_name}#{pr}") == _digest(body):
                return  # nothing new to show
            issue = repo.get_issue(pr)  # lazy: no request
            comment_id = self.comment_ids.get(key)
            if comment_id is None:
                found = next((c for c in issue.get_comments() if render.MARKER in (c.body or "")), None)
                if found is not None:
                    comment_id = self.comment_ids[key] = found.id
            if comment_id is None:
                self.comment_ids[key] = issue.create_comment(body).id
            else:
                issue.get_comment(comment_id).edit(body)
            self.sent[f"{repo_name}#{pr}"] = _digest(body)


    @contextlib.contextmanager
    def _pr_lease(self, pr: str) -> Iterator[None]:
        """The pull request's comment to this replica alone while the block runs (renewed; left
        to lapse if this replica dies in it)."""
        def take() -> bool:
            return self.store.take_lease(PR_LEASE, pr, self.owner, self.lease_ttl)

        def renew() -> None:
            if not take():
                log.warning("the lease of %s's comment lapsed while this replica wrote it", pr)

        waited = threading.Event()
        while not take():
            waited.wait(PR_LEASE_POLL)  # another replica writes it: a comment edit is quick
        try:
            with lease.Renewer(renew, self.lease_ttl / 3):
                yield
        finally:
            self.store.drop_lease(PR_LEASE, pr, self.owner)


def _with(fields: dict[str, Any], annotations: list[dict[str, Any]]) -> dict[str, Any]:
    """A check run edit: ``fields``, a batch of annotations, and when a completed run ended."""
    sent = dict(fields)
    if annotations:
        sent["output"] = fields["output"] | {"annotations": annotations}
    if fields.get("status") == "completed":
        sent["completed_at"] = datetime.datetime.now(datetime.UTC)
    return sent


def _digest(sent: object) -> str:
    return hashlib.sha256(repr(sent).encode()).hexdigest()
