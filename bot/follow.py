"""Follow a job's event stream and call back when it changes: the loop every reporter shares.

Log lines do not count as changes; state changes do.  Callbacks come at most once per
``interval`` seconds, and always once more when the job finishes (or starts waiting for an
approval, which ends this follow: the approval starts a new one).

Several ``wasmbot serve`` replicas may share one store: a job's report is then kept by one of
them, the holder of its lease in the store (group: the reporter's name, item: the job).  The
holder renews it every third of ``lease_ttl``; each replica takes over the reports whose lease
lapsed (their replica died) and continues editing the same message, whose ids are in the job.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from workers import lease
from workers.jobs import Job
from workers.logsetup import job_context
from workers.store import JobStore

POLL = 5.0  # seconds one wait for new events may block a thread
log = logging.getLogger(__name__)


async def follow(
    store: JobStore,
    job_id: str,
    threads: concurrent.futures.Executor,
    interval: float,
    update: Callable[[Job], Awaitable[None]],
    wanted: Callable[[Job], bool] = lambda job: True,
) -> Job | None:
    """Call ``update`` as ``job_id`` changes; return the job as last seen (None: gone or unwanted).

    ``threads`` runs the blocking waits, off the default executor the request handlers use.
    """
    after, last, pending = 0, 0.0, True
    loop = asyncio.get_running_loop()
    while True:
        wait = max(0.0, interval - (time.monotonic() - last)) if pending else POLL
        events = await loop.run_in_executor(threads, store.events, job_id, after, wait)
        if events:
            after = events[-1].seq
            pending = pending or any(e.kind != "log" for e in events)
        job = await asyncio.to_thread(store.get, job_id)
        if job is None or not wanted(job):
            return None
        if pending and (job.state.finished or time.monotonic() - last >= interval):
            await update(job)
            last, pending = time.monotonic(), False
        # The record may be newer than the events read (a long log takes a while to read):
        # end only once the events that finished it have been seen.
        if ((job.state.finished or job.awaiting_approval) and not pending
                and not await loop.run_in_executor(threads, store.events, job_id, after)):
            return job


class LeaseLost(Exception):
    """Another replica took over this job's report: this one must not write it any more."""


class Follower:
    """A reporter's bookkeeping: one task per followed job, each under the job's lease, and the
    threads their waits block.

    Subclasses say what following a job means in ``_follow``.
    """

    def __init__(self, store: JobStore, name: str, threads: int, lease_ttl: float) -> None:
        self.store = store
        self.name = name
        self.lease_ttl = lease_ttl
        self.owner = f"{lease.owner_id()}:{uuid.uuid4().hex[:8]}"
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.adopting: asyncio.Task[None] | None = None
        # Off the default executor, which the request handlers use.
        self.threads = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix=name)

    async def _follow(self, job_id: str) -> None:
        raise NotImplementedError

    def follow(self, job_id: str) -> None:
        self._start(job_id, lambda: self._follow(job_id))

    def _start(self, job_id: str, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        task = self.tasks.get(job_id)
        if task is None or task.done():
            with job_context(job_id):  # the task copies the context: its log lines name the job
                self.tasks[job_id] = asyncio.create_task(self._leased(job_id, work),
                                                         name=f"{self.name}-{job_id}")

    async def _leased(self, job_id: str, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """``work`` while this replica holds the job's lease; another replica's is left to it.

        Done, the lease is dropped.  Cancelled (the replica stops) or failed, it is left to
        lapse, so that a replica still running takes the report over."""
        def take() -> bool:
            return self.store.take_lease(self.name, job_id, self.owner, self.lease_ttl)

        if not await asyncio.to_thread(take):
            return
        running = asyncio.create_task(work())
        renewing = asyncio.create_task(self._renew(job_id, take, running))
        try:
            await asyncio.wait({running})
        finally:  # cancelled too when this replica stops
            renewing.cancel()
            running.cancel()
        if running.cancelled():  # by _renew: the lease is another replica's now
            return
        if isinstance(running.exception(), LeaseLost):
            log.warning("the %s lease of job %s was taken over; leaving it", self.name, job_id)
            return
        if running.exception() is not None:
            log.error("%s of job %s failed; left to be taken over", self.name, job_id,
                      exc_info=running.exception())
            return
        await asyncio.to_thread(self.store.drop_lease, self.name, job_id, self.owner)

    async def _renew(self, job_id: str, take: Callable[[], bool], running: asyncio.Task[None]) -> None:
        """Renew the lease every third of its time; lost (this replica stalled past it), stop."""
        while True:
            await asyncio.sleep(self.lease_ttl / 3)
            try:
                held = await asyncio.to_thread(take)
            except Exception as exc:  # the store does not answer: the lease still runs, try again
                log.warning("could not renew the %s lease of job %s (%s: %s)", self.name, job_id,
                            type(exc).__name__, exc)
                continue
            if not held:
                log.warning("the %s lease of job %s was taken over; leaving it", self.name, job_id)
                running.cancel()
                return

    def fenced(self, update: Callable[[Job], Awaitable[None]]) -> Callable[[Job], Awaitable[None]]:
        """``update``, made only while this replica still holds the job's lease (renewing it): a
        replica that stalled past its lease must not overwrite what the new holder sent."""
        async def run(job: Job) -> None:
            if not await asyncio.to_thread(self.store.take_lease, self.name, job.id, self.owner,
                                           self.lease_ttl):
                raise LeaseLost(job.id)
            await update(job)

        return run

    def adopt(self) -> None:
        """Take over, now and every third of ``lease_ttl``, the reports whose replica died (or
        that this one left when it last stopped)."""
        if self.adopting is None or self.adopting.done():
            self.adopting = asyncio.create_task(self._adopt_forever(), name=f"{self.name}-adopt")

    async def _adopt_forever(self) -> None:
        while True:
            try:
                for job_id in await asyncio.to_thread(self.store.lapsed_leases, self.name):
                    if job_id not in self.tasks or self.tasks[job_id].done():
                        log.info("taking over the %s of job %s: its replica stopped renewing it",
                                 self.name, job_id)
                    self.follow(job_id)
            except Exception as exc:
                log.warning("could not look for %s reports to take over (%s: %s)", self.name,
                            type(exc).__name__, exc)
            await asyncio.sleep(self.lease_ttl / 3)

    async def wait(self, job_id: str) -> None:
        task = self.tasks.get(job_id)
        if task is not None:
            await task

    async def close(self) -> None:
        tasks = [*self.tasks.values(), *([self.adopting] if self.adopting else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.threads.shutdown(wait=False, cancel_futures=True)  # their leases lapse: taken over
