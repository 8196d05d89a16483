"""A Redis outage while a stage runs: real redis-server stopped for 10 s and started again.

The stage must not run twice, its result must be kept, the job must end and the worker must
stay up.  Redis keeps its data across the restart (append-only file), as a production Redis
with persistence would.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from conftest import ROOT
from test_build import hostile_crate

from bot.localservices import free_port, stop
from workers.jobs import State
from workers.store import RedisStore

OUTAGE = 10.0


class PersistentRedis:
    """redis-server with an fsynced append-only file, so a restart loses nothing."""

    def __init__(self, workdir: Path) -> None:
        self.workdir, self.port = workdir, free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.workdir),
             "--save", "", "--appendonly", "yes", "--appendfsync", "always"],
            stdout=(self.workdir / "redis.log").open("ab"), stderr=subprocess.STDOUT)
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 20
        while True:
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.05)

    def stop(self) -> None:
        assert self.process is not None
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.fixture
def persistent_redis(tmp_path: Path) -> Iterator[PersistentRedis]:
    service = PersistentRedis(tmp_path)
    service.start()
    yield service
    if service.process and service.process.poll() is None:
        service.stop()


def test_a_redis_outage_during_a_stage_runs_it_once_and_the_job_ends(
        persistent_redis: PersistentRedis, source_dir: Path, tmp_path: Path) -> None:
    # lease_ttl 18 s, renewed every 6 s: the outage (10 s, from about 2 s into the stage) spans a
    # renewal, and a lease that was not renewed after it would lapse while the stage still runs.
    # A crate whose build script sleeps: a build stage that runs for 40 s.
    crate = hostile_crate(source_dir, "fn main() { std::thread::sleep(std::time::Duration::from_secs(40)); }")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WASMBOT_") and k != "REDIS_URL"}
    env.update(REDIS_URL=persistent_redis.url, WASMBOT_DATA_DIR=str(tmp_path / "data"),
               WASMBOT_CONFIG=str(tmp_path / "none.toml"), WASMBOT_LEASE_TTL="18")
    store = RedisStore(persistent_redis.url)
    logs = [tmp_path / f"worker-{i}.log" for i in range(2)]
    workers = [subprocess.Popen([sys.executable, "-m", "bot.cli", "worker", "--concurrency", "1"],
                                env=env, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT)
               for log in logs]  # the second one would take the stage over if its lease lapsed
    try:
        deadline = time.monotonic() + 60
        while len(store.live_workers()) < 2:
            assert time.monotonic() < deadline, "workers did not start"
            time.sleep(0.1)
        relative = crate.relative_to(ROOT)
        submitted = subprocess.run([sys.executable, "-m", "bot.cli", "run", "--detach", f"/wasm build {relative}"],
                                   env=env, cwd=ROOT, capture_output=True, text=True, check=True)
        job_id = submitted.stdout.split()[1]
        seen = 0
        compiling_at = None
        while compiling_at is None:  # the build container has started: the stage is running
            for event in store.events(job_id, after=seen, timeout=5):
                seen = event.seq
                if event.kind == "log" and event.text.startswith("compiling"):
                    compiling_at = time.monotonic()
        persistent_redis.stop()
        time.sleep(OUTAGE)  # the outage itself: nothing to wait for but time
        persistent_redis.start()

        deadline = time.monotonic() + 180
        while (job := store.get(job_id)) is not None and not job.state.finished:
            assert time.monotonic() < deadline, "the job did not end after the outage"
            store.events(job_id, after=len(store.events(job_id)), timeout=5)
        assert job is not None
        build = job.stage("build")
        assert build.state is State.SUCCEEDED, job.model_dump_json(indent=1)
        assert build.attempts == 1  # never taken over, never run again
        compiles = [e for e in store.events(job_id) if e.kind == "log" and e.text.startswith("compiling")]
        assert len(compiles) == 1
        assert all(w.poll() is None for w in workers), [log.read_text()[-3000:] for log in logs]
    finally:
        stop(workers, timeout=60)
