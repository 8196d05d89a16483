"""Benchmark: how fast `wasmbot serve` acknowledges Slack's `/wasm` under load.

    python3 bench/slack.py [--requests 200] [--concurrency 20]

Slack gives an app 3 seconds to acknowledge a slash command.  This fires signed requests at a
real `wasmbot serve` (embedded store, no worker; Slack's Web API is the local stand-in from
tests/slackapi.py), ``--concurrency`` at a time: `/wasm help` (answered in the
acknowledgement) and `/wasm build` (acknowledged, then a job is queued and its message posted).
The same-run baseline is `GET /healthz` on the same server at the same concurrency.  Figures:
p50, p95 and max milliseconds, and the p95 ratio against the baseline.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

from serving import serve  # noqa: E402
from slackapi import BOT_TOKEN, SIGNING_SECRET, SlackStandIn, signed_headers  # noqa: E402

PAYLOAD = ROOT / "tests" / "testdata" / "slack" / "slash_command.json"


def measure(send: list[object], fn: object, concurrency: int) -> list[float]:
    def timed(item: object) -> float:
        started = time.perf_counter()
        fn(item)  # type: ignore[operator]
        return (time.perf_counter() - started) * 1000
    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(timed, send))


def describe(name: str, ms: list[float]) -> tuple[str, float]:
    ordered = sorted(ms)
    p95 = ordered[int(len(ordered) * 0.95) - 1]
    return (f"{name:<14} {statistics.median(ordered):8.1f} {p95:8.1f} {ordered[-1]:8.1f} "
            f"{sum(m < 3000 for m in ms) / len(ms):8.1%}"), p95


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()
    api = SlackStandIn()
    api.start()
    settings = {"WASMBOT_SOURCE_ROOT": str(ROOT), "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_API_URL": api.api_url}
    with tempfile.TemporaryDirectory(prefix="wasmbot-bench-slack-") as tmp, serve(tmp, ROOT, settings) as url:
        try:
            fields = json.loads(PAYLOAD.read_text()) | {"command": "/wasm",
                                                        "response_url": api.response_url("x")}

            def command(text: object) -> None:
                body = urllib.parse.urlencode(fields | {"text": text, "trigger_id": uuid.uuid4().hex})
                answer = requests.post(f"{url}/slack/events", data=body, timeout=30,
                                       headers=signed_headers(body, "application/x-www-form-urlencoded"))
                answer.raise_for_status()

            def health(_: object) -> None:
                requests.get(f"{url}/healthz", timeout=30).raise_for_status()

            n, c = args.requests, args.concurrency
            measure(["help"] * c, command, c)  # warm up
            print(f"wasmbot serve on {url}; {n} requests, {c} at a time")
            print(f"{'request':<14} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'< 3 s':>8}")
            line, base = describe("GET /healthz", measure([None] * n, health, c))
            print(line)
            for name, text in (("/wasm help", "help"), ("/wasm build", "build examples/hello-c")):
                line, p95 = describe(name, measure([text] * n, command, c))
                print(f"{line}   p95/baseline {p95 / base:5.1f}")
            api.wait_for(lambda stand_in: len(stand_in.called("chat.postMessage")) >= n, timeout=120)
            print(f"jobs queued and messages posted: {len(api.called('chat.postMessage'))}")
        finally:
            api.stop()


if __name__ == "__main__":
    main()
