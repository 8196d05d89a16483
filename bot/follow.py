"""Follow a job's event stream and call back when it changes: the loop every reporter shares.

Log lines do not count as changes; state changes do.  Callbacks come at most once per
``interval`` seconds, and always once more when the job finishes (or starts waiting for an
approval, which ends this follow: the approval starts a new one).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Awaitable, Callable

from workers.jobs import Job
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
    while True:
        wait = max(0.0, interval - (time.monotonic() - last)) if pending else POLL
        events = await asyncio.get_running_loop().run_in_executor(threads, store.events, job_id, after, wait)
        if events:
            after = events[-1].seq
            pending = pending or any(e.kind != "log" for e in events)
        job = await asyncio.to_thread(store.get, job_id)
        if job is None or not wanted(job):
            return None
        if pending and (job.state.finished or time.monotonic() - last >= interval):
            await update(job)
            last, pending = time.monotonic(), False
        if (job.state.finished or job.awaiting_approval) and not pending:
            return job
