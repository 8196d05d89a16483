"""The servers the web benchmarks measure, each ready when it answers and stopped on exit:
one `wasmbot serve` in a clean environment, and a bare aiohttp handler (the same-run
baseline for what aiohttp itself costs on this machine)."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import requests

from bot.localservices import Service, _wait_until, free_port


@contextmanager
def _running(name: str, argv: list[str], env: dict[str, str], cwd: Path, log: Path,
             probe: str) -> Iterator[str]:
    """Run ``argv`` (a server on a free port, appended as its last argument) until the block
    ends; yield its URL once ``GET probe`` answers."""
    port = free_port()
    process = subprocess.Popen([*argv, str(port)], env=env, cwd=cwd, stdout=log.open("wb"),
                               stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        def ready() -> bool:
            try:
                return requests.get(f"{url}{probe}", timeout=1).ok
            except requests.ConnectionError:
                return False
        _wait_until(ready, Service(name, process, url, log), timeout=30)
        yield url
    finally:
        process.terminate()
        process.wait(30)


@contextmanager
def serve(tmp: str, tree: Path, settings: dict[str, str]) -> Iterator[str]:
    """Serve checkout ``tree`` with data in ``tmp`` and only ``settings`` configured (none of
    this shell's wasmbot, Slack, GitHub or Redis variables); yield its URL."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("WASMBOT_", "GITHUB_", "SLACK_")) and k != "REDIS_URL"}
    env |= {"WASMBOT_DATA_DIR": tmp, "WASMBOT_CONFIG": f"{tmp}/none.toml", "PYTHONPATH": str(tree)}
    env |= settings
    with _running("wasmbot serve", [sys.executable, "-m", "bot.cli", "serve", "--port"], env, tree,
                  Path(tmp) / "serve.log", "/healthz") as url:
        yield url


@contextmanager
def bare(tmp: str, event_loop: str) -> Iterator[str]:
    """A bare aiohttp handler (this file run as a program): ``POST /github/webhook`` reads the
    body and answers JSON, as `wasmbot serve` does, and nothing else, on ``event_loop`` (uvloop
    or asyncio); yield its URL."""
    env = os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    with _running("bare aiohttp", [sys.executable, __file__, event_loop], env, Path(tmp),
                  Path(tmp) / "bare.log", "/healthz") as url:
        yield url


def _bare_main(event_loop: str, port: int) -> None:
    import uvloop
    from aiohttp import web

    async def handler(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"ok": True, "message": "handled"})

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_post("/github/webhook", handler)
    app.router.add_get("/healthz", healthz)
    loop = uvloop.new_event_loop() if event_loop == "uvloop" else asyncio.new_event_loop()
    web.run_app(app, host="127.0.0.1", port=port, print=None, loop=loop)


if __name__ == "__main__":
    _bare_main(sys.argv[1], int(sys.argv[2]))


async def post_deliveries(urls: list[str], raw: bytes, headers: dict[str, str], n: int,
                          clients: int) -> tuple[float, list[float]]:
    """Post ``n`` signed deliveries of ``raw`` (each its own ``X-GitHub-Delivery``), ``clients``
    at a time, round-robin over ``urls``; the seconds taken and each one's milliseconds."""
    ids = iter([str(uuid.uuid4()) for _ in range(n)])
    targets = itertools.cycle(urls)
    took: list[float] = []

    async def client(session: aiohttp.ClientSession) -> None:
        for delivery in ids:
            url = next(targets)
            started = time.perf_counter()
            sent = headers | {"X-GitHub-Delivery": delivery}
            async with session.post(url, data=raw, headers=sent) as answer:
                body = await answer.read()
            took.append((time.perf_counter() - started) * 1000)
            if answer.status != 200 or b'"handled"' not in body:
                raise SystemExit(f"{url} answered {answer.status}: {body[:200]!r}")

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        return time.perf_counter() - started, took
