"""Pull request comment commands, answered after the webhook has been acknowledged.

GitHub gives a webhook 10 s to answer, and wasmbot's writes to GitHub are paced (one at a time
per installation, secondary rate limits waited out), so a comment's commands cannot be
answered inside its delivery.  The webhook only records the comment as *work* in the job store
and answers 200; a task in this process then adds the 👀 reaction, runs each command through
bot/dispatch.py, and posts one reply that quotes each command with its answer.

The work is keyed by the comment's version (its id and ``updated_at``): a redelivery, or the
same comment sent to a second webhook, finds the key taken and is not answered again, and the
key is remembered for as long as GitHub may redeliver.  The answers so far are saved after each
command and the work is marked done after the reply, so unfinished work is taken over where it
stopped (at start-up, and by any server sharing the store once its holder is gone); a command
that was running when its server died is asked again with the same dedupe key, so a job it
made is found, not made twice.

Why the job store and not a Celery task: bot/dispatch.py runs in the bot process (the worker
side may not import bot/), and the store is already what every process shares, with an atomic
"record unless known" in both kinds.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from typing import TYPE_CHECKING, Any

from gidgethub import sansio
from github import GithubException
from github.Issue import Issue
from pydantic import BaseModel, Field

from bot.github import render
from bot.github.comments import run_comment_command
from bot.github.submit import installation_of
from workers import lease
from workers.github_client import client

if TYPE_CHECKING:
    from bot.github.app import GitHubFrontEnd

log = logging.getLogger(__name__)
COMMENT_WORK = "github-comment:"  # the store keys of comment work start so
WORK_TTL = 7 * 24 * 3600.0  # GitHub lets a delivery be redelivered for a few days
ATTEMPTS = 5  # tries in a row before the work waits for a later rescan
LEASE = 300.0  # seconds a server's hold on comment work lasts unless renewed
RESCAN = 60.0  # seconds between looks for work no live server holds


class CommentWork(BaseModel):
    """One comment's commands: its delivery as GitHub sent it, and the answers given so far
    (None: that command had nothing to say)."""

    delivery: str
    payload: dict[str, Any]
    lines: list[str]
    answers: list[str | None] = Field(default_factory=list)
    owner: str | None = None  # the server answering it (workers.lease.owner_id), and until when
    lease_expires: float | None = None

    @property
    def key(self) -> str:
        comment = self.payload["comment"]
        version = comment.get("updated_at") or self.delivery  # an edit is a new version
        return (f"{COMMENT_WORK}{self.payload['repository']['full_name']}#{self.payload['issue']['number']}"
                f":{comment['id']}@{version}")


def reply(login: str, answers: list[tuple[str, str]]) -> str:
    """One comment answering every command: each quoted, then its answer; ``@login`` once.

    Each answer gets an equal share of GitHub's size limit, so a long one cannot push the
    others out of the comment."""
    share = render.MAX_COMMENT // max(1, len(answers)) - len(login) - 16
    parts = [f"> {line}\n\n{'@' + login + ' ' if i == 0 else ''}{render.capped(text, share - len(line))}"
             for i, (line, text) in enumerate(answers)]
    return render.capped("\n\n".join(parts))


class TakenOver(Exception):
    """Another server changed the work since this one last wrote it: it answers it now."""


class CommentAnswerer:
    """Takes comment work from the webhook and does it in the background; takes over work that
    no live server holds, at start and every ``RESCAN`` seconds.

    A server holds the work it does by a lease in the work itself (its ``lease.owner_id`` and
    an expiry it renews with every save), and every save is a compare-and-swap on what it last
    wrote, so two servers sharing a store never answer the same comment.  A server that stops
    gives its leases back; one that dies is known dead at once on its own host, and elsewhere
    once its lease runs out."""

    def __init__(self, fe: GitHubFrontEnd) -> None:
        self.fe = fe
        self.owner = lease.owner_id()
        self.running: dict[str, asyncio.Task[None]] = {}
        self.stored: dict[str, str] = {}  # what this server last wrote, by key
        self.rescanner: asyncio.Task[None] | None = None
        # GitHub writes wait out their pacing here, off the default executor the webhook uses.
        self.threads = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="github-comment")

    async def take(self, delivery: str, payload: dict[str, Any], lines: list[str]) -> bool:
        """Record a comment's commands and start answering them; False: taken before."""
        work = CommentWork(delivery=delivery, payload=payload, lines=lines, owner=self.owner,
                           lease_expires=time.time() + LEASE)
        value = work.model_dump_json()
        if not await asyncio.to_thread(self.fe.store.add_work, work.key, value, WORK_TTL):
            log.info("comment work %s was taken before (delivery %s): not answered again", work.key, delivery)
            return False
        self.stored[work.key] = value
        self._start(work)
        return True

    async def resume(self) -> None:
        """Take over unfinished work now and every ``RESCAN`` seconds (at start-up)."""
        self.rescanner = asyncio.create_task(self._rescan_forever(), name="github-comment-rescan")

    async def rescan(self) -> None:
        """Start the open work that no live server holds."""
        for key, value in (await asyncio.to_thread(self.fe.store.open_work, COMMENT_WORK)).items():
            work = CommentWork.model_validate_json(value)
            if key in self.running or (
                    work.owner != self.owner and lease.alive(work.owner, work.lease_expires, time.time())):
                continue
            self.stored[key] = value
            try:
                await self._save(work)
            except TakenOver:
                continue
            log.info("took over comment work %s from %s", key, work.owner)
            self._start(work)

    async def close(self) -> None:
        """Stop, giving the leases back so that another server takes the work over at once."""
        tasks = [t for t in (self.rescanner, *self.running.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.threads.shutdown(wait=False, cancel_futures=True)

    async def _rescan_forever(self) -> None:
        while True:
            try:
                await self.rescan()
            except Exception:  # the store is down: the next round tries again
                log.exception("could not look for unanswered comments")
            await asyncio.sleep(RESCAN)

    def _start(self, work: CommentWork) -> None:
        task = asyncio.create_task(self._run(work), name=work.key)
        self.running[work.key] = task
        task.add_done_callback(lambda _: self.running.pop(work.key, None))

    async def _save(self, work: CommentWork, done: bool = False) -> None:
        """Write ``work`` (this server's, its lease renewed) over what this server last wrote."""
        work.owner, work.lease_expires = self.owner, time.time() + LEASE
        value = None if done else work.model_dump_json()
        if not await asyncio.to_thread(self.fe.store.swap_work, work.key, self.stored[work.key], value):
            self.stored.pop(work.key, None)
            raise TakenOver(work.key)
        if value is None:
            self.stored.pop(work.key, None)
        else:
            self.stored[work.key] = value

    async def _run(self, work: CommentWork) -> None:
        try:
            for attempt in range(ATTEMPTS):
                try:
                    await self._answer(work)
                    return
                except GithubException as exc:
                    if 400 <= exc.status < 500 and exc.status not in (403, 429):  # not a rate limit
                        log.error("GitHub refused comment work %s (%s): dropped", work.key, exc)
                        await self._save(work, done=True)
                        return
                    log.warning("could not answer comment work %s (attempt %d): %s",
                                work.key, attempt + 1, exc)
                except TakenOver:
                    raise
                except Exception:  # GitHub unreachable past the client's own retries: try again later
                    log.exception("could not answer comment work %s (attempt %d)", work.key, attempt + 1)
                await asyncio.sleep(self.fe.settings.github_backoff * 2**attempt)
            log.error("comment work %s is left for a later rescan", work.key)
        except TakenOver:
            log.warning("comment work %s was taken over by another server", work.key)
        except asyncio.CancelledError:
            old = self.stored.get(work.key)
            work.owner = work.lease_expires = None
            if old is not None:  # give it back: the next server need not wait for the lease
                await asyncio.to_thread(self.fe.store.swap_work, work.key, old, work.model_dump_json())
            raise
        finally:
            self.stored.pop(work.key, None)

    async def _answer(self, work: CommentWork) -> None:
        event = sansio.Event(work.payload, event="issue_comment", delivery_id=work.delivery)
        repo, number = work.payload["repository"]["full_name"], work.payload["issue"]["number"]
        comment = work.payload["comment"]
        installation = await installation_of(self.fe, event, repo)
        loop = asyncio.get_running_loop()
        issue = await loop.run_in_executor(self.threads, _issue, self.fe, installation, repo, number)
        if not work.answers:
            await loop.run_in_executor(self.threads, _react, issue, comment["id"])
        while len(work.answers) < len(work.lines):
            index = len(work.answers)
            work.answers.append(await self._command(work, event, repo, installation, index))
            await self._save(work)
        answered = [(line, a) for line, a in zip(work.lines, work.answers, strict=True) if a]
        if answered:
            body = reply(comment["user"]["login"], answered)
            await loop.run_in_executor(self.threads, issue.create_comment, body)
        await self._save(work, done=True)

    async def _command(self, work: CommentWork, event: sansio.Event, repo: str, installation: int | None,
                       index: int) -> str | None:
        line = work.lines[index]
        try:
            return await run_comment_command(self.fe, event, repo, installation, line,
                                             dedupe=f"{work.key}:{index}")
        except Exception as exc:  # one command's fault must not cost the others their answers
            log.exception("comment command %r of %s failed", line, work.key)
            return f"wasmbot could not do this ({type(exc).__name__}); its log has the details"


def _issue(fe: GitHubFrontEnd, installation: int | None, repo: str, number: int) -> Issue:
    return client(fe.settings, installation).get_repo(repo).get_issue(number)


def _react(issue: Issue, comment_id: int) -> None:
    issue.get_comment(comment_id).create_reaction("eyes")
