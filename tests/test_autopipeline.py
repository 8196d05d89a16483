"""The event loop's group commit to a real ``redis-server`` (workers/autopipeline.py), and the
webhook's delivery counts that ride on it (bot/github/app.py ``DeliveryCounts``): each caller
gets its own reply or its own error, a dropped connection fails only its batch, and counts
held back for a moment reach the store when flushed or closed."""

from __future__ import annotations

import asyncio

import pytest
import redis
import redis.asyncio

from bot.github.app import DeliveryCounts
from bot.localservices import Service
from workers.autopipeline import AutoPipeline
from workers.metrics import DELIVERIES, series
from workers.store import RedisStore


@pytest.fixture
def url(redis_service: Service) -> str:
    redis.Redis.from_url(redis_service.url).flushdb()
    return redis_service.url


def test_concurrent_calls_each_get_their_own_reply_in_order(url: str) -> None:
    async def run() -> list[object]:
        pipeline = AutoPipeline(redis.asyncio.Redis.from_url(url, decode_responses=True))
        try:
            return await asyncio.gather(*(pipeline.call("INCRBY", "n", i) for i in range(1, 51)))
        finally:
            await pipeline.close()

    assert asyncio.run(run()) == [sum(range(1, i + 1)) for i in range(1, 51)]


def test_arguments_reach_redis_as_redis_py_sends_them(url: str) -> None:
    """Floats, big integers, bytes and non-ASCII text in a batch are stored as redis-py's own
    client stores them (the batch is packed by hiredis directly)."""
    values: list[str | bytes | int | float] = [0.1, 1e20, 1e-7, 123456789.123456789, -3, 2**70, "é ü", b"\xff\x00"]
    plain = redis.Redis.from_url(url)
    for n, value in enumerate(values):
        plain.set(f"plain:{n}", value)

    async def run() -> None:
        pipeline = AutoPipeline(redis.asyncio.Redis.from_url(url, decode_responses=True))
        try:
            await asyncio.gather(*(pipeline.call("SET", f"grouped:{n}", value) for n, value in enumerate(values)))
        finally:
            await pipeline.close()

    asyncio.run(run())
    for n in range(len(values)):
        assert plain.get(f"grouped:{n}") == plain.get(f"plain:{n}"), values[n]


def test_a_failing_command_fails_alone(url: str) -> None:
    redis.Redis.from_url(url).set("text", "not a hash")

    async def run() -> list[object]:
        pipeline = AutoPipeline(redis.asyncio.Redis.from_url(url, decode_responses=True))
        try:
            return await asyncio.gather(pipeline.call("SET", "a", "1"), pipeline.call("HINCRBYFLOAT", "text", "f", 1),
                                        pipeline.call("GET", "a"), return_exceptions=True)
        finally:
            await pipeline.close()

    before, failed, after = asyncio.run(run())
    assert before == "OK" and after == "1"
    assert isinstance(failed, redis.ResponseError) and "WRONGTYPE" in str(failed)


def test_a_dropped_connection_fails_its_batch_and_the_next_call_reconnects(url: str) -> None:
    admin = redis.Redis.from_url(url)

    async def run() -> tuple[object, object]:
        pipeline = AutoPipeline(redis.asyncio.Redis.from_url(url, decode_responses=True))
        try:
            await pipeline.call("CLIENT", "SETNAME", "grouped")
            admin.client_kill_filter(_type="normal", skipme=True)  # drops the pipeline's connection
            lost = await asyncio.gather(pipeline.call("PING"), return_exceptions=True)
            return lost[0], await pipeline.call("PING")
        finally:
            await pipeline.close()

    lost, again = asyncio.run(run())
    assert isinstance(lost, redis.ConnectionError), lost
    assert again == "PONG"


def test_held_back_counts_reach_the_store_on_flush_and_on_close(url: str) -> None:
    store = RedisStore(url)
    accepted, duplicate = series(DELIVERIES, "github", "accepted"), series(DELIVERIES, "github", "duplicate")

    async def run() -> tuple[dict[str, float], dict[str, float]]:
        counts = DeliveryCounts(store)
        for _ in range(3):
            counts.add("accepted")
        counts.add("duplicate")
        await counts.flush()  # as a scrape does
        flushed = store.counts()
        counts.add("accepted")
        await counts.close()
        await store.close_async()
        return flushed, store.counts()

    flushed, closed = asyncio.run(run())
    assert flushed == {accepted: 3, duplicate: 1}
    assert closed == {accepted: 4, duplicate: 1}
