"""Group commit for Redis calls made on an event loop.

A web front end makes a round trip or two to Redis per request (its delivery's idempotency
key, its count in the deliveries metric).  Made one by one, a busy server spends most of its
time packing, sending and parsing them; here the calls made while a round trip is in flight
wait and go together, in one pipeline, in the next one.  Each caller still gets its own
reply before it answers, so nothing is acknowledged before Redis has it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import redis.asyncio

Command = Callable[[redis.asyncio.client.Pipeline], object]


class AutoPipeline:
    """Queue commands from concurrent tasks; one pipeline (not a transaction) per round trip."""

    def __init__(self, client: redis.asyncio.Redis) -> None:
        self.client = client
        self._queue: list[tuple[Command, asyncio.Future[Any]]] = []
        self._sender: asyncio.Task[None] | None = None

    def call(self, command: Command) -> asyncio.Future[Any]:
        """Queue ``command`` (a call on the pipeline, e.g. ``lambda p: p.get(key)``); await its
        reply (a future, not a coroutine: gathering several makes no task per call)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((command, future))
        if self._sender is None:
            self._sender = loop.create_task(self._send())
        return future

    async def _send(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    async with self.client.pipeline(transaction=False) as pipe:
                        for command, _ in batch:
                            command(pipe)
                        replies = await pipe.execute(raise_on_error=False)
                except Exception as exc:  # the connection: every call in the batch fails alike
                    replies = [exc] * len(batch)
                for (_, future), reply in zip(batch, replies, strict=True):
                    if future.done():  # its caller was cancelled
                        continue
                    if isinstance(reply, Exception):
                        future.set_exception(reply)
                    else:
                        future.set_result(reply)
        finally:
            self._sender = None
