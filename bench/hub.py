"""Benchmark: server time of each hub page with 1,000 jobs and 500 module tags in the store.

    python3 bench/hub.py [--jobs 1000] [--tags 500] [--requests 30] [--store redis|sqlite|both]

Issue 23 asks each page to render in under 200 ms of server time with that much in the store.
This fills a real store (a redis-server of its own, or the embedded SQLite file) as wasmbot's
front ends and workers fill it: ``--jobs`` job records (a twentieth of them waiting for an
approval), 500 log lines on the job whose page is read, the module catalogue with ``--tags``
tags as bot/hub/catalogue.py keeps it, and 300 deploy records over three environments.  It then
asks wasmbot's own aiohttp application (bot.application.make_app, the hub mounted as ``wasmbot
serve`` mounts it) for each page as a signed-in viewer, one request at a time, and times the
server side: from the request reaching the application's first middleware to its response
being ready (the template rendered), store reads included.  Figures: median, p95 and max ms
per page; a page meets the 200 ms goal when its p95 is under it.  The machine's load average
is printed with them: on two shared CPUs a single request's max says more about the scheduler.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)  # not bench/: its github.py would shadow PyGithub's package

from bot.application import make_app  # noqa: E402
from bot.hub import catalogue  # noqa: E402
from bot.hub.session import COOKIE, sign_in  # noqa: E402
from bot.localservices import start_redis  # noqa: E402
from workers import commands  # noqa: E402
from workers.config import Environment, Settings  # noqa: E402
from workers.jobs import Job, Stage, State  # noqa: E402
from workers.store import JobStore, open_store  # noqa: E402

GOAL_MS = 200.0
DIGEST = "sha256:" + "ab" * 32


def job(i: int, now: float, age: float, registry: str) -> Job:
    """A finished build, or (one in twenty) a deploy to prod waiting for its approval."""
    image = f"{registry}/team/filter-{i % 9}:v{i}"
    pending = i % 20 == 0
    text = f"/wasm deploy {image} --env prod" if pending else f"/wasm build filters/f{i % 9} --tag {image}"
    made = Job(requester=f"github:user{i % 7}", origin=f"github:acme/filter-{i % 9}#{i}", source_root="/",
               created_at=now - age, text=text, command=commands.parse(text), stages=[Stage(name="deploy")])
    if pending:
        diff = "--- in the cluster now\n+++ after this deploy\n" + "+  x: y\n" * 40
        made.state = State.PENDING
        made.approval = {"action": "deploy:prod", "expires_at": str(now + 3600), "digest": DIGEST,
                         "image": f"{image}@{DIGEST}", "diff": diff}
    else:
        made.state, made.artifacts = State.SUCCEEDED, {"image": image, "digest": DIGEST}
        made.stages = [Stage(name=s, state=State.SUCCEEDED, started_at=now - 60, finished_at=now - 30)
                       for s in ("build", "test", "push")]
    return made


def fill(store: JobStore, jobs: int, tags: int, registry: str) -> str:
    """Jobs, a job log, deploy records and the module catalogue; the id of the job to read."""
    now = time.time()
    viewed = ""
    for i in range(jobs):
        made = job(i, now, jobs - i, registry)
        store.create(made)
        viewed = made.id if made.state is State.SUCCEEDED else viewed
    for n in range(500):
        store.log(viewed, "build", f"compiling unit {n}: cc -O2 -c src/unit{n}.c -o build/unit{n}.o")
    for n in range(300):
        env = ("staging", "prod", "edge")[n % 3]
        image = f"{registry}/team/filter-{n % 12}:v{n}@{DIGEST}"
        store.record_deploy({"action": "deploy", "environment": env, "filter": f"filter-{n % 12}",
                             "job": f"{n:012x}", "requester": "github:alice", "approver": "github:bob",
                             "at": str(now - 300 + n), "image": image, "digest": DIGEST[:-4] + f"{n:04x}",
                             "resource": "WasmPlugin", "root_id": "", "config": "", "intent": "{}"})
    entries = [catalogue.Entry(f"team/filter-{n % 50}", f"v{n}", DIGEST, DIGEST, "compat", ["0.2.1"],
                               [f"root_{n % 50}"], 40_000 + n, "2026-12-01T10:00:00Z", now, n % 3 == 0,
                               f"{n:012x}") for n in range(tags)]
    store.save_view(catalogue.VIEW, catalogue.Catalogue(registry, now, entries).dumps())
    return viewed


async def measure(settings: Settings, paths: list[tuple[str, str]], requests: int) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {name: [] for name, _ in paths}
    current: list[float] = []

    @web.middleware
    async def timer(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                    ) -> web.StreamResponse:
        started = time.perf_counter()
        response = await handler(request)
        current.append((time.perf_counter() - started) * 1000)
        return response

    app = make_app(settings)
    app.middlewares.insert(0, timer)
    cookie_response = web.Response()
    sign_in(cookie_response, settings, "bob", "Bob")
    headers = {"Cookie": f"{COOKIE}={cookie_response.cookies[COOKIE].value}"}
    async with TestClient(TestServer(app)) as http:
        for name, path in paths:
            for attempt in range(requests + 3):  # the first three warm the templates and connections
                current.clear()
                response = await http.get(path, headers=headers, allow_redirects=False)
                body = await response.read()
                if response.status != 200:
                    raise SystemExit(f"{path}: HTTP {response.status}: {body[:300]!r}")
                if attempt >= 3:
                    timings[name].append(current[0])
    return timings


def report(kind: str, timings: dict[str, list[float]]) -> bool:
    print(f"\n{kind} store: server ms per page (goal < {GOAL_MS:.0f} ms)")
    print(f"{'page':<14} {'median':>8} {'p95':>8} {'max':>8}  goal")
    ok = True
    for name, ms in timings.items():
        ordered = sorted(ms)
        p95 = ordered[max(0, int(len(ordered) * 0.95) - 1)]
        met = p95 < GOAL_MS  # max is printed too: on a loaded machine one request may be descheduled
        ok &= met
        print(f"{name:<14} {statistics.median(ordered):8.1f} {p95:8.1f} {ordered[-1]:8.1f}  "
              f"{'met' if met else 'MISSED'} ({statistics.median(ordered) / GOAL_MS:.2f}x of it, median)")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--tags", type=int, default=500)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--store", choices=("redis", "sqlite", "both"), default="both")
    args = parser.parse_args()
    print(f"{args.jobs} jobs, {args.tags} module tags, {args.requests} requests per page; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        for kind in (("redis", "sqlite") if args.store == "both" else (args.store,)):
            service = start_redis(Path(tmp) / "redis") if kind == "redis" else None
            try:
                settings = Settings(data_dir=Path(tmp) / kind, redis_url=service.url if service else None,
                                    default_registry="registry.bench:5000", hub_catalogue_refresh=3600,
                                    log_link_key="bench-key",  # with Redis, sessions need the shared key
                                    environments={"staging": Environment(platform="envoy")},
                                    permissions={"approve:prod": ["user:github:bob"],
                                                 "deploy:staging": ["user:github:bob"]})
                from workers import celery_app

                celery_app.configure(settings)
                job_id = fill(open_store(settings), args.jobs, args.tags, str(settings.default_registry))
                paths = [("jobs list", "/hub/jobs"), ("job page", f"/hub/jobs/{job_id}"),
                         ("modules", "/hub/modules"), ("modules q=", "/hub/modules?q=root_7"),
                         ("module repo", "/hub/modules/team/filter-7"), ("environments", "/hub/environments"),
                         ("environment", "/hub/environments/staging"), ("approvals", "/hub/approvals")]
                ok &= report(kind, asyncio.run(measure(settings, paths, args.requests)))
            finally:
                if service is not None:
                    service.stop()
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    print("every page met the goal" if ok else "some page missed the goal")


if __name__ == "__main__":
    main()
