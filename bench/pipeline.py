"""Benchmark: `wasmbot run` submit to job done for examples/hello-c, split per stage.

    python3 bench/pipeline.py [--runs 5]

For each backend (embedded SQLite, Redis) it starts a registry, a Redis server and one warm
worker, submits the example build several times, and prints the median per stage (queue wait
and run time) and end to end, with the Redis/SQLite ratio measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.localservices import start_redis, start_registry  # noqa: E402
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


def measure(name: str, env: dict[str, str], store: JobStore, registry: str, runs: int) -> dict[str, float]:
    worker = subprocess.Popen([sys.executable, "-m", "bot.cli", "worker", "--concurrency", "1"],
                              env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    rows: dict[str, list[float]] = {}
    try:
        for i in range(runs + 1):  # the first run warms the worker and is not counted
            started = time.monotonic()
            proc = subprocess.run(
                [sys.executable, "-m", "bot.cli", "run", "--detach",
                 f"/wasm build examples/hello-c --tag {registry}/bench-{name}:r{i}"],
                env=env, cwd=ROOT, capture_output=True, text=True, check=True)
            job_id = re.search(r"job ([0-9a-f]{12})", proc.stdout).group(1)  # type: ignore[union-attr]
            job = wait_done(store, job_id)
            total = time.monotonic() - started
            if job.state is not State.SUCCEEDED:
                raise SystemExit(f"{name}: job {job_id} {job.state.value}")
            if i == 0:
                continue
            rows.setdefault("end to end", []).append(total)
            queued = job.created_at
            for stage in job.stages:
                assert stage.started_at and stage.finished_at
                waited = stage.started_at - (stage.queued_at or queued)
                rows.setdefault(f"{stage.name} wait", []).append(waited)
                rows.setdefault(f"{stage.name} run", []).append(stage.finished_at - stage.started_at)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait()
    return {key: statistics.median(values) for key, values in rows.items()}


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
        try:
            results = {
                "sqlite": measure("sqlite", base | {"WASMBOT_DATA_DIR": str(work / "sqlite")},
                                  SqliteStore(_mk(work / "sqlite") / "jobs.sqlite"), host, args.runs),
                "redis": measure("redis", base | {"WASMBOT_DATA_DIR": str(work / "redis-data"),
                                                  "REDIS_URL": redis.url},
                                 RedisStore(redis.url), host, args.runs),
            }
        finally:
            registry.stop()
            redis.stop()
    print(f"wasmbot pipeline, examples/hello-c, median of {args.runs} runs (seconds)")
    print(f"{'':<14}{'sqlite':>10}{'redis':>10}{'redis/sqlite':>14}")
    for key in results["sqlite"]:
        a, b = results["sqlite"][key], results["redis"][key]
        print(f"{key:<14}{a:>10.3f}{b:>10.3f}{(b / a if a else float('nan')):>14.2f}")


def _mk(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


if __name__ == "__main__":
    main()
