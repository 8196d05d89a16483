"""The web application's probes, served by aiohttp and asked over HTTP."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from bot.application import make_app
from bot.localservices import Service, free_port
from workers.config import Settings


async def _get(settings: Settings, path: str) -> tuple[int, dict[str, object]]:
    async with TestClient(TestServer(make_app(settings))) as client:
        response = await client.get(path)
        return response.status, await response.json()


def test_healthz_answers() -> None:
    assert asyncio.run(_get(Settings(), "/healthz")) == (200, {"status": "ok"})


def test_readyz_on_the_embedded_store(tmp_path: Path) -> None:
    status, body = asyncio.run(_get(Settings(data_dir=tmp_path), "/readyz"))
    assert status == 200
    assert body == {"status": "ready", "checks": {"broker": "ok", "store": "ok"}}


def test_readyz_on_redis(tmp_path: Path, redis_service: Service) -> None:
    status, body = asyncio.run(_get(Settings(data_dir=tmp_path, redis_url=redis_service.url), "/readyz"))
    assert (status, body["status"]) == (200, "ready")


def test_readyz_says_what_is_down(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    status, body = asyncio.run(_get(settings, "/readyz"))
    assert status == 503 and body["status"] == "not ready"
    checks = body["checks"]
    assert isinstance(checks, dict)
    assert checks["broker"].startswith("error: ") and checks["store"].startswith("error: ")
