"""wasmbot's Prometheus metrics: their names, what changes them, and the collector a scrape reads.

The figures live in the job store, not in a process: workers and every server replica add to
the same counters, so a scrape of any replica shows the whole deployment.  Job, stage and build
cache figures follow from a job's state change and are added inside the store's atomic
``update`` that makes the change (as the job's events are): a redelivered stage that changes
nothing counts nothing, and a job is counted once each time it reaches a final state.

Each counter is kept under a series key, ``json.dumps([NAME, *LABEL_VALUES])``.  Histograms keep
one counter per bucket (not cumulative: one increment per observation) and one for the sum; the
collector adds the buckets up.  Changing ``STAGE_BUCKETS`` leaves counts under the old bounds
unread, so change it only with a fresh store.

prometheus_client is imported only by the scrape side: workers never load it.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

from workers.jobs import Job, State

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import CollectorRegistry

log = logging.getLogger(__name__)

JOBS = "wasmbot_jobs_total"
STAGE_SECONDS = "wasmbot_stage_duration_seconds"
QUEUE_DEPTH = "wasmbot_queue_depth"
DELIVERIES = "wasmbot_webhook_deliveries_total"
CACHE_HITS = "wasmbot_build_cache_hits_total"
CACHE_MISSES = "wasmbot_build_cache_misses_total"
# Stage run times: a cached build or a push takes well under a second, a cold Rust build minutes.
STAGE_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
SOURCES = ("slack", "github")
OUTCOMES = ("accepted", "duplicate", "bad_signature", "replayed", "invalid")


class Source(Protocol):
    """What the collector reads: the store's counters and its active jobs."""

    def counts(self) -> dict[str, float]: ...
    def active(self) -> list[Job]: ...


class Counter(Protocol):
    def add_counts(self, counts: dict[str, float]) -> None: ...
    async def add_counts_async(self, counts: dict[str, float]) -> None: ...


def series(name: str, *labels: str) -> str:
    return json.dumps([name, *labels])


def _bucket(seconds: float) -> str:
    return next((str(bound) for bound in STAGE_BUCKETS if seconds <= bound), "+Inf")


def transition_counts(before: Job, after: Job) -> dict[str, float]:
    """What the change from ``before`` to ``after`` adds: a finished job, finished stage runs."""
    counts: dict[str, float] = defaultdict(float)
    if not before.state.finished and after.state.finished:
        counts[series(JOBS, after.command.name, after.state.value)] += 1
    old = {s.name: s for s in before.stages}
    for stage in after.stages:
        prev = old.get(stage.name)
        if prev is None or prev.state is not State.RUNNING or not stage.state.finished:
            continue
        if stage.started_at is None or stage.finished_at is None:
            continue
        took = max(0.0, stage.finished_at - stage.started_at)
        counts[series(STAGE_SECONDS + "_bucket", stage.name, _bucket(took))] += 1
        counts[series(STAGE_SECONDS + "_sum", stage.name)] += took
        cache = stage.result.get("build_cache")
        if stage.name == "build" and stage.state is State.SUCCEEDED and cache in ("hit", "miss"):
            counts[series(CACHE_HITS if cache == "hit" else CACHE_MISSES)] += 1
    return dict(counts)


def count_delivery(store: Counter, source: str, outcome: str) -> None:
    """Count one webhook delivery.  Best effort: a delivery is never refused over its count."""
    assert source in SOURCES and outcome in OUTCOMES, (source, outcome)
    try:
        store.add_counts({series(DELIVERIES, source, outcome): 1})
    except Exception as exc:  # the store is down: the request itself says so, if it needs it
        log.warning("could not count a %s delivery (%s): %s", source, outcome, exc)


async def count_delivery_async(store: Counter, source: str, outcome: str) -> None:
    """``count_delivery`` on the event loop (the web front ends count every request)."""
    assert source in SOURCES and outcome in OUTCOMES, (source, outcome)
    try:
        await store.add_counts_async({series(DELIVERIES, source, outcome): 1})
    except Exception as exc:  # the store is down: the request itself says so, if it needs it
        log.warning("could not count a %s delivery (%s): %s", source, outcome, exc)


def queue_depth(jobs: list[Job]) -> int:
    return sum(1 for job in jobs for stage in job.stages if stage.state is State.QUEUED)


def families(source: Source) -> list[Metric]:
    """The wasmbot_* metric families, read from the store now."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

    stored: dict[tuple[str, ...], float] = {}
    for key, value in source.counts().items():
        name, *labels = json.loads(key)
        stored[(name, *labels)] = value
    jobs = CounterMetricFamily(JOBS, "Jobs that reached a final state (succeeded, failed, cancelled), "
                               "by command; a retried job counts again when it finishes again.",
                               labels=["command", "state"])
    deliveries = CounterMetricFamily(DELIVERIES, "Webhook requests by front end and what wasmbot "
                                     "made of them.", labels=["source", "outcome"])
    by_stage: dict[str, dict[str, float]] = defaultdict(dict)
    for (name, *labels), value in sorted(stored.items()):
        if name == JOBS:
            jobs.add_metric(labels, value)
        elif name == STAGE_SECONDS + "_bucket":
            by_stage[labels[0]][labels[1]] = value
    for src in SOURCES:
        for outcome in OUTCOMES:
            deliveries.add_metric([src, outcome], stored.get((DELIVERIES, src, outcome), 0.0))
    stages = HistogramMetricFamily(STAGE_SECONDS, "How long stage runs took, from claim to finish, "
                                   "whatever their outcome.", labels=["stage"])
    for stage, buckets in sorted(by_stage.items()):
        total, cumulative = 0.0, []
        for bound in [*map(str, STAGE_BUCKETS), "+Inf"]:
            total += buckets.get(bound, 0.0)
            cumulative.append((bound, total))
        stages.add_metric([stage], cumulative, sum_value=stored.get((STAGE_SECONDS + "_sum", stage), 0.0))
    hits = CounterMetricFamily(CACHE_HITS, "Successful builds whose module came from the build cache.",
                               value=stored.get((CACHE_HITS,), 0.0))
    misses = CounterMetricFamily(CACHE_MISSES, "Successful builds that had to compile (and filled "
                                 "the cache).", value=stored.get((CACHE_MISSES,), 0.0))
    depth = GaugeMetricFamily(QUEUE_DEPTH, "Stages queued and not yet claimed by a worker now: one per "
                              "active job whose next stage waits (jobs waiting for approval are not "
                              "queued).", value=queue_depth(source.active()))
    return [jobs, stages, depth, deliveries, hits, misses]


def registry(source: Source) -> CollectorRegistry:
    """A registry for ``/metrics``: the store's wasmbot_* figures, and this server process's own
    resource use as ``wasmbot_server_process_*`` (per replica, unlike everything else)."""
    from prometheus_client import CollectorRegistry, ProcessCollector
    from prometheus_client.registry import Collector

    class StoreCollector(Collector):
        def collect(self) -> Iterator[Metric]:
            return iter(families(source))

    scrape = CollectorRegistry(auto_describe=False)
    scrape.register(StoreCollector())
    ProcessCollector(namespace="wasmbot_server", registry=scrape)
    return scrape
