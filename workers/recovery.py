"""Finding jobs whose worker was lost, and queueing them again.

Every worker runs this in a background thread: it announces itself in the job store with the
toolchains it serves (so the CLI knows whether a worker is up, and submission whether a build
can run: workers/routing.py) and re-queues stages whose lease lapsed, or that were queued
long ago and never started.  Celery's own redelivery may also bring such a message back;
stages are idempotent, so whichever arrives first does the work.  Every ``gc_interval`` it
also runs retention (workers/retention.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection

from celery.signals import worker_ready, worker_shutdown

from workers import lease, retention, routing, sweep
from workers.config import Settings
from workers.jobs import Job, State
from workers.store import JobStore

log = logging.getLogger(__name__)


def stalled_stage(job: Job, now: float, requeue_after: float) -> str | None:
    """The stage of ``job`` to queue again, if its work has been lost."""
    stage = job.next_stage()
    if stage is None or job.state.finished:
        return None
    if stage.state is State.RUNNING and not lease.alive(stage.lease_owner, stage.lease_expires, now):
        return stage.name
    if stage.state is State.QUEUED and now - (stage.queued_at or 0) > requeue_after:
        return stage.name
    return None


def recover(store: JobStore, settings: Settings, enqueue: Callable[[str, str], None]) -> list[str]:
    """Queue again every stalled stage; return the job ids recovered."""
    recovered = []
    now = time.time()
    for job in store.active():
        name = stalled_stage(job, now, settings.requeue_after)
        if name is None:
            continue
        previous = job.stage(name).lease_owner
        store.log(job.id, name, f"worker {previous or '(none)'} lost this stage; queued again")
        log.warning("job %s: stage %s stalled (owner %s); queued again", job.id, name, previous)
        enqueue(job.id, name)
        recovered.append(job.id)
    return recovered


class Maintenance(threading.Thread):
    """Heartbeat and recovery loop of one worker."""

    def __init__(self, name: str, settings: Settings, store: JobStore,
                 enqueue: Callable[[str, str], None], toolchains: Collection[str] = ()) -> None:
        super().__init__(name="wasmbot-maintenance", daemon=True)
        self.worker_name, self.settings, self.store, self.enqueue = name, settings, store, enqueue
        self.toolchains = toolchains
        self.stopping = threading.Event()
        self.gc: threading.Thread | None = None

    def collect(self) -> None:
        try:
            retention.periodic(self.settings, self.store, self.worker_name)
        except Exception:
            log.exception("retention pass failed")

    def run(self) -> None:
        interval = min(self.settings.lease_ttl / 3, self.settings.gc_interval)
        next_gc = 0.0  # a first retention pass at start; the gc leases keep restarts from repeating it
        while True:
            try:
                self.store.heartbeat(self.worker_name, self.settings.lease_ttl, self.toolchains)
                recover(self.store, self.settings, self.enqueue)
                if time.monotonic() >= next_gc and (self.gc is None or not self.gc.is_alive()):
                    # In its own thread: measuring a large data directory must not delay heartbeats.
                    next_gc = time.monotonic() + self.settings.gc_interval
                    self.gc = threading.Thread(target=self.collect, name="wasmbot-gc", daemon=True)
                    self.gc.start()
            except Exception:  # keep the loop alive through a store outage
                log.exception("maintenance pass failed")
            if self.stopping.wait(interval):
                # A worker that stops says so, so that `wasmbot run` does not wait for it.
                self.store.retire(self.worker_name)
                return


_maintenance: Maintenance | None = None


@worker_ready.connect
def _start_maintenance(sender: object = None, **_: object) -> None:
    global _maintenance
    from workers import pipeline  # imported late: the pipeline module registers the tasks
    from workers.celery_app import settings

    try:  # before this worker's first heartbeat: what a killed predecessor left goes first
        sweep.sweep(settings(), pipeline.store())
    except Exception:
        log.exception("startup sweep failed")
    # What it serves is read from the queues it consumes, however it was started.
    consumed = [q.name for q in getattr(getattr(sender, "task_consumer", None), "queues", [])]
    _maintenance = Maintenance(lease.owner_id(), settings(), pipeline.store(), pipeline.enqueue,
                               routing.served(consumed))
    _maintenance.start()


@worker_shutdown.connect
def _stop_maintenance(sender: object = None, **_: object) -> None:
    if _maintenance is not None:
        _maintenance.stopping.set()
        _maintenance.join(timeout=10)
