"""`wasmbot serve` under slow and oversized clients: a real process on loopback, 1,200
slow-loris connections (more than its connection cap), bodies over each webhook's limit, and a
body that never arrives."""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import socket
import time
import urllib.parse
import uuid
from collections.abc import Iterator

import aiohttp
import psutil
import pytest
import requests
from conftest import TESTDATA, Wasmbot, front_ends
from githubapi import webhook_headers
from slackapi import SlackStandIn, signed_headers

from bot.serving import SPARE_FDS

SLOW = 1200
HEADER_TIMEOUT = 3.0
BODY_TIMEOUT = 2.0
LIMIT = 1024  # the default web_max_connections: fewer than the slow clients, so some are evicted


@pytest.fixture(params=["uvloop", "asyncio"])
def served(request: pytest.FixtureRequest, wasmbot: Wasmbot) -> Iterator[tuple[str, SlackStandIn, int]]:
    """The server on each event loop it can run on (``web_event_loop``): the limits are the
    guard's and aiohttp's, and hold on both."""
    loop = request.param
    with front_ends(wasmbot, {"WASMBOT_WEB_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
                              "WASMBOT_WEB_BODY_TIMEOUT": str(BODY_TIMEOUT),
                              "WASMBOT_WEB_EVENT_LOOP": loop}) as (url, slack, process):
        assert f"serving on {url} (event loop: {loop})" in (wasmbot.workdir / "serve.log").read_text()
        yield url, slack, process.pid


def help_command(slack: SlackStandIn) -> tuple[bytes, dict[str, str]]:
    fields = json.loads((TESTDATA / "slack" / "slash_command.json").read_text())
    fields.update(command="/wasm", text="help", trigger_id=uuid.uuid4().hex,
                  response_url=slack.response_url(f"commands/{uuid.uuid4().hex}"))
    body = urllib.parse.urlencode(fields)
    return body.encode(), signed_headers(body, "application/x-www-form-urlencoded")


async def _trickle(writer: asyncio.StreamWriter, head: bytes) -> None:
    """A request head sent one byte every 0.2 s, never finished."""
    with contextlib.suppress(ConnectionError):
        for byte in head * 100:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.2)


async def _closed(reader: asyncio.StreamReader) -> None:
    """Return once the server has closed the connection (EOF or reset)."""
    with contextlib.suppress(ConnectionError):
        while await reader.read(65536):
            pass


async def _slow_loris(url: str, slack: SlackStandIn, pid: int) -> None:
    port = urllib.parse.urlsplit(url).port
    opened = time.monotonic()
    connections = [await asyncio.open_connection("127.0.0.1", port) for _ in range(SLOW)]
    head = b"POST /slack/events HTTP/1.1\r\nHost: wasmbot\r\nX-Slow: "
    tricklers = []
    for i, (_reader, writer) in enumerate(connections):
        if i % 3 == 0:
            tricklers.append(asyncio.create_task(_trickle(writer, head)))
        elif i % 3 == 1:
            writer.write(head)  # a partial head, then nothing
    async with aiohttp.ClientSession() as session:
        # The acceptance limits of issue 16: answered before these deadlines, or the request fails.
        async with session.get(f"{url}/healthz", timeout=aiohttp.ClientTimeout(total=1)) as answer:
            assert answer.status == 200
        # Accepted in order, so every slow connection has been taken in or evicted by now.
        assert psutil.Process(pid).num_fds() <= LIMIT + SPARE_FDS
        body, headers = help_command(slack)
        async with session.post(f"{url}/slack/events", data=body, headers=headers,
                                timeout=aiohttp.ClientTimeout(total=3)) as answer:
            assert answer.status == 200
            assert "wasmbot commands" in (await answer.json())["text"]
    # Every slow connection is closed by the server: the evicted ones at once, the rest when
    # their header timeout runs out.
    left = opened + HEADER_TIMEOUT + 10 - time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(_closed(reader) for reader, _ in connections)), left)
    for task in tricklers:
        task.cancel()
    for _, writer in connections:
        writer.close()


@pytest.mark.parametrize("wasmbot", ["sqlite"], indirect=True)
def test_slow_loris_connections_are_closed_and_do_not_block_others(served: tuple[str, SlackStandIn, int]) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < SLOW + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(SLOW + 256, hard), hard))
    asyncio.run(_slow_loris(*served))


@pytest.mark.parametrize("wasmbot", ["sqlite"], indirect=True)
def test_oversized_bodies_get_413_with_the_limit(served: tuple[str, SlackStandIn, int]) -> None:
    url, _slack, _pid = served
    big = b"x" * (2**20 + 1)
    slack = requests.post(f"{url}/slack/events", data=big, timeout=30,
                          headers=signed_headers(big.decode(), "application/x-www-form-urlencoded"))
    assert slack.status_code == 413 and "limit of 1048576 bytes" in slack.text
    chunked = requests.post(f"{url}/slack/events", data=iter([big[:2**19], big[2**19:]]), timeout=30,
                            headers={"Content-Type": "application/json"})  # no Content-Length
    assert chunked.status_code == 413 and "limit of 1048576 bytes" in chunked.text
    huge = b"[" * (25 * 2**20 + 1)
    github = requests.post(f"{url}/github/webhook", data=huge, timeout=60,
                           headers=webhook_headers("push", huge, delivery=str(uuid.uuid4()), payload=False))
    assert github.status_code == 413 and f"limit of {25 * 2**20} bytes" in github.json()["message"]


@pytest.mark.parametrize("wasmbot", ["sqlite"], indirect=True)
def test_a_body_that_stops_arriving_gets_408(served: tuple[str, SlackStandIn, int]) -> None:
    url, _slack, _pid = served
    port = urllib.parse.urlsplit(url).port
    assert port is not None
    with socket.create_connection(("127.0.0.1", port), timeout=BODY_TIMEOUT + 10) as conn:
        conn.sendall(b"POST /github/webhook HTTP/1.1\r\nHost: wasmbot\r\nContent-Type: application/json\r\n"
                     b"X-GitHub-Event: push\r\nX-GitHub-Delivery: slow\r\nContent-Length: 1000\r\n\r\n{")
        answer = conn.recv(65536).decode()
    assert answer.startswith("HTTP/1.1 408") and f"did not arrive within {BODY_TIMEOUT:g} s" in answer
