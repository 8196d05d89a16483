"""The one way the stand-ins (Slack, GitHub, Kubernetes) serve: an aiohttp app on a loopback
port, run by its own event loop in a daemon thread so tests can stay synchronous."""

from __future__ import annotations

import asyncio
import threading

from aiohttp import web

from bot.localservices import free_port


class LoopbackServer:
    """Subclasses build their routes in ``make_app``; ``loop`` is theirs to schedule on."""

    port: int
    url: str
    loop: asyncio.AbstractEventLoop

    def make_app(self) -> web.Application:
        raise NotImplementedError

    def start(self) -> str:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        ready = threading.Event()

        def serve() -> None:
            self.loop = asyncio.new_event_loop()
            self._runner = web.AppRunner(self.make_app(), access_log=None)
            self.loop.run_until_complete(self._runner.setup())
            self.loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
            ready.set()
            self.loop.run_forever()

        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError(f"{type(self).__name__} did not start on {self.url}")
        return self.url

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
