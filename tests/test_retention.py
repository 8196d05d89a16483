"""Retention on both stores: jobs aged by editing their timestamps in the store, `wasmbot gc`
run as a process, and the periodic pass of a real worker."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import Wasmbot, settings_for

from workers import retention
from workers.jobs import Job, Stage, State
from workers.store import RedisStore, SqliteStore

DAY = 86400.0
MIB = 2**20


def make_job(bot: Wasmbot, state: State, *, age: float = 0, approval: dict[str, str] | None = None,
             artifact_bytes: int = 0) -> Job:
    """A job in ``state`` with a log line and an artifact of ``artifact_bytes``, last touched ``age`` ago."""
    job = Job(requester="t", origin="cli", command={"name": "build", "source": "x"}, text="/wasm build x", source_root="/",
              stages=[Stage(name="build")])
    bot.store.create(job)

    def settle(stored: Job) -> None:
        stored.state = stored.stages[0].state = state
        stored.approval = approval or {}

    bot.store.update(job.id, settle)
    bot.store.log(job.id, "build", "some output")
    if artifact_bytes:
        folder = settings_for(bot).artifacts_dir / job.id
        folder.mkdir(parents=True)
        (folder / "filter.wasm").write_bytes(b"\0" * artifact_bytes)
    if age:
        set_age(bot, job.id, age)
    stored = bot.store.get(job.id)
    assert stored is not None
    return stored


def set_age(bot: Wasmbot, job_id: str, age: float) -> None:
    """Move the job's timestamps ``age`` seconds into the past, in the store itself."""
    job = bot.store.get(job_id)
    assert job is not None
    job.created_at = job.updated_at = time.time() - age
    if isinstance(bot.store, RedisStore):
        bot.store.redis.set(bot.store._key("job", job_id), job.model_dump_json())
        bot.store.redis.zadd(bot.store._key("jobs"), {job_id: job.created_at})
    else:
        assert isinstance(bot.store, SqliteStore)
        bot.store._connect().execute("UPDATE jobs SET created = ?, data = ? WHERE id = ?",
                                     (job.created_at, job.model_dump_json(), job_id))


def gc(bot: Wasmbot, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    proc = bot.cli("gc", "--json", *args, env=env)
    assert proc.returncode == 0, proc.stderr
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


def counts(report: dict[str, Any]) -> dict[str, Any]:
    """What a dry run must predict exactly."""
    return {k: v for k, v in report.items() if k not in ("dry_run", "reclaimed_bytes", "data_dir_bytes")}


def artifact(bot: Wasmbot, job_id: str) -> Path:
    return settings_for(bot).artifacts_dir / job_id


def test_gc_prunes_old_jobs_and_their_artifacts_and_keeps_active_jobs_and_deploy_history(
        wasmbot: Wasmbot) -> None:
    old = [make_job(wasmbot, State.SUCCEEDED, age=40 * DAY, artifact_bytes=1000),
           make_job(wasmbot, State.FAILED, age=40 * DAY, artifact_bytes=2000),
           make_job(wasmbot, State.PENDING, age=40 * DAY, artifact_bytes=3000,
                    approval={"action": "deploy:prod", "expires_at": str(time.time() - 39 * DAY)})]
    kept = [make_job(wasmbot, State.RUNNING, age=40 * DAY, artifact_bytes=100),  # active, however old
            make_job(wasmbot, State.QUEUED, age=40 * DAY),
            make_job(wasmbot, State.SUCCEEDED, age=29 * DAY, artifact_bytes=100)]  # younger than 30 days
    orphans = settings_for(wasmbot).artifacts_dir
    (orphans / "0ld0rphan000").mkdir()
    (orphans / "0ld0rphan000" / "checkout").write_bytes(b"x" * 500)
    os.utime(orphans / "0ld0rphan000", (time.time() - 40 * DAY,) * 2)
    (orphans / "n3w0rphan000").mkdir()  # a job being created right now: kept
    deploy = {"environment": "prod", "filter": "f", "image": "r/f@sha256:00", "at": str(time.time() - 400 * DAY)}
    wasmbot.store.record_deploy(deploy)
    events = sum(len(wasmbot.store.events(job.id)) for job in old)

    planned = gc(wasmbot, "--dry-run")
    assert planned["dry_run"] is True
    assert all(wasmbot.store.get(job.id) is not None for job in old)
    assert all(artifact(wasmbot, job.id).is_dir() for job in old)
    assert (orphans / "0ld0rphan000").is_dir()

    done = gc(wasmbot)
    assert counts(done) == counts(planned)
    assert done["jobs"] == 3 and done["events"] == events
    assert done["artifacts"] == 4 and done["artifact_bytes"] == 1000 + 2000 + 3000 + 500
    assert done["bound_artifacts"] == done["cache_entries"] == 0  # far below the default bound
    for job in old:
        assert wasmbot.store.get(job.id) is None and wasmbot.store.events(job.id) == []
        assert job.id not in [j.id for j in wasmbot.store.recent(100)]
        assert not artifact(wasmbot, job.id).exists()
    assert not (orphans / "0ld0rphan000").exists() and (orphans / "n3w0rphan000").is_dir()
    for job in kept:
        assert wasmbot.store.get(job.id) is not None and wasmbot.store.events(job.id)
    assert artifact(wasmbot, kept[0].id).is_dir() and artifact(wasmbot, kept[2].id).is_dir()
    assert {j.id for j in wasmbot.store.active()} == {kept[0].id, kept[1].id}
    assert wasmbot.store.deploys("prod") == [deploy]

    assert counts(gc(wasmbot)) == dict.fromkeys(counts(done), 0)  # nothing left to do
    assert gc(wasmbot, "--older-than", "1d")["jobs"] == 1  # the 29-day-old one


def test_disk_bound_drops_oldest_finished_artifacts_then_cache_entries(wasmbot: Wasmbot) -> None:
    jobs = [make_job(wasmbot, State.SUCCEEDED, artifact_bytes=MIB) for _ in range(3)]
    running = make_job(wasmbot, State.RUNNING, artifact_bytes=MIB)
    for n, job in enumerate([*jobs, running]):  # oldest first
        os.utime(artifact(wasmbot, job.id), (time.time() - 1000 + n,) * 2)
    data = settings_for(wasmbot).data_dir
    entry = data / "cache" / "builds" / "0123abcd"
    entry.mkdir(parents=True)
    (entry / "filter.wasm").write_bytes(b"\0" * MIB)
    (data / "sources").mkdir(exist_ok=True)
    (data / "sources" / "note").write_bytes(b"\0" * 1000)  # the rest of the directory: under 1 MiB
    total = sum(p.stat().st_size for p in data.rglob("*") if p.is_file())
    assert 5 * MIB < total < 6 * MIB

    # 1..2 MiB over: the two oldest finished jobs' artifacts go, nothing else.
    bound = {"WASMBOT_DATA_DIR_MAX_MB": str(total // MIB - 1)}
    planned = gc(wasmbot, "--dry-run", env=bound)
    assert all(artifact(wasmbot, job.id).is_dir() for job in jobs)
    done = gc(wasmbot, env=bound)
    assert counts(done) == counts(planned)
    assert done["bound_artifacts"] == 2 and done["bound_artifact_bytes"] == 2 * MIB
    assert done["cache_entries"] == 0 and done["jobs"] == 0
    assert [artifact(wasmbot, job.id).exists() for job in jobs] == [False, False, True]
    assert entry.is_dir()

    # 2..3 MiB over: the last finished job's artifacts, then the cache entry; never the running job's.
    total -= 2 * MIB
    bound = {"WASMBOT_DATA_DIR_MAX_MB": str(total // MIB - 2)}
    planned = gc(wasmbot, "--dry-run", env=bound)
    done = gc(wasmbot, env=bound)
    assert counts(done) == counts(planned)
    assert (done["bound_artifacts"], done["cache_entries"], done["cache_bytes"]) == (1, 1, MIB)
    assert not artifact(wasmbot, jobs[2].id).exists() and not entry.exists()
    assert artifact(wasmbot, running.id).is_dir()
    assert all(wasmbot.store.get(job.id) is not None for job in jobs)  # records are not the bound's


@pytest.mark.parametrize("wasmbot", ["sqlite"], indirect=True)
def test_sqlite_store_gives_space_back_after_a_large_prune(wasmbot: Wasmbot) -> None:
    job = make_job(wasmbot, State.SUCCEEDED)
    for _ in range(2000):
        wasmbot.store.log(job.id, "build", "x" * 1000)
    set_age(wasmbot, job.id, 40 * DAY)
    events = len(wasmbot.store.events(job.id))
    path = settings_for(wasmbot).data_dir / "jobs.sqlite"
    assert isinstance(wasmbot.store, SqliteStore)
    wasmbot.store._connect().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = path.stat().st_size
    done = gc(wasmbot)
    assert done["jobs"] == 1 and done["events"] == events > 2000
    assert done["reclaimed_bytes"] > 1_500_000 and path.stat().st_size < before - 1_500_000


def test_older_than_must_be_a_duration(wasmbot_cli: Any) -> None:
    proc = wasmbot_cli("gc", "--older-than", "a week")
    assert proc.returncode == 2
    assert "--older-than: duration 'a week': give a number with s, m, h, d or w" in proc.stderr


def test_one_worker_at_a_time_runs_the_store_pass(wasmbot: Wasmbot) -> None:
    settings = settings_for(wasmbot).model_copy(update={"gc_interval": 60.0})
    first = retention.periodic(settings, wasmbot.store, "host:1")
    assert first is not None
    assert retention.periodic(settings, wasmbot.store, "host:2") is None  # both leases are held
    assert retention.periodic(settings, wasmbot.store, "host:1") is not None  # the holder goes on


def test_a_worker_prunes_periodically(wasmbot: Wasmbot) -> None:
    wasmbot.env.update(WASMBOT_GC_INTERVAL="1", WASMBOT_RETENTION_DAYS="1")
    first = make_job(wasmbot, State.FAILED, age=2 * DAY, artifact_bytes=10)
    wasmbot.start_worker()

    def wait_gone(job: Job, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while wasmbot.store.get(job.id) is not None or artifact(wasmbot, job.id).exists():
            assert time.monotonic() < deadline, f"job {job.id} was not pruned in {timeout}s"
            time.sleep(0.2)  # the store has no event for a deletion: poll it

    wait_gone(first)
    second = make_job(wasmbot, State.SUCCEEDED, artifact_bytes=10)
    young = make_job(wasmbot, State.SUCCEEDED, artifact_bytes=10)
    set_age(wasmbot, second.id, 2 * DAY)  # aged after the first pass: only a later one prunes it
    wait_gone(second)
    assert wasmbot.store.get(young.id) is not None and artifact(wasmbot, young.id).is_dir()
