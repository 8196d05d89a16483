"""Retention: old jobs, their logs and artifacts go, and the data directory stays under its bound.

Stage outputs in the registry's scratch repository go once their ``artifact_ttl`` is up
(workers/artifacts.py), in the store part; those in the job store expire by themselves.

``collect`` is one pass.  Every worker's maintenance thread calls ``periodic`` each
``gc_interval``: the store part runs once across all workers (whoever holds the store's ``gc``
lease), the local part once per data directory (each host has its own).  ``wasmbot gc`` runs a
pass on demand.  Deploy history is never pruned: rollback and ``/wasm history`` read it.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from workers import artifacts, buildcache, lease
from workers.config import Settings
from workers.store import JobStore

log = logging.getLogger(__name__)

# Cache folders under DATA_DIR/cache that the disk bound may shrink, cheapest to refill first.
CACHES = ("layers", "builds", "compiled", "deps")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """Seconds in ``30d``, ``12h``, ``90m``, ``45s``, ``2w`` or a plain number of seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if match is None:
        raise ValueError(f"duration {text!r}: give a number with s, m, h, d or w, e.g. 30d or 12h")
    return float(match.group(1)) * _UNITS[match.group(2)]


@dataclass
class Report:
    """What one pass removed (or would, with ``dry_run``), in counts and bytes."""

    dry_run: bool = False
    jobs: int = 0
    events: int = 0
    once_keys: int = 0
    workers: int = 0
    scratch: int = 0  # stage outputs deleted from the registry's scratch repository
    artifacts: int = 0  # job artifact directories of pruned or vanished jobs
    artifact_bytes: int = 0
    bound_artifacts: int = 0  # oldest finished jobs' artifacts dropped for the disk bound
    bound_artifact_bytes: int = 0
    cache_entries: int = 0  # build, compiled-module and dependency cache entries dropped for it
    cache_bytes: int = 0
    reclaimed_bytes: int = 0  # given back by the SQLite store's file
    data_dir_bytes: int = 0  # the data directory's size after the pass

    @property
    def removed_bytes(self) -> int:
        return self.artifact_bytes + self.bound_artifact_bytes + self.cache_bytes + self.reclaimed_bytes

    def as_dict(self) -> dict[str, int | bool]:
        return asdict(self)

    def text(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        lines = [f"{verb} {self.jobs} jobs with {self.events} events, {self.once_keys} expired "
                 f"once-keys, {self.workers} expired worker rows, {self.scratch} scratch registry "
                 "artifacts",
                 f"{verb} {self.artifacts} artifact directories of old jobs ({self.artifact_bytes} bytes)",
                 f"{verb} for the disk bound: {self.bound_artifacts} artifact directories "
                 f"({self.bound_artifact_bytes} bytes), {self.cache_entries} cache entries "
                 f"({self.cache_bytes} bytes)"]
        if not self.dry_run:
            lines.append(f"reclaimed {self.reclaimed_bytes} bytes of the job store's file")
        lines.append(f"data directory: {self.data_dir_bytes} bytes")
        return "\n".join(lines)


def collect(settings: Settings, store: JobStore, *, older_than: float | None = None, dry_run: bool = False,
            store_part: bool = True, local_part: bool = True) -> Report:
    """One pass: prune the store, then this data directory's artifacts, then enforce the bound."""
    age = older_than if older_than is not None else settings.retention_days * 86400
    cutoff = time.time() - age
    report = Report(dry_run=dry_run)
    gone: set[str] = set()
    if store_part:
        pruned = store.prune(cutoff, dry_run)
        gone = set(pruned.jobs)
        report.jobs, report.events = len(pruned.jobs), pruned.events
        report.once_keys, report.workers = pruned.once_keys, pruned.workers
        report.scratch = (len(store.due_scratch(time.time())) if dry_run
                          else artifacts.collect(settings, store))
    if local_part:
        removed = _old_artifacts(settings, store, cutoff, gone, report)
        _bound(settings, store, removed, report)
    if store_part and not dry_run:
        report.reclaimed_bytes = store.compact()
    return report


def _old_artifacts(settings: Settings, store: JobStore, cutoff: float, gone: set[str],
                   report: Report) -> set[str]:
    """Artifact directories of jobs pruned now, or that the store no longer has and that are old."""
    root = settings.artifacts_dir
    removed: set[str] = set()
    for entry in sorted(root.iterdir()) if root.is_dir() else []:
        if not entry.is_dir() or entry.is_symlink():
            continue
        if entry.name in gone or (entry.stat().st_mtime < cutoff and store.get(entry.name) is None):
            nbytes = buildcache.size(entry)
            if not report.dry_run:
                buildcache.remove(entry)
            removed.add(entry.name)
            report.artifacts += 1
            report.artifact_bytes += nbytes
    return removed


def _bound(settings: Settings, store: JobStore, removed: set[str], report: Report) -> None:
    """Over ``data_dir_max_mb``: drop the oldest finished jobs' artifacts, then cache entries."""
    total = buildcache.size(settings.data_dir)
    if report.dry_run:  # what the real pass would already have removed is still there
        total -= report.artifact_bytes
    over = total - settings.data_dir_max_mb * 2**20
    if over > 0:
        artifacts = buildcache.Cache(settings.artifacts_dir, 0)
        unfinished = {e.name for e in artifacts.entries()
                      if (job := store.get(e.name)) is not None and not job.state.finished}
        dropped = artifacts.free(over, keep=unfinished | removed, dry_run=report.dry_run)
        report.bound_artifacts = len(dropped)
        report.bound_artifact_bytes = sum(n for _, n in dropped)
        over -= report.bound_artifact_bytes
    for name in CACHES:
        if over <= 0:
            break
        dropped = buildcache.Cache(settings.data_dir / "cache" / name, 0).free(over, dry_run=report.dry_run)
        report.cache_entries += len(dropped)
        report.cache_bytes += sum(n for _, n in dropped)
        over -= sum(n for _, n in dropped)
    report.data_dir_bytes = total - report.bound_artifact_bytes - report.cache_bytes
    if over > 0:
        log.warning("data directory %s is %d bytes over data_dir_max_mb after gc: the rest is the "
                    "job store, OCI content, sources and unfinished jobs", settings.data_dir, over)


def periodic(settings: Settings, store: JobStore, worker: str) -> Report | None:
    """The maintenance thread's pass, if this worker holds a lease on some of it."""
    data_dir = Path(settings.data_dir).resolve()
    store_part = store.claim_key("gc:store", worker, settings.gc_interval) == worker
    local_part = store.claim_key(f"gc:{lease.HOST}:{data_dir}", worker, settings.gc_interval) == worker
    if not (store_part or local_part):
        return None
    report = collect(settings, store, store_part=store_part, local_part=local_part)
    if report.jobs or report.removed_bytes or report.once_keys or report.workers or report.scratch:
        log.info("gc: %s", report.text().replace("\n", "; "))
    return report
