"""Follow a job's event stream and call back when it changes: the loop every reporter shares.

Log lines do not count as changes; state changes do.  Callbacks come at most once per
``interval`` seconds, and always once more when the job finishes (or starts waiting for an
approval, which ends this follow: the approval starts a new one).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from workers.jobs import Job
from workers.logsetup import job_context
from workers.store import JobStore

POLL = 5.0  # seconds one wait for new events may block a thread


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


class Follower:
    """A reporter's bookkeeping: one task per followed job, and the threads their waits block.

    Subclasses say what following a job means in ``_follow``.
    """

    def __init__(self, store: JobStore, name: str, threads: int) -> None:
        self.store = store
        self.name = name
        self.tasks: dict[str, asyncio.Task[None]] = {}
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
                self.tasks[job_id] = asyncio.create_task(work(), name=f"{self.name}-{job_id}")

    async def wait(self, job_id: str) -> None:
        task = self.tasks.get(job_id)
        if task is not None:
            await task

    async def close(self) -> None:
        for task in self.tasks.values():
            task.cancel()
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        self.threads.shutdown(wait=False, cancel_futures=True)
