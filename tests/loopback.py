"""The one way the stand-ins (Slack, GitHub, Kubernetes) serve: an aiohttp app on a loopback
port, run by its own event loop in a daemon thread so tests can stay synchronous."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from bot.localservices import free_port


class LoopbackServer:
    """Subclasses build their routes in ``make_app``; ``loop`` is theirs to schedule on."""

    port: int
    url: str
    loop: asyncio.AbstractEventLoop
    _changed: threading.Condition  # notified by the subclass on every request it answers

    def recent_calls(self) -> str:
        return ""

    def wait_for(self, check: Callable[[Any], Any], timeout: float = 240, recheck: float = 1.0) -> Any:
        """Block until ``check(self)`` is truthy, re-checked whenever the stand-in is called and
        every ``recheck`` seconds (for conditions that change after the stand-in's last call)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                result = check(self)
                if result:
                    return result
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{type(self).__name__}: condition not met in {timeout}s; "
                                         f"calls: {self.recent_calls()}")
                self._changed.wait(min(left, recheck))

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
