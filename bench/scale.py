"""Benchmark: how wasmbot scales out, in workers and in server replicas.

    python3 bench/scale.py [--quick] [--jobs 120] [--concurrency 1] [--processes 1,2,4]
                           [--replicas 1,2] [--requests 3000] [--clients 20] [--rounds 2]

Workers: ``--jobs`` jobs of ``/wasm test examples/hello-c`` (a build served from the build
cache, then its ABI tests under wasmtime) are submitted at once to 1, 2 and 4 real ``wasmbot
worker`` processes (each with ``--concurrency`` Celery processes) on one real ``redis-server``,
sharing one data directory as workers on one host do; the figure is jobs per minute from the
first submit to the last job's end, the ratio to 1 worker in the same run, each stage's
median run time, and the workers' resident memory.

Servers: signed GitHub ``issue_comment`` deliveries without a command (verified, de-duplicated,
routed; bench/github.py's request) are posted by ``--clients`` concurrent clients, round-robin
over 1 and 2 ``wasmbot serve`` replicas on the same Redis; the figures are deliveries per
second, p50 and p99 milliseconds, the ratio to 1 replica, and each replica's resident memory.

Rounds alternate between the set-ups so that load changes on the machine hit all alike.  The
machine's core count is measured and printed: the benchmark client, Redis, the workers and the
servers all share those cores, so scaling past that many busy processes is bounded by them,
not by wasmbot.  ``--quick`` (a few minutes): fewer jobs, deliveries and rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
# bench/github.py would shadow PyGithub, which the workers import: import it before bench/ is on
# the path.
sys.path[:] = [str(ROOT), str(ROOT / "tests"),
               *(p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench")]
import github  # noqa: E402, F401

sys.path.append(str(ROOT / "bench"))

from githubapi import webhook_headers  # noqa: E402
from serving import post_deliveries, serve  # noqa: E402
from webhook import comment, stand_in  # noqa: E402

from bot.localservices import Service, _wait_until, start_redis, stop  # noqa: E402

SOURCE = "examples/hello-c"


def cores() -> int:
    return len(os.sched_getaffinity(0))


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (a worker's pool processes), in MiB."""
    main = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [main, *main.children(recursive=True)]) / 2**20


def toolchain_image() -> str:
    out = subprocess.run(["bash", str(ROOT / "deploy/toolchains/build-image.sh"), "c"],
                         capture_output=True, text=True, check=True).stdout
    return out.strip().splitlines()[-1]


class Cluster:
    """The submitting side: wasmbot's settings for one Redis and data directory, in this process."""

    def __init__(self, env: dict[str, str]) -> None:
        os.environ.update(env)
        from workers import celery_app
        from workers.config import load_settings
        from workers.pipeline import store

        self.env = env
        self.settings = load_settings()
        celery_app.configure(self.settings)
        self.store = store()

    def submit(self, n: int) -> list[str]:
        from bot.dispatch import Request, Requester, dispatch
        from bot.permissions import Principal
        from workers import commands

        text = f"/wasm test {SOURCE}"
        user = getpass.getuser()

        async def one() -> str:
            request = Request(commands.parse(text), text, Requester("cli", user, Principal(user)),
                              origin="cli", source_root=str(ROOT))
            reply = await dispatch(self.settings, request)
            if reply.job is None:
                raise SystemExit(f"{text}: {reply.text}")
            return reply.job.id

        async def all_of() -> list[str]:
            return [await one() for _ in range(n)]

        return asyncio.run(all_of())

    def wait(self, job_ids: list[str]) -> dict[str, list[float]]:
        """Wait for the jobs to succeed; each stage's run times in seconds."""
        from workers.jobs import State

        runs: dict[str, list[float]] = {}
        for job_id in job_ids:
            seen = 0
            while True:
                job = self.store.get(job_id)
                if job is not None and job.state.finished:
                    if job.state is not State.SUCCEEDED:
                        raise SystemExit(f"job {job_id} {job.state.value}: see the workers' logs")
                    for stage in job.stages:
                        assert stage.started_at and stage.finished_at
                        runs.setdefault(stage.name, []).append(stage.finished_at - stage.started_at)
                    break
                for event in self.store.events(job_id, after=seen, timeout=5):
                    seen = event.seq
        return runs


@contextmanager
def workers(cluster: Cluster, n: int, concurrency: int, logs: Path) -> Iterator[list[int]]:
    """``n`` real `wasmbot worker` processes, yielded (their pids) once all are live in the store."""
    before = set(cluster.store.live_workers())
    procs, paths = [], []
    for i in range(n):
        paths.append(logs / f"worker-{n}-{i}-{time.monotonic_ns()}.log")
        with paths[-1].open("wb") as log:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "bot.cli", "worker", "--concurrency", str(concurrency)],
                env=os.environ | cluster.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT))
    try:
        def live() -> bool:
            return len(set(cluster.store.live_workers()) - before) >= n
        _wait_until(live, Service("wasmbot worker", procs[0], "", paths[0]), timeout=60)
        yield [proc.pid for proc in procs]
    finally:
        pool = [kid for proc in procs if proc.poll() is None
                for kid in psutil.Process(proc.pid).children(recursive=True)]
        stop(procs, timeout=60)  # the main processes only: a warm shutdown (see bench/pipeline.py)
        _, alive = psutil.wait_procs(pool, timeout=30)  # no pool process outlives its worker
        for kid in alive:
            kid.kill()


def measure_workers(cluster: Cluster, n: int, args: argparse.Namespace,
                    logs: Path) -> tuple[float, dict[str, list[float]]]:
    """Jobs per minute of ``args.jobs`` cached test jobs on ``n`` workers (after a warm-up), and
    their stages' run times; ``memory`` holds each worker's resident MiB after the jobs."""
    with workers(cluster, n, args.concurrency, logs) as pids:
        cluster.wait(cluster.submit(2 * n * args.concurrency))  # each process imports and warms up
        started = time.perf_counter()
        runs = cluster.wait(cluster.submit(args.jobs))
        rate = args.jobs / (time.perf_counter() - started) * 60
        runs["memory"] = [rss_mb(pid) for pid in pids]
        return rate, runs


def bench_workers(args: argparse.Namespace, work: Path,
                  redis_url: str) -> tuple[dict[int, list[float]], dict[str, list[float]]]:
    env = {"REDIS_URL": redis_url, "WASMBOT_DATA_DIR": str(work / "data"),
           "WASMBOT_CONFIG": str(work / "none.toml"),
           "WASMBOT_TOOLCHAIN_IMAGES": json.dumps({"c": toolchain_image()})}
    for name in [k for k in os.environ if k.startswith(("WASMBOT_", "SLACK_", "GITHUB_"))]:
        del os.environ[name]
    cluster = Cluster(env)
    logs = work / "logs"
    logs.mkdir()
    with workers(cluster, 1, 1, logs):  # the cold build, which fills the build cache
        cluster.wait(cluster.submit(1))
    rates: dict[int, list[float]] = {n: [] for n in args.processes}
    runs: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for n in args.processes:
            rate, took = measure_workers(cluster, n, args, logs)
            rates[n].append(rate)
            for stage, values in took.items():
                runs.setdefault(stage, []).extend(values)
            print(f"  {n} worker(s): {rate:.0f} jobs/min", file=sys.stderr, flush=True)
    return rates, runs


def bench_servers(args: argparse.Namespace, work: Path, redis_url: str,
                  memory: list[float]) -> dict[int, tuple[float, list[float]]]:
    """Deliveries per replica count; ``memory`` gets each replica's resident MiB at the end."""
    api, settings = stand_in()
    try:
        raw = json.dumps(comment(api, "looks good to me")).encode()
        headers = webhook_headers("issue_comment", raw, delivery="replaced-per-request")
        results: dict[int, tuple[float, list[float]]] = {n: (0.0, []) for n in args.replicas}
        with ExitStack() as stack:
            urls = []
            for i in range(max(args.replicas)):
                data = work / f"server-{i}"
                data.mkdir()
                served = stack.enter_context(serve(str(data), ROOT, settings | {"REDIS_URL": redis_url}))
                urls.append(f"{served}/github/webhook")
            for n in args.replicas:  # warm up
                asyncio.run(post_deliveries(urls[:n], raw, headers, min(500, args.requests), args.clients))
            ports = {url.split(":")[2].split("/")[0] for url in urls}  # `serve --port N`
            servers = [p for p in psutil.Process().children()
                       if p.cmdline() and p.cmdline()[-1] in ports]
            for _ in range(args.rounds):
                for n in args.replicas:
                    seconds, took = asyncio.run(
                        post_deliveries(urls[:n], raw, headers, args.requests, args.clients))
                    results[n] = (results[n][0] + seconds, results[n][1] + took)
                    print(f"  {n} replica(s): {len(took) / seconds:.0f} deliveries/s",
                          file=sys.stderr, flush=True)
            memory.extend(rss_mb(p.pid) for p in servers)
        return results
    finally:
        api.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer jobs, deliveries and rounds")
    parser.add_argument("--jobs", type=int, default=120, help="cached test jobs per measurement")
    parser.add_argument("--concurrency", type=int, default=1, help="Celery processes per worker")
    parser.add_argument("--processes", default="1,2,4", help="worker processes to compare")
    parser.add_argument("--replicas", default="1,2", help="server replicas to compare")
    parser.add_argument("--requests", type=int, default=3000, help="deliveries per measurement")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--skip", choices=["workers", "servers"], help="leave one half out")
    args = parser.parse_args()
    if args.quick:
        args.jobs, args.requests, args.rounds = 40, 1000, 1
    args.processes = [int(n) for n in args.processes.split(",")]
    args.replicas = [int(n) for n in args.replicas.split(",")]
    with tempfile.TemporaryDirectory(prefix="wasmbot-bench-scale-") as tmp:
        work = Path(tmp)
        redis = start_redis(work / "redis")
        try:
            rates, runs = bench_workers(args, work, redis.url) if args.skip != "workers" else ({}, {})
            memory: list[float] = []
            served = bench_servers(args, work, redis.url, memory) if args.skip != "servers" else {}
        finally:
            redis.stop()
    report(args, rates, runs, served, memory)


def report(args: argparse.Namespace, rates: dict[int, list[float]], runs: dict[str, list[float]],
           served: dict[int, tuple[float, list[float]]], memory: list[float]) -> None:
    n = cores()
    load1 = os.getloadavg()[0]
    print(f"machine: {n} cores (os.sched_getaffinity), load average {load1:.1f} at the end; the client, "
          f"Redis, workers and servers share them, so scaling past {n} busy processes is bounded by cores")
    if rates:
        print(f"\nworkers: {args.jobs} x `/wasm test {SOURCE}` (build cache hit + ABI tests), submitted "
              f"at once; {args.concurrency} Celery process(es) per worker; median of {args.rounds} round(s)")
        print(f"{'workers':<10}{'processes':>10}{'jobs/min':>10}{'vs 1':>8}")
        base = statistics.median(rates[args.processes[0]])
        for count, values in rates.items():
            rate = statistics.median(values)
            print(f"{count:<10}{count * args.concurrency:>10}{rate:>10.0f}{rate / base:>7.2f}x")
        stages = {stage: values for stage, values in runs.items() if stage != "memory"}
        print("stage run time, median over all measured jobs: " + ", ".join(
            f"{stage} {statistics.median(seconds) * 1000:.0f} ms" for stage, seconds in stages.items()))
        print(f"worker memory (RSS of the worker and its pool processes) after the jobs: median "
              f"{statistics.median(runs['memory']):.0f} MiB, max {max(runs['memory']):.0f} MiB")
    if served:
        print(f"\nservers: signed issue_comment deliveries without a command, Redis store, {args.clients} "
              f"clients round-robin over the replicas; {args.rounds} x {args.requests} deliveries")
        print(f"{'replicas':<10}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'vs 1':>8}")
        base = 0.0
        for count, (seconds, took) in served.items():
            ordered = sorted(took)
            rate = len(took) / seconds
            base = base or rate
            print(f"{count:<10}{rate:>9.0f}{statistics.median(ordered):>9.1f}"
                  f"{ordered[int(len(ordered) * 0.99) - 1]:>9.1f}{rate / base:>7.2f}x")
        print(f"server memory (RSS per replica) after the deliveries: "
              f"{', '.join(f'{m:.0f}' for m in memory)} MiB")


if __name__ == "__main__":
    main()
