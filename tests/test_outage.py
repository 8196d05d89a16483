"""workers/outage.py and the lease renewer against a real Redis that goes away and comes back."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
import redis

from bot.localservices import Service, start_redis
from workers import lease, outage


def test_a_write_waits_out_an_outage(tmp_path: Path) -> None:
    service = start_redis(tmp_path / "a")
    client = redis.Redis.from_url(service.url)
    port = int(service.url.rsplit(":", 1)[1].split("/")[0])
    service.stop()
    restarted: list[Service] = []
    # Redis comes back on the same port while the write is being retried.
    timer = threading.Timer(1.5, lambda: restarted.append(start_redis(tmp_path / "b", port=port)))
    timer.start()
    try:
        assert outage.retrying(lambda: client.set("k", "v"), "a test write", seconds=30) is True
        assert client.get("k") == b"v"
    finally:
        timer.join()
        for s in restarted:
            s.stop()


def test_errors_that_waiting_cannot_cure_are_raised_at_once() -> None:
    calls = []

    def broken() -> None:
        calls.append(1)
        raise sqlite3.OperationalError("no such table: jobs")
    with pytest.raises(sqlite3.OperationalError):
        outage.retrying(broken, "a broken write", seconds=30)
    assert calls == [1]


def test_the_renewer_keeps_renewing_after_failures() -> None:
    attempts: list[bool] = []
    recovered = threading.Event()

    def renew() -> None:
        attempts.append(True)
        if len(attempts) <= 3:
            raise redis.ConnectionError("Connection refused")
        recovered.set()
    with lease.Renewer(renew, interval=0.05):
        assert recovered.wait(timeout=30)  # a thread that died on the first error never gets here
    assert len(attempts) >= 4
