"""Benchmark: GitHub webhook acknowledgement throughput of `wasmbot serve` beside a bare aiohttp handler.

    python3 bench/github.py [--requests 4000] [--concurrency 20] [--rounds 3] [--tree PATH]
                            [--event-loop uvloop|asyncio]

A server replica must keep up with a busy organisation's deliveries.  This posts signed
``issue_comment`` deliveries of a pull request comment without a command (verified,
de-duplicated, routed, counted; nothing to do) to one `wasmbot serve` whose store is a real
``redis-server``, ``--concurrency`` clients at a time over keep-alive connections, each with
its own ``X-GitHub-Delivery``.  The same-run baseline is a bare aiohttp handler
(bench/serving.py) that reads the same body and answers the same JSON, on the event loop
`wasmbot serve` runs on by default (uvloop; ``--event-loop asyncio`` for asyncio's own), so
that the two differ in the work they do, not in the loop they do it on.  Rounds alternate
between the two so that load changes on the machine hit both alike.  Figures: requests per
second, p50 and p99 milliseconds, the server process's CPU time per request (user + system,
which other load on the machine changes little) and the ratio of the throughputs.  ``--tree`` serves another
checkout (e.g. the code before a change) for a before/after figure.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import statistics
import sys
import tempfile
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

from githubapi import WEBHOOK_SECRET, webhook_headers  # noqa: E402
from serving import bare, post_deliveries, serve  # noqa: E402
from webhook import comment, stand_in  # noqa: E402

from bot.localservices import start_redis  # noqa: E402
from workers.config import Settings  # noqa: E402

DEFAULT_LOOP = Settings.model_fields["web_event_loop"].default


def listener(url: str) -> psutil.Process:
    """The process listening on ``url``'s port (the server, not the launcher)."""
    port = int(url.split("/")[2].rsplit(":", 1)[1])
    pid = next(c.pid for c in psutil.net_connections("tcp")
               if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port)
    assert pid is not None, f"no process listens on {url}"
    return psutil.Process(pid)


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000, help="deliveries per round and server")
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tree", type=Path, default=ROOT, help="the checkout to serve (default: this one)")
    parser.add_argument("--event-loop", choices=("uvloop", "asyncio"), default=DEFAULT_LOOP,
                        help=f"the bare handler's event loop (default: {DEFAULT_LOOP}, as wasmbot serve's)")
    args = parser.parse_args()
    api, settings = stand_in()
    try:
        raw = json.dumps(comment(api, "looks good to me")).encode()
        headers = webhook_headers("issue_comment", raw, delivery="checked-against-the-schema")
        assert headers["X-Hub-Signature-256"].endswith(hmac.new(WEBHOOK_SECRET.encode(), raw,
                                                                hashlib.sha256).hexdigest())
        with tempfile.TemporaryDirectory(prefix="wasmbot-bench-github-") as tmp:
            redis = start_redis(Path(tmp) / "redis")
            try:
                with serve(tmp, args.tree, settings | {"REDIS_URL": redis.url}) as served, \
                        bare(tmp, args.event_loop) as baseline:
                    targets = {"bare aiohttp": f"{baseline}/github/webhook",
                               "wasmbot serve": f"{served}/github/webhook"}
                    servers = {name: listener(url) for name, url in targets.items()}
                    client, store = psutil.Process(), psutil.Process(redis.process.pid)
                    results = {name: Result() for name in targets}
                    for url in targets.values():  # warm up
                        warm_up = min(500, args.requests)
                        asyncio.run(post_deliveries([url], raw, headers, warm_up, args.concurrency))
                    for _ in range(args.rounds):
                        for name, url in targets.items():
                            before = [cpu_seconds(p) for p in (servers[name], client, store)]
                            seconds, took = asyncio.run(post_deliveries([url], raw, headers, args.requests,
                                                             args.concurrency))
                            after = [cpu_seconds(p) for p in (servers[name], client, store)]
                            spent = (b - a for a, b in zip(before, after, strict=True))
                            results[name].add(seconds, took, *spent)
                    report(args, raw, results)
            finally:
                redis.stop()
    finally:
        api.stop()


class Result:
    """One server's rounds added up: wall seconds, each request's ms, and the CPU seconds of the
    server, the client and Redis (all three share the machine's cores)."""

    def __init__(self) -> None:
        self.seconds, self.took = 0.0, list[float]()
        self.cpu, self.client_cpu, self.redis_cpu = 0.0, 0.0, 0.0

    def add(self, seconds: float, took: list[float], cpu: float, client_cpu: float, redis_cpu: float) -> None:
        self.seconds, self.took = self.seconds + seconds, self.took + took
        self.cpu, self.client_cpu = self.cpu + cpu, self.client_cpu + client_cpu
        self.redis_cpu += redis_cpu


def report(args: argparse.Namespace, raw: bytes, results: dict[str, Result]) -> None:
    print(f"{args.tree}: issue_comment without a command ({len(raw)} bytes), Redis store; "
          f"{args.rounds} x {args.requests} deliveries per server, {args.concurrency} at a time; "
          f"bare aiohttp on {args.event_loop}; "
          f"load average {' '.join(f'{x:.1f}' for x in psutil.getloadavg())}")
    print(f"{'server':<16}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'server CPU us/req':>19}"
          f"{'client CPU':>12}{'Redis CPU':>11}")
    rates = {}
    for name, result in results.items():
        ordered = sorted(result.took)
        n = len(ordered)
        rates[name] = n / result.seconds
        print(f"{name:<16}{rates[name]:>9.0f}{statistics.median(ordered):>9.1f}"
              f"{ordered[int(n * 0.99) - 1]:>9.1f}{result.cpu / n * 1e6:>19.0f}"
              f"{result.client_cpu / n * 1e6:>12.0f}{result.redis_cpu / n * 1e6:>11.0f}")
    print(f"wasmbot serve / bare aiohttp: {rates['wasmbot serve'] / rates['bare aiohttp']:.2f}x")


if __name__ == "__main__":
    main()
