"""One `wasmbot serve` for a benchmark: a clean environment, ready when `/healthz` answers,
stopped on exit (the benchmarks that measure the web front ends share it)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from bot.localservices import Service, _wait_until, free_port


@contextmanager
def serve(tmp: str, tree: Path, settings: dict[str, str]) -> Iterator[str]:
    """Serve checkout ``tree`` with data in ``tmp`` and only ``settings`` configured (none of
    this shell's wasmbot, Slack, GitHub or Redis variables); yield its URL."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("WASMBOT_", "GITHUB_", "SLACK_")) and k != "REDIS_URL"}
    env |= {"WASMBOT_DATA_DIR": tmp, "WASMBOT_CONFIG": f"{tmp}/none.toml", "PYTHONPATH": str(tree)}
    env |= settings
    port = free_port()
    log = Path(tmp) / "serve.log"
    process = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--port", str(port)], env=env,
                               cwd=tree, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        def ready() -> bool:
            try:
                return requests.get(f"{url}/healthz", timeout=1).ok
            except requests.ConnectionError:
                return False
        _wait_until(ready, Service("wasmbot serve", process, url, log), timeout=30)
        yield url
    finally:
        process.terminate()
        process.wait(30)
