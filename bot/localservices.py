"""Servers wasmbot runs for itself on loopback: an OCI registry and Redis.

``wasmbot dev`` and the test suite start the real Debian servers (``docker-registry``,
``redis-server``) with throw-away storage, wait until they answer, and stop them cleanly.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path


class ServiceError(RuntimeError):
    pass


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def stop(self) -> None:
        stop([self.process])


def stop(processes: Iterable[subprocess.Popen[bytes]], timeout: float = 10) -> None:
    """SIGTERM every process at once (a warm shutdown, each its own), then wait for each,
    killing one still there after ``timeout`` seconds."""
    running = [process for process in processes if process.poll() is None]
    for process in running:
        process.terminate()
    for process in running:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _binary(name: str, package: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if path is None:
        raise ServiceError(f"{name} is not installed (Debian package {package}); run deploy/setup.sh")
    return path


def healthy(url: str) -> Callable[[], bool]:
    """A readiness probe for ``_wait_until``: ``url``'s ``/healthz`` answers 200 (wasmbot serve,
    or a proxy in front of it)."""
    import requests

    def ready() -> bool:
        try:
            return requests.get(f"{url}/healthz", timeout=1).status_code == 200
        except requests.ConnectionError:
            return False

    return ready


def _wait_until(ready: Callable[[], bool], service: Service, timeout: float = 20) -> None:
    """Wait for the server to answer; a server that exits instead is reported with its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise ServiceError(f"{service.name} exited: {service.log.read_text()[-2000:]}")
        if ready():
            return
        time.sleep(0.05)  # polling a socket that has no readiness signal of its own
    service.stop()
    raise ServiceError(f"{service.name} did not answer within {timeout:g}s")


def start_registry(workdir: Path, port: int | None = None, *, extra_config: str = "",
                   scheme: str = "http", readonly: bool = False) -> Service:
    """Run Debian's ``docker-registry`` on 127.0.0.1 with storage under ``workdir``.

    ``extra_config`` is appended under ``http:`` (indent it) or as top-level sections;
    ``readonly`` puts the storage in maintenance read-only mode (pulls only).
    """
    binary = _binary("docker-registry", "docker-registry")
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: info\n  accesslog:\n    disabled: false\n"
        f"storage:\n  filesystem:\n    rootdirectory: {workdir / 'data'}\n"
        "  delete:\n    enabled: true\n"
        + ("  maintenance:\n    readonly:\n      enabled: true\n" if readonly else "")
        + f"http:\n  addr: 127.0.0.1:{port}\n"
        + extra_config
    )
    log = workdir / "registry.log"
    process = subprocess.Popen([binary, "serve", str(config)], stdout=log.open("wb"),
                               stderr=subprocess.STDOUT)
    service = Service("docker-registry", process, f"{scheme}://127.0.0.1:{port}", log)

    def ready() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1):
                return True
        except urllib.error.HTTPError:
            return True  # 401 from an auth-enabled registry is an answer too
        except OSError:
            return False

    _wait_until(ready, service)
    return service


def start_redis(workdir: Path, port: int | None = None) -> Service:
    """Run ``redis-server`` on 127.0.0.1 with its files under ``workdir``."""
    binary = _binary("redis-server", "redis-server")
    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "redis.log"
    process = subprocess.Popen(
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(workdir),
         "--save", "", "--appendonly", "no", "--protected-mode", "yes"],
        stdout=log.open("wb"), stderr=subprocess.STDOUT)
    service = Service("redis-server", process, f"redis://127.0.0.1:{port}/0", log)

    def ready() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    _wait_until(ready, service)
    return service
