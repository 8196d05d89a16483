"""Where job records and their event streams live: Redis, or an embedded SQLite file.

Both stores offer the same small interface and the same guarantees: ``update`` is an atomic
read-modify-write of one record (so two workers can never both claim a stage) and every state
change is appended to the job's event stream in the same transaction as the change itself.

Besides jobs they keep *work*: what a front end promised to do after answering a request
(a pull request comment's commands), kept under a key that names the request until it is done,
and remembered for ``ttl`` after that so a repeated request is not done twice.  Work changes
only by compare-and-swap, so two processes cannot both take it over.

And *leases*: which process does a long-running chore (a job's Slack or GitHub report), until
when.  A lease is renewed by its holder; one that lapsed (its holder died) stays listed until
another process takes it over, and is dropped when the chore is done.

And they keep the small outputs of stages (test reports) and, with no registry configured,
built modules: *artifacts*, a job's named bytes, gone after their ttl or with the job; and
an index of the large ones put in a registry's scratch repository, by when each is due for
deletion (workers/artifacts.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import redis
import redis.asyncio

from workers import logcap
from workers.autopipeline import AutoPipeline
from workers.config import Settings
from workers.jobs import Event, Job, State, state_events
from workers.logsetup import redact
from workers.metrics import transition_counts

T = TypeVar("T")
ACTIVE = (State.QUEUED, State.RUNNING)


class JobNotFound(KeyError):
    def __str__(self) -> str:
        return f"no job {self.args[0]!r}"


class JobStore(Protocol):
    def create(self, job: Job) -> None: ...
    def get(self, job_id: str) -> Job | None: ...
    def recent(self, limit: int = 20) -> list[Job]: ...
    def active(self) -> list[Job]: ...
    def waiting(self) -> list[Job]: ...
    def update(self, job_id: str, change: Callable[[Job], T]) -> T: ...
    def log(self, job_id: str, stage: str | None, text: str) -> None: ...
    def events(self, job_id: str, after: int = 0, timeout: float = 0) -> list[Event]: ...
    def heartbeat(self, worker: str, ttl: float, toolchains: Collection[str] = ()) -> None: ...
    def live_workers(self) -> list[str]: ...
    def worker_toolchains(self) -> dict[str, list[str]]: ...
    def retire(self, worker: str) -> None: ...
    def ping(self) -> None: ...
    def claim_key(self, key: str, value: str, ttl: float) -> str: ...
    async def claim_key_async(self, key: str, value: str, ttl: float) -> str: ...
    def take_key(self, key: str) -> str | None: ...
    def add_work(self, key: str, value: str, ttl: float) -> bool: ...
    def swap_work(self, key: str, old: str, new: str | None) -> bool: ...
    def open_work(self, prefix: str) -> dict[str, str]: ...
    def record_deploy(self, record: dict[str, str]) -> None: ...
    def deploys(self, env: str | None = None, limit: int = 1000) -> list[dict[str, str]]: ...
    def save_view(self, name: str, data: str) -> None: ...
    def view(self, name: str) -> str | None: ...
    def drop_view(self, name: str) -> None: ...
    def add_counts(self, counts: dict[str, float]) -> None: ...
    async def add_counts_async(self, counts: dict[str, float]) -> None: ...
    async def close_async(self) -> None: ...
    def counts(self) -> dict[str, float]: ...
    def prune(self, before: float, dry_run: bool = False) -> Pruned: ...
    def compact(self) -> int: ...
    def take_lease(self, group: str, item: str, owner: str, ttl: float) -> bool: ...
    def drop_lease(self, group: str, item: str, owner: str) -> None: ...
    def lapsed_leases(self, group: str) -> list[str]: ...
    def put_artifact(self, job_id: str, name: str, data: bytes, ttl: float) -> None: ...
    def get_artifact(self, job_id: str, name: str) -> bytes | None: ...
    def add_scratch(self, ref: str, expires: float) -> None: ...
    def due_scratch(self, now: float) -> list[str]: ...
    def drop_scratch(self, ref: str) -> None: ...


@dataclass
class Pruned:
    """What a prune removed (or would): jobs by id, with their events, and expired rows."""

    jobs: list[str] = field(default_factory=list)
    events: int = 0
    once_keys: int = 0
    workers: int = 0


def prunable(job: Job, before: float) -> bool:
    """A job that retention may remove: untouched since ``before`` and over (finished, or an
    approval request that expired by then).  Deploy history is separate and always kept."""
    if job.updated_at >= before:
        return False
    if job.state.finished:
        return True
    expires = job.approval.get("expires_at")
    return job.state is State.PENDING and expires is not None and float(expires) < before


# Leases: a hash per group, item -> "EXPIRES OWNER", timed by Redis's clock.
# KEYS: the group's hash.  ARGV: the item, its owner, ttl in seconds.  1: taken (or renewed).
TAKE_LEASE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local held = redis.call('HGET', KEYS[1], ARGV[1])
if held then
  local space = string.find(held, ' ', 1, true)
  if string.sub(held, space + 1) ~= ARGV[2] and tonumber(string.sub(held, 1, space - 1)) > now then
    return 0
  end
end
redis.call('HSET', KEYS[1], ARGV[1], string.format('%.3f', now + tonumber(ARGV[3])) .. ' ' .. ARGV[2])
return 1
"""
# KEYS: the group's hash.  ARGV: the item, its owner.
DROP_LEASE = """
local held = redis.call('HGET', KEYS[1], ARGV[1])
if held and string.sub(held, string.find(held, ' ', 1, true) + 1) == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
"""
# KEYS: the group's hash.  Returns the items whose lease ran out.
LAPSED_LEASES = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local flat = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #flat, 2 do
  local held = flat[i + 1]
  if tonumber(string.sub(held, 1, string.find(held, ' ', 1, true) - 1)) <= now then
    table.insert(out, flat[i])
  end
end
return out
"""

# KEYS: the work's key, the set of open work.  ARGV: its value, ttl in ms, its key's name.
ADD_WORK = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  redis.call('SADD', KEYS[2], ARGV[3])
  return 1
end
return 0
"""

# KEYS: the work's key, the set of open work.  ARGV: the value expected, the new one ('' when
# done), its key's name.
SWAP_WORK = """
if ARGV[1] == '' or redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
if ARGV[2] == '' then redis.call('SREM', KEYS[2], ARGV[3]) end
return 1
"""

# KEYS: the job's stream, its log-cap hash.  ARGV: event JSON, kind, its size, its text's
# size, head budget, job budget, its time.  Returns the event's seq.
# Workers: a sorted set of names scored by when their heartbeat expires (Redis's clock), and a
# hash of the toolchains each serves.  Submission reads the live ones on every job, so this is
# two indexed reads, never a SCAN of the keyspace; each heartbeat drops the expired.
HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do
  redis.call('ZREM', KEYS[1], gone)
  redis.call('HDEL', KEYS[2], gone)
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
"""
LIVE_WORKERS = """
local t = redis.call('TIME')
local names = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. (tonumber(t[1]) + tonumber(t[2]) / 1e6), '+inf')
local found = {}
for _, name in ipairs(names) do
  table.insert(found, name)
  table.insert(found, redis.call('HGET', KEYS[2], name) or '[]')
end
return found
"""

APPEND = """
if not redis.call('HGET', KEYS[2], 'n') then
  local old = redis.call('XRANGE', KEYS[1], '-', '+')
  for i, entry in ipairs(old) do  -- a stream written before ids were 0-SEQ: renumber it
    if i == 1 then redis.call('DEL', KEYS[1]) end
    redis.call('XADD', KEYS[1], '0-' .. i, unpack(entry[2]))
  end
  redis.call('HSET', KEYS[2], 'n', #old)
end
local n = redis.call('HINCRBY', KEYS[2], 'n', 1)
if ARGV[2] ~= 'log' then
  redis.call('XADD', KEYS[1], '0-' .. n, 'e', ARGV[1])
  return n
end
local size, budget = tonumber(ARGV[3]), tonumber(ARGV[6])
local kept = tonumber(redis.call('HGET', KEYS[2], 'bytes') or '0') + size
local marker = tonumber(redis.call('HGET', KEYS[2], 'marker') or '0')
if marker == 0 and kept > tonumber(ARGV[5]) then
  marker = n
  redis.call('HSET', KEYS[2], 'marker', marker, 'mts', ARGV[7], 'cursor', marker)
  n = redis.call('HINCRBY', KEYS[2], 'n', 1)
end
redis.call('XADD', KEYS[1], '0-' .. n, 'e', ARGV[1], 'k', 'log', 's', size, 't', ARGV[4])
if marker > 0 and kept > budget then
  local cursor = tonumber(redis.call('HGET', KEYS[2], 'cursor'))
  local lines, dropped = 0, 0
  while kept > budget and cursor < n - 1 do
    local entries = redis.call('XRANGE', KEYS[1], '0-' .. (cursor + 1), '0-' .. (n - 1), 'COUNT', 64)
    if #entries == 0 then cursor = n - 1 break end
    for _, entry in ipairs(entries) do
      cursor = tonumber(string.sub(entry[1], 3))
      local f = {}
      for i = 1, #entry[2], 2 do f[entry[2][i]] = entry[2][i + 1] end
      if f['k'] == 'log' then
        redis.call('XDEL', KEYS[1], entry[1])
        kept = kept - tonumber(f['s'])
        lines, dropped = lines + 1, dropped + tonumber(f['t'])
        if kept <= budget then break end
      end
    end
  end
  redis.call('HSET', KEYS[2], 'cursor', cursor)
  redis.call('HINCRBY', KEYS[2], 'dl', lines)
  redis.call('HINCRBY', KEYS[2], 'db', dropped)
end
redis.call('HSET', KEYS[2], 'bytes', kept)
return n
"""


def _claimed(before: Any, value: str) -> str:
    """Who holds a key after ``SET key value NX GET``: the earlier holder, or the claimant if
    there was none.  One command, no script (Redis 7.0 takes NX with GET): a script per claim
    (EVAL) cost Redis more CPU than the rest of a webhook delivery's work there."""
    return value if before is None else str(before)


class RedisStore:
    """Records as JSON strings, events as a Redis stream per job (``XREAD BLOCK`` to follow).

    Stream ids are ``0-SEQ``, SEQ numbering the job's events; ``APPEND`` (Lua, so atomic
    across processes) allocates it and applies the log caps: log entries past the head
    are dropped oldest first with ``XDEL``, and a hash per job counts what went.
    """

    def __init__(self, url: str, prefix: str = "wasmbot", line_max: int = logcap.LINE_MAX,
                 job_log_max: int = logcap.JOB_LOG_MAX) -> None:
        self.redis = redis.Redis.from_url(url, decode_responses=True)
        self.binary = redis.Redis.from_url(url)  # artifacts are bytes
        self.url = url
        self._aio: tuple[asyncio.AbstractEventLoop, AutoPipeline] | None = None
        self.prefix = prefix
        self.line_max, self.job_log_max = line_max, job_log_max

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def ping(self) -> None:
        self.redis.ping()

    def create(self, job: Job) -> None:
        with self.redis.pipeline() as pipe:
            pipe.set(self._key("job", job.id), job.model_dump_json())
            pipe.zadd(self._key("jobs"), {job.id: job.created_at})
            pipe.sadd(self._key("active"), job.id)
            if job.state is State.PENDING:
                pipe.sadd(self._key("pending"), job.id)
            for event in state_events(None, job):
                self._append(pipe, job.id, event)
            pipe.execute()

    def get(self, job_id: str) -> Job | None:
        raw = self.redis.get(self._key("job", job_id))
        return Job.model_validate_json(raw) if raw else None

    def _get_many(self, ids: list[str]) -> list[Job]:
        if not ids:
            return []
        raws = self.redis.mget([self._key("job", i) for i in ids])
        return [Job.model_validate_json(r) for r in raws if r]

    def recent(self, limit: int = 20) -> list[Job]:
        ids: list[str] = self.redis.zrevrange(self._key("jobs"), 0, limit - 1)  # type: ignore[assignment]
        return self._get_many(ids)

    def active(self) -> list[Job]:
        ids: set[str] = self.redis.smembers(self._key("active"))  # type: ignore[assignment]
        return [j for j in self._get_many(sorted(ids))
                if j.state in ACTIVE]

    def waiting(self) -> list[Job]:
        """Jobs whose state is pending (waiting for an approval), oldest first: an indexed
        read, so the hub's approvals page does not scan every job."""
        ids: set[str] = self.redis.smembers(self._key("pending"))  # type: ignore[assignment]
        found = [j for j in self._get_many(sorted(ids)) if j.state is State.PENDING]
        return sorted(found, key=lambda j: j.created_at)

    def update(self, job_id: str, change: Callable[[Job], T]) -> T:
        key = self._key("job", job_id)
        with self.redis.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)  # type: ignore[no-untyped-call]
                    raw = pipe.get(key)
                    if raw is None:
                        raise JobNotFound(job_id)
                    before = Job.model_validate_json(raw)
                    job = before.model_copy(deep=True)
                    result = change(job)
                    job.updated_at = time.time()
                    pipe.multi()
                    pipe.set(key, job.model_dump_json())
                    if job.state not in ACTIVE:
                        pipe.srem(self._key("active"), job_id)
                    else:
                        pipe.sadd(self._key("active"), job_id)
                    if job.state is State.PENDING:
                        pipe.sadd(self._key("pending"), job_id)
                    else:
                        pipe.srem(self._key("pending"), job_id)
                    for event in state_events(before, job):
                        self._append(pipe, job_id, event)
                    self._queue_counts(pipe, transition_counts(before, job))
                    pipe.execute()
                    return result
                except redis.WatchError:
                    continue

    def _append(self, client: redis.Redis | redis.client.Pipeline, job_id: str, event: Event) -> None:
        data = event.model_dump_json()
        client.eval(APPEND, 2, self._key("events", job_id), self._key("logcap", job_id), data,
                    event.kind, len(data.encode()), len(event.text.encode()),
                    self.job_log_max // 4, self.job_log_max, event.ts)

    def log(self, job_id: str, stage: str | None, text: str) -> None:
        self._append(self.redis, job_id, Event(kind="log", stage=stage,
                                               text=logcap.cut_text(redact(text), self.line_max)))

    def events(self, job_id: str, after: int = 0, timeout: float = 0) -> list[Event]:
        key = self._key("events", job_id)
        entries: list[tuple[str, dict[str, str]]] = self.redis.xrange(key, f"0-{after + 1}")  # type: ignore[assignment]
        if not entries and timeout > 0:
            # redis-py's socket timeout is 5 s: a longer XREAD BLOCK would fail as a TimeoutError.
            self.redis.xread({key: f"0-{after}"}, block=int(min(timeout, 4.0) * 1000), count=1)
            entries = self.redis.xrange(key, f"0-{after + 1}")  # type: ignore[assignment]
        out = []
        for position, (entry_id, fields) in enumerate(entries, start=1):
            ms, _, n = entry_id.partition("-")
            event = Event.model_validate_json(fields["e"])
            event.seq = int(n) if ms == "0" else position  # not renumbered yet: from an older wasmbot
            if event.seq > after:
                out.append(event)
        cap: list[str | None] = self.redis.hmget(self._key("logcap", job_id), ["marker", "mts", "dl", "db"])  # type: ignore[assignment]
        marker, ts, lines, size = (c or "0" for c in cap)
        if int(lines) and int(marker) > after:  # the marker where the middle was dropped
            note = logcap.dropped_marker(int(lines), int(size))
            out.append(Event(seq=int(marker), ts=float(ts), kind="log", text=note))
            out.sort(key=lambda e: e.seq)
        return out

    def claim_key(self, key: str, value: str, ttl: float) -> str:
        """Set ``key`` to ``value`` unless it is set; return what it holds (idempotency keys)."""
        return _claimed(self.redis.set(self._key("once", key), value, nx=True, px=int(ttl * 1000), get=True),
                        value)

    def take_key(self, key: str) -> str | None:
        """Take back a claimed key: what it held, or None if it was never claimed, has expired
        or was taken already (one-use tokens: a Slack install's state)."""
        held: str | None = self.redis.getdel(self._key("once", key))  # type: ignore[assignment]
        return held

    def _pipeline(self) -> AutoPipeline:
        """The running event loop's group commit (asyncio connections belong to one loop): the
        web front ends' per-request calls run on the loop, batched, not in a thread per call."""
        loop = asyncio.get_running_loop()
        if self._aio is None or self._aio[0] is not loop:
            self._aio = (loop, AutoPipeline(redis.asyncio.Redis.from_url(self.url, decode_responses=True)))
        return self._aio[1]

    async def claim_key_async(self, key: str, value: str, ttl: float) -> str:
        """``claim_key`` on the event loop, in one round trip."""
        command = ("SET", self._key("once", key), value, "NX", "PX", int(ttl * 1000), "GET")
        return _claimed(await self._pipeline().call(*command), value)

    async def close_async(self) -> None:
        """Close the event loop's client (at the web application's cleanup)."""
        if self._aio is not None:
            await self._aio[1].close()
            self._aio = None

    def add_work(self, key: str, value: str, ttl: float) -> bool:
        """Record work ``value`` under ``key`` unless ``key`` was recorded in the last ``ttl``
        seconds (done or not); True when it is new."""
        added = self.redis.eval(ADD_WORK, 2, self._key("work", key), self._key("work-open"),
                                value, int(ttl * 1000), key)
        return bool(added)

    def swap_work(self, key: str, old: str, new: str | None) -> bool:
        """Replace open work's value if it is still ``old``; None: the work is done (its key is
        remembered until its ttl).  False: someone changed it first, or it is done."""
        swapped = self.redis.eval(SWAP_WORK, 2, self._key("work", key), self._key("work-open"),
                                  old, new or "", key)
        return bool(swapped)

    def open_work(self, prefix: str) -> dict[str, str]:
        """The work not yet done whose keys start with ``prefix``; work past its ttl is dropped."""
        members: set[str] = self.redis.smembers(self._key("work-open"))  # type: ignore[assignment]
        keys = sorted(k for k in members if k.startswith(prefix))
        values: list[str | None] = self.redis.mget([self._key("work", k) for k in keys]) if keys else []  # type: ignore[assignment]
        gone = [k for k, v in zip(keys, values, strict=True) if not v]
        if gone:
            self.redis.srem(self._key("work-open"), *gone)
        return {k: v for k, v in zip(keys, values, strict=True) if v}

    def take_lease(self, group: str, item: str, owner: str, ttl: float) -> bool:
        """Take or renew ``item``'s lease in ``group`` for ``ttl`` seconds, unless another owner
        holds it unexpired; True when ``owner`` holds it now."""
        return bool(self.redis.eval(TAKE_LEASE, 1, self._key("lease", group), item, owner, ttl))

    def drop_lease(self, group: str, item: str, owner: str) -> None:
        """The chore is done: forget the lease, if ``owner`` still holds it."""
        self.redis.eval(DROP_LEASE, 1, self._key("lease", group), item, owner)

    def lapsed_leases(self, group: str) -> list[str]:
        """The items of ``group`` whose holder stopped renewing: theirs to take over."""
        return sorted(self.redis.eval(LAPSED_LEASES, 1, self._key("lease", group)))

    def record_deploy(self, record: dict[str, str]) -> None:
        """Append to the environment's deploy history (kept whole: rollback reads it)."""
        env = record["environment"]
        with self.redis.pipeline() as pipe:
            pipe.sadd(self._key("deploy-envs"), env)
            pipe.lpush(self._key("deploys", env), json.dumps(record))
            pipe.execute()

    def deploys(self, env: str | None = None, limit: int = 1000) -> list[dict[str, str]]:
        envs = [env] if env is not None else sorted(map(str, self.redis.smembers(self._key("deploy-envs"))))
        found: list[dict[str, str]] = []
        for name in envs:
            found += [json.loads(r) for r in self.redis.lrange(self._key("deploys", name), 0, limit - 1)]
        return sorted(found, key=lambda r: float(r["at"]), reverse=True)[:limit]

    def save_view(self, name: str, data: str) -> None:
        """Keep ``data`` as the document ``name``, shared by every replica: what a front end
        derived from slow sources (the hub's module catalogue, read from the registry) or was
        given once (Slack installations, bot/slack/installations.py)."""
        self.redis.set(self._key("view", name), data)

    def view(self, name: str) -> str | None:
        found: str | None = self.redis.get(self._key("view", name))  # type: ignore[assignment]
        return found

    def drop_view(self, name: str) -> None:
        self.redis.delete(self._key("view", name))

    # -- metrics: counters every process adds to (workers/metrics.py names them) --

    def _queue_counts(self, pipe: redis.client.Pipeline, counts: dict[str, float]) -> None:
        for name, amount in counts.items():
            pipe.hincrbyfloat(self._key("metrics"), name, amount)

    def add_counts(self, counts: dict[str, float]) -> None:
        with self.redis.pipeline() as pipe:  # MULTI/EXEC: all of them or none
            self._queue_counts(pipe, counts)
            pipe.execute()

    async def add_counts_async(self, counts: dict[str, float]) -> None:
        """``add_counts`` on the event loop: each series is added atomically (HINCRBYFLOAT),
        all of them in the same round trip (a front end counts one series per request)."""
        pipeline, key = self._pipeline(), self._key("metrics")
        await asyncio.gather(*(pipeline.call("HINCRBYFLOAT", key, name, amount)
                               for name, amount in counts.items()))

    def counts(self) -> dict[str, float]:
        raw: dict[str, str] = self.redis.hgetall(self._key("metrics"))  # type: ignore[assignment]
        return {name: float(value) for name, value in raw.items()}

    def prune(self, before: float, dry_run: bool = False) -> Pruned:
        """Remove prunable jobs and their event streams; once-keys and workers expire by TTL."""
        pruned = Pruned()
        ids: list[str] = self.redis.zrangebyscore(self._key("jobs"), "-inf", before)  # type: ignore[assignment]
        for job_id in ids:
            key, events = self._key("job", job_id), self._key("events", job_id)
            with self.redis.pipeline() as pipe:
                try:
                    pipe.watch(key)  # type: ignore[no-untyped-call]
                    raw = pipe.get(key)
                    if raw is not None and not prunable(Job.model_validate_json(raw), before):
                        continue
                    count = int(pipe.xlen(events))
                    if not dry_run:
                        pipe.multi()
                        pipe.delete(key, events, self._key("logcap", job_id), self._key("artifacts", job_id))
                        pipe.zrem(self._key("jobs"), job_id)
                        pipe.srem(self._key("active"), job_id)
                        pipe.srem(self._key("pending"), job_id)
                        pipe.execute()
                except redis.WatchError:
                    continue  # changed meanwhile (a retry): not old any more
            pruned.jobs.append(job_id)
            pruned.events += count
        return pruned

    def compact(self) -> int:
        return 0  # Redis frees memory as keys go

    # -- artifacts: a hash of a job's named bytes, expiring as a whole --

    def put_artifact(self, job_id: str, name: str, data: bytes, ttl: float) -> None:
        key = self._key("artifacts", job_id)
        with self.binary.pipeline() as pipe:  # MULTI/EXEC: never an artifact without its expiry
            pipe.hset(key, name, data)
            pipe.pexpire(key, int(ttl * 1000))
            pipe.execute()

    def get_artifact(self, job_id: str, name: str) -> bytes | None:
        found: bytes | None = self.binary.hget(self._key("artifacts", job_id), name)  # type: ignore[assignment]
        return found

    def add_scratch(self, ref: str, expires: float) -> None:
        self.redis.zadd(self._key("scratch"), {ref: expires})

    def due_scratch(self, now: float) -> list[str]:
        due: list[str] = self.redis.zrangebyscore(self._key("scratch"), "-inf", now)  # type: ignore[assignment]
        return due

    def drop_scratch(self, ref: str) -> None:
        self.redis.zrem(self._key("scratch"), ref)

    def _worker_keys(self) -> tuple[str, str]:
        return self._key("workers"), self._key("worker-toolchains")

    def heartbeat(self, worker: str, ttl: float, toolchains: Collection[str] = ()) -> None:
        self.redis.eval(HEARTBEAT, 2, *self._worker_keys(), worker, ttl, json.dumps(sorted(toolchains)))

    def retire(self, worker: str) -> None:
        live, served = self._worker_keys()
        with self.redis.pipeline() as pipe:
            pipe.zrem(live, worker)
            pipe.hdel(served, worker)
            pipe.execute()

    def live_workers(self) -> list[str]:
        return sorted(self.worker_toolchains())

    def worker_toolchains(self) -> dict[str, list[str]]:
        flat: list[str] = self.redis.eval(LIVE_WORKERS, 2, *self._worker_keys())
        return {flat[i]: _toolchains(flat[i + 1]) for i in range(0, len(flat), 2)}


class SqliteStore:
    """Records and events in one SQLite file (WAL), for running without any server.

    SQLite has no cross-process notification, so ``events`` with a timeout polls the events
    table; that is the embedded store's one compromise.
    """

    POLL_INTERVAL = 0.1
    METRICS_TABLE = "CREATE TABLE IF NOT EXISTS metrics (name TEXT PRIMARY KEY, value REAL NOT NULL)"

    def __init__(self, path: Path, line_max: int = logcap.LINE_MAX,
                 job_log_max: int = logcap.JOB_LOG_MAX) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.line_max, self.job_log_max = line_max, job_log_max
        self._local = threading.local()
        with self._connect() as db:
            db.executescript(
                """
                PRAGMA journal_mode=WAL;
                CREATE TABLE IF NOT EXISTS jobs (
                    id TEXT PRIMARY KEY, created REAL NOT NULL, state TEXT NOT NULL, data TEXT NOT NULL);
                CREATE INDEX IF NOT EXISTS jobs_created ON jobs(created);
                CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);
                CREATE TABLE IF NOT EXISTS events (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL, data TEXT NOT NULL);
                CREATE INDEX IF NOT EXISTS events_job ON events(job_id, seq);
                CREATE TABLE IF NOT EXISTS workers (
                    name TEXT PRIMARY KEY, expires REAL NOT NULL, toolchains TEXT NOT NULL DEFAULT '[]');
                CREATE TABLE IF NOT EXISTS once (
                    key TEXT PRIMARY KEY, value TEXT NOT NULL, expires REAL NOT NULL);
                -- work a front end took on: value NULL once it is done
                CREATE TABLE IF NOT EXISTS work (key TEXT PRIMARY KEY, value TEXT, expires REAL NOT NULL);
                CREATE TABLE IF NOT EXISTS leases (grp TEXT NOT NULL, item TEXT NOT NULL, owner TEXT NOT NULL,
                    expires REAL NOT NULL, PRIMARY KEY (grp, item));
                CREATE TABLE IF NOT EXISTS deploys (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT, env TEXT NOT NULL, data TEXT NOT NULL);
                CREATE INDEX IF NOT EXISTS deploys_env ON deploys(env, seq);
                -- what front ends derived from slow sources (save_view)
                CREATE TABLE IF NOT EXISTS views (name TEXT PRIMARY KEY, data TEXT NOT NULL);
                -- stage outputs (put_artifact) and scratch images due for deletion (add_scratch)
                CREATE TABLE IF NOT EXISTS artifacts (
                    job_id TEXT NOT NULL, name TEXT NOT NULL, data BLOB NOT NULL, expires REAL NOT NULL,
                    PRIMARY KEY (job_id, name));
                CREATE TABLE IF NOT EXISTS scratch (ref TEXT PRIMARY KEY, expires REAL NOT NULL);
                CREATE INDEX IF NOT EXISTS scratch_expires ON scratch(expires);
                -- log caps: bytes kept, the marker's row (reserved when the head is full),
                -- the last row looked at for dropping, and the lines and bytes dropped
                CREATE TABLE IF NOT EXISTS logcaps (
                    job_id TEXT PRIMARY KEY, bytes INTEGER NOT NULL, marker INTEGER NOT NULL,
                    marker_ts REAL NOT NULL, cursor INTEGER NOT NULL,
                    lines INTEGER NOT NULL, dropped INTEGER NOT NULL);
                """
            )
            db.execute(self.METRICS_TABLE)
            columns = {row[1] for row in db.execute("PRAGMA table_info(workers)")}
            if "toolchains" not in columns:  # a file from before routing (workers/routing.py)
                with contextlib.suppress(sqlite3.OperationalError):  # another process added it first
                    db.execute("ALTER TABLE workers ADD COLUMN toolchains TEXT NOT NULL DEFAULT '[]'")

    def _connect(self) -> sqlite3.Connection:
        # One connection per process and thread: connections must not cross a fork.
        key = (os.getpid(), threading.get_ident())
        conn: sqlite3.Connection | None = getattr(self._local, "conns", {}).get(key)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conns = {key: conn}
        return conn

    def ping(self) -> None:
        self._connect().execute("SELECT 1")

    def _insert_events(self, db: sqlite3.Connection, job_id: str, events: list[Event]) -> None:
        db.executemany(
            "INSERT INTO events(job_id, data) VALUES (?, ?)",
            [(job_id, e.model_dump_json()) for e in events],
        )

    @contextmanager
    def _immediate(self) -> Iterator[sqlite3.Connection]:
        """A write transaction holding SQLite's write lock from its start (so two writers never
        deadlock upgrading a read), committed when the block ends and rolled back if it raises."""
        db = self._connect()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def create(self, job: Job) -> None:
        with self._immediate() as db:
            db.execute("INSERT INTO jobs VALUES (?, ?, ?, ?)",
                       (job.id, job.created_at, job.state.value, job.model_dump_json()))
            self._insert_events(db, job.id, state_events(None, job))

    def get(self, job_id: str) -> Job | None:
        row = self._connect().execute("SELECT data FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return Job.model_validate_json(row[0]) if row else None

    def recent(self, limit: int = 20) -> list[Job]:
        rows = self._connect().execute(
            "SELECT data FROM jobs ORDER BY created DESC LIMIT ?", (limit,)).fetchall()
        return [Job.model_validate_json(r[0]) for r in rows]

    def active(self) -> list[Job]:
        rows = self._connect().execute(
            "SELECT data FROM jobs WHERE state IN (?, ?) ORDER BY created",
            tuple(s.value for s in ACTIVE)).fetchall()
        return [Job.model_validate_json(r[0]) for r in rows]

    def waiting(self) -> list[Job]:
        rows = self._connect().execute(
            "SELECT data FROM jobs WHERE state = ? ORDER BY created", (State.PENDING.value,)).fetchall()
        return [Job.model_validate_json(r[0]) for r in rows]

    def update(self, job_id: str, change: Callable[[Job], T]) -> T:
        with self._immediate() as db:
            row = db.execute("SELECT data FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise JobNotFound(job_id)
            before = Job.model_validate_json(row[0])
            job = before.model_copy(deep=True)
            result = change(job)
            job.updated_at = time.time()
            db.execute("UPDATE jobs SET state = ?, data = ? WHERE id = ?",
                       (job.state.value, job.model_dump_json(), job_id))
            self._insert_events(db, job_id, state_events(before, job))
            self._add_counts(db, transition_counts(before, job))
            return result

    def log(self, job_id: str, stage: str | None, text: str) -> None:
        event = Event(kind="log", stage=stage, text=logcap.cut_text(redact(text), self.line_max))
        data = event.model_dump_json()
        with self._immediate() as db:
            row = db.execute("SELECT bytes, marker, marker_ts, cursor, lines, dropped FROM logcaps "
                             "WHERE job_id = ?", (job_id,)).fetchone()
            kept, marker, marker_ts, cursor, lines, dropped = row or (0, 0, 0.0, 0, 0, 0)
            if not marker and kept + len(data.encode()) > self.job_log_max // 4:
                # the head is full: reserve the marker's place; it is written once lines go
                marker = cursor = db.execute("INSERT INTO events(job_id, data) VALUES (?, '')",
                                             (job_id,)).lastrowid or 0
                marker_ts = event.ts
            seq = db.execute("INSERT INTO events(job_id, data) VALUES (?, ?)", (job_id, data)).lastrowid
            kept += len(data.encode())
            before = lines
            while marker and kept > self.job_log_max:
                rows = db.execute(
                    "SELECT seq, length(CAST(data AS BLOB)), json_extract(data, '$.kind'), "
                    "length(CAST(json_extract(data, '$.text') AS BLOB)) FROM events "
                    "WHERE job_id = ? AND seq > ? AND seq < ? ORDER BY seq LIMIT 64",
                    (job_id, cursor, seq)).fetchall()
                if not rows:
                    break
                for cursor, size, kind, text_size in rows:
                    if kind == "log":  # state changes are never dropped
                        db.execute("DELETE FROM events WHERE seq = ?", (cursor,))
                        kept, lines, dropped = kept - size, lines + 1, dropped + text_size
                        if kept <= self.job_log_max:
                            break
            if lines != before:
                note = Event(kind="log", ts=marker_ts, text=logcap.dropped_marker(lines, dropped))
                db.execute("UPDATE events SET data = ? WHERE seq = ?", (note.model_dump_json(), marker))
            db.execute("INSERT OR REPLACE INTO logcaps VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (job_id, kept, marker, marker_ts, cursor, lines, dropped))

    def events(self, job_id: str, after: int = 0, timeout: float = 0) -> list[Event]:
        """Events after ``after``; seq is the row's number (a reserved, unused marker row is
        left out)."""
        deadline = time.monotonic() + timeout
        db = self._connect()
        while True:
            rows = db.execute("SELECT seq, data FROM events WHERE job_id = ? AND seq > ? AND data != '' "
                              "ORDER BY seq", (job_id, after)).fetchall()
            if rows or time.monotonic() >= deadline:
                break
            time.sleep(self.POLL_INTERVAL)
        out = []
        for seq, data in rows:
            event = Event.model_validate_json(data)
            event.seq = seq
            out.append(event)
        return out

    def claim_key(self, key: str, value: str, ttl: float) -> str:
        with self._immediate() as db:
            now = time.time()
            db.execute("DELETE FROM once WHERE expires <= ?", (now,))
            db.execute("INSERT OR IGNORE INTO once VALUES (?, ?, ?)", (key, value, now + ttl))
            held: str = db.execute("SELECT value FROM once WHERE key = ?", (key,)).fetchone()[0]
            return held

    async def claim_key_async(self, key: str, value: str, ttl: float) -> str:
        return await asyncio.to_thread(self.claim_key, key, value, ttl)  # SQLite blocks: off the loop

    def take_key(self, key: str) -> str | None:
        # fetchall: the statement runs to its end, so its implicit transaction ends with it.
        rows = self._connect().execute("DELETE FROM once WHERE key = ? AND expires > ? RETURNING value",
                                       (key, time.time())).fetchall()
        return str(rows[0][0]) if rows else None

    def add_work(self, key: str, value: str, ttl: float) -> bool:
        with self._immediate() as db:
            now = time.time()
            db.execute("DELETE FROM work WHERE expires <= ?", (now,))
            added = db.execute("INSERT OR IGNORE INTO work VALUES (?, ?, ?)", (key, value, now + ttl))
            return added.rowcount == 1

    def swap_work(self, key: str, old: str, new: str | None) -> bool:
        swapped = self._connect().execute("UPDATE work SET value = ? WHERE key = ? AND value = ?",
                                          (new, key, old))
        return swapped.rowcount == 1

    def open_work(self, prefix: str) -> dict[str, str]:
        rows = self._connect().execute(
            "SELECT key, value FROM work WHERE value IS NOT NULL AND expires > ? AND substr(key, 1, ?) = ? "
            "ORDER BY key", (time.time(), len(prefix), prefix)).fetchall()
        return dict(rows)

    def take_lease(self, group: str, item: str, owner: str, ttl: float) -> bool:
        with self._immediate() as db:
            now = time.time()
            taken = db.execute(
                "INSERT INTO leases VALUES (?, ?, ?, ?) ON CONFLICT(grp, item) DO UPDATE SET "
                "owner = excluded.owner, expires = excluded.expires "
                "WHERE leases.owner = excluded.owner OR leases.expires <= ?",
                (group, item, owner, now + ttl, now))
            return taken.rowcount == 1

    def drop_lease(self, group: str, item: str, owner: str) -> None:
        self._connect().execute("DELETE FROM leases WHERE grp = ? AND item = ? AND owner = ?",
                                (group, item, owner))

    def lapsed_leases(self, group: str) -> list[str]:
        rows = self._connect().execute("SELECT item FROM leases WHERE grp = ? AND expires <= ? ORDER BY item",
                                       (group, time.time())).fetchall()
        return [r[0] for r in rows]

    def record_deploy(self, record: dict[str, str]) -> None:
        self._connect().execute("INSERT INTO deploys(env, data) VALUES (?, ?)",
                                (record["environment"], json.dumps(record)))

    def deploys(self, env: str | None = None, limit: int = 1000) -> list[dict[str, str]]:
        if env is None:
            rows = self._connect().execute(
                "SELECT data FROM deploys ORDER BY seq DESC LIMIT ?", (limit,)).fetchall()
        else:
            rows = self._connect().execute(
                "SELECT data FROM deploys WHERE env = ? ORDER BY seq DESC LIMIT ?", (env, limit)).fetchall()
        return [json.loads(r[0]) for r in rows]

    def save_view(self, name: str, data: str) -> None:
        self._connect().execute("INSERT OR REPLACE INTO views VALUES (?, ?)", (name, data))

    def view(self, name: str) -> str | None:
        row = self._connect().execute("SELECT data FROM views WHERE name = ?", (name,)).fetchone()
        return str(row[0]) if row else None

    def drop_view(self, name: str) -> None:
        self._connect().execute("DELETE FROM views WHERE name = ?", (name,))

    # -- metrics: counters every process adds to (workers/metrics.py names them) --

    def _add_counts(self, db: sqlite3.Connection, counts: dict[str, float]) -> None:
        db.executemany("INSERT INTO metrics VALUES (?, ?) "
                       "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value", counts.items())

    def add_counts(self, counts: dict[str, float]) -> None:
        with self._immediate() as db:
            self._add_counts(db, counts)

    async def add_counts_async(self, counts: dict[str, float]) -> None:
        await asyncio.to_thread(self.add_counts, counts)

    async def close_async(self) -> None:
        pass  # nothing is opened for the event loop

    def counts(self) -> dict[str, float]:
        return dict(self._connect().execute("SELECT name, value FROM metrics").fetchall())

    def prune(self, before: float, dry_run: bool = False) -> Pruned:
        """Remove prunable jobs, their events, expired once-keys and worker rows, in one transaction."""
        with self._immediate() as db:
            rows = db.execute("SELECT data FROM jobs WHERE created < ? AND state NOT IN (?, ?)",
                              (before, *(s.value for s in ACTIVE))).fetchall()
            ids = json.dumps([job.id for job in (Job.model_validate_json(r[0]) for r in rows)
                              if prunable(job, before)])
            now = time.time()
            counts = [db.execute(sql, args).fetchone()[0] for sql, args in (
                ("SELECT COUNT(*) FROM events WHERE data != '' "  # not an unused marker row
                 "AND job_id IN (SELECT value FROM json_each(?))", (ids,)),
                ("SELECT COUNT(*) FROM once WHERE expires <= ?", (now,)),
                ("SELECT COUNT(*) FROM workers WHERE expires <= ?", (now,)))]
            if not dry_run:
                db.execute("DELETE FROM events WHERE job_id IN (SELECT value FROM json_each(?))", (ids,))
                db.execute("DELETE FROM logcaps WHERE job_id IN (SELECT value FROM json_each(?))", (ids,))
                db.execute("DELETE FROM jobs WHERE id IN (SELECT value FROM json_each(?))", (ids,))
                db.execute("DELETE FROM artifacts WHERE expires <= ? OR job_id IN "
                           "(SELECT value FROM json_each(?))", (now, ids))
                db.execute("DELETE FROM once WHERE expires <= ?", (now,))
                db.execute("DELETE FROM workers WHERE expires <= ?", (now,))
        return Pruned(jobs=json.loads(ids), events=counts[0], once_keys=counts[1], workers=counts[2])

    def compact(self) -> int:
        """Give free pages back to the file system once a quarter of the file is free; bytes freed."""
        db = self._connect()
        pages, free = (db.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_count", "freelist_count"))
        if free == 0 or free * 4 < pages:
            return 0
        before = self.path.stat().st_size
        db.execute("VACUUM")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return max(0, before - self.path.stat().st_size)

    def put_artifact(self, job_id: str, name: str, data: bytes, ttl: float) -> None:
        self._connect().execute("INSERT OR REPLACE INTO artifacts VALUES (?, ?, ?, ?)",
                                (job_id, name, data, time.time() + ttl))

    def get_artifact(self, job_id: str, name: str) -> bytes | None:
        row = self._connect().execute(
            "SELECT data FROM artifacts WHERE job_id = ? AND name = ? AND expires > ?",
            (job_id, name, time.time())).fetchone()
        return bytes(row[0]) if row else None

    def add_scratch(self, ref: str, expires: float) -> None:
        self._connect().execute("INSERT OR REPLACE INTO scratch VALUES (?, ?)", (ref, expires))

    def due_scratch(self, now: float) -> list[str]:
        rows = self._connect().execute("SELECT ref FROM scratch WHERE expires <= ? ORDER BY expires",
                                       (now,)).fetchall()
        return [r[0] for r in rows]

    def drop_scratch(self, ref: str) -> None:
        self._connect().execute("DELETE FROM scratch WHERE ref = ?", (ref,))

    def heartbeat(self, worker: str, ttl: float, toolchains: Collection[str] = ()) -> None:
        self._connect().execute(
            "INSERT INTO workers VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
            "expires = excluded.expires, toolchains = excluded.toolchains",
            (worker, time.time() + ttl, json.dumps(sorted(toolchains))))

    def retire(self, worker: str) -> None:
        self._connect().execute("DELETE FROM workers WHERE name = ?", (worker,))

    def live_workers(self) -> list[str]:
        rows = self._connect().execute(
            "SELECT name FROM workers WHERE expires > ? ORDER BY name", (time.time(),)).fetchall()
        return [r[0] for r in rows]

    def worker_toolchains(self) -> dict[str, list[str]]:
        rows = self._connect().execute(
            "SELECT name, toolchains FROM workers WHERE expires > ? ORDER BY name", (time.time(),)).fetchall()
        return {name: _toolchains(value) for name, value in rows}


def _toolchains(value: str | bytes) -> list[str]:
    """A heartbeat's toolchains (a JSON list)."""
    try:
        found = json.loads(value)
    except ValueError:
        return []
    return [str(t) for t in found] if isinstance(found, list) else []


_stores: dict[tuple[int, str], JobStore] = {}


def open_store(settings: Settings) -> JobStore:
    """The store the settings name, one per process (stores hold connections)."""
    key = (os.getpid(), settings.redis_url or str(settings.data_dir))
    store = _stores.get(key)
    if store is None:
        line_max, job_max = settings.log_line_max, settings.job_log_max_mb * 2**20
        store = (RedisStore(settings.redis_url, line_max=line_max, job_log_max=job_max) if settings.redis_url
                 else SqliteStore(settings.data_dir / "jobs.sqlite", line_max=line_max, job_log_max=job_max))
        _stores[key] = store
    return store
