"""Benchmark: `wasmbot run` submit to job done for examples/hello-c, split per stage.

    python3 bench/pipeline.py [--runs 5]

It starts a registry, a Redis server and one warm worker per backend (embedded SQLite,
Redis), submits the example build to each in turn, and prints the median per stage (queue wait
and run time) and end to end (from starting `wasmbot run --detach` to the job's end), with
the SQLite/Redis ratio measured in the same run.  Target: the embedded default within 1.5x.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.localservices import start_redis, start_registry, stop  # noqa: E402
from workers.jobs import Job, State  # noqa: E402
from workers.store import JobStore, RedisStore, SqliteStore  # noqa: E402


def toolchain_image() -> str:
    out = subprocess.run(["bash", str(ROOT / "deploy/toolchains/build-image.sh"), "c"],
                         capture_output=True, text=True, check=True).stdout
    return out.strip().splitlines()[-1]


def wait_done(store: JobStore, job_id: str) -> Job:
    seen = 0
    while True:
        for event in store.events(job_id, after=seen, timeout=5):
            seen = event.seq
        job = store.get(job_id)
        if job is not None and job.state.finished:
            return job


class Backend:
    """One backend's warm worker, and the per-stage figures of the jobs it ran."""

    def __init__(self, name: str, env: dict[str, str], store: JobStore, registry: str) -> None:
        self.name, self.env, self.store, self.registry = name, env, store, registry
        self.rows: dict[str, list[float]] = {}
        self.worker = subprocess.Popen([sys.executable, "-m", "bot.cli", "worker", "--concurrency", "1"],
                                       env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)

    def run(self, i: int, counted: bool) -> None:
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "bot.cli", "run", "--detach",
             f"/wasm build examples/hello-c --tag {self.registry}/bench-{self.name}:r{i}"],
            env=self.env, cwd=ROOT, capture_output=True, text=True, check=True)
        job_id = re.search(r"job ([0-9a-f]{12})", proc.stdout).group(1)  # type: ignore[union-attr]
        job = wait_done(self.store, job_id)
        total = time.monotonic() - started
        if job.state is not State.SUCCEEDED:
            raise SystemExit(f"{self.name}: job {job_id} {job.state.value}")
        if not counted:
            return
        self.rows.setdefault("end to end", []).append(total)
        queued = job.created_at
        for stage in job.stages:
            assert stage.started_at and stage.finished_at
            waited = stage.started_at - (stage.queued_at or queued)
            self.rows.setdefault(f"{stage.name} wait", []).append(waited)
            self.rows.setdefault(f"{stage.name} run", []).append(stage.finished_at - stage.started_at)

    def stop(self) -> None:
        # SIGTERM to the main process only: a warm shutdown.  Signalling the whole group kills
        # the pool's child first, and billiard's pool can then hang in its own shutdown.
        stop([self.worker], timeout=60)

    def medians(self) -> dict[str, float]:
        return {key: statistics.median(values) for key, values in self.rows.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    image = toolchain_image()
    with tempfile.TemporaryDirectory(prefix="wasmbot-bench-") as tmp:
        work = Path(tmp)
        registry = start_registry(work / "registry")
        redis = start_redis(work / "redis")
        host = registry.url.removeprefix("http://").replace("127.0.0.1", "localhost")
        base = {k: v for k, v in os.environ.items() if not k.startswith("WASMBOT_") and k != "REDIS_URL"}
        base.update(WASMBOT_TOOLCHAIN_IMAGES=json.dumps({"c": image}), WASMBOT_CONFIG=str(work / "none.toml"))
        backends = [
            Backend("sqlite", base | {"WASMBOT_DATA_DIR": str(work / "sqlite")},
                    SqliteStore(_mk(work / "sqlite") / "jobs.sqlite"), host),
            Backend("redis", base | {"WASMBOT_DATA_DIR": str(work / "redis-data"), "REDIS_URL": redis.url},
                    RedisStore(redis.url), host),
        ]
        try:
            # Interleaved, job by job, so that a change in the machine's load hits both alike;
            # the first job of each warms its worker and is not counted.
            for i in range(args.runs + 1):
                for backend in backends:
                    backend.run(i, counted=i > 0)
        finally:
            for backend in backends:
                backend.stop()
            registry.stop()
            redis.stop()
        results = {backend.name: backend.medians() for backend in backends}
    print(f"wasmbot pipeline, examples/hello-c, median of {args.runs} runs (seconds)")
    print(f"{'':<14}{'sqlite':>10}{'redis':>10}{'sqlite/redis':>14}")
    for key in results["sqlite"]:
        a, b = results["sqlite"][key], results["redis"][key]
        print(f"{key:<14}{a:>10.3f}{b:>10.3f}{(a / b if b else float('nan')):>14.2f}")


def _mk(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


if __name__ == "__main__":
    main()
