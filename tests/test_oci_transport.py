"""The registry client's HTTP (workers/oci/transport.py, on http.client): what a real registry in
the other tests does not exercise.  Blob downloads redirected to another origin (S3, GCS, a CDN)
arrive without the registry's credentials; a kept-alive connection is reused, and one the server
closed meanwhile is replaced without counting as a failure; the proxy the environment names is
used (plain HTTP forwarded, HTTPS through a CONNECT tunnel) unless ``no_proxy`` names the host."""

from __future__ import annotations

import hashlib
import http.client
import http.server
import select
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from ocihelp import built, host_of, module_bytes
from registries import start_secure_registry

from bot.localservices import Service
from workers.config import Settings
from workers.oci import reference
from workers.oci.connect import connect
from workers.oci.credentials import Credentials
from workers.oci.pull import pull
from workers.oci.push import push
from workers.oci.registry import Endpoint, Registry
from workers.oci.store import Store

BLOB = b"module bytes " * 1000
DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()


@dataclass
class Server:
    """A loopback HTTP/1.1 server; ``answer(handler)`` writes each response."""

    answer: Callable[[http.server.BaseHTTPRequestHandler], None]
    seen: list[tuple[str, str, str | None, int]] = field(default_factory=list)  # method, path, auth, port

    def __enter__(self) -> Server:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                server.seen.append((self.command, self.path, self.headers.get("Authorization"),
                                    self.client_address[1]))
                server.answer(self)

            do_GET = do_HEAD = _any

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def reply(handler: http.server.BaseHTTPRequestHandler, status: int, body: bytes = b"",
          **headers: str) -> None:
    handler.send_response(status)
    for name, value in headers.items():
        handler.send_header(name.replace("_", "-"), value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(body)


@pytest.fixture
def storage() -> Iterator[Server]:
    with Server(lambda h: reply(h, 200, BLOB) if h.path.startswith("/blob?") else reply(h, 404)) as server:
        yield server


def registry_for(host: str, waits: list[float]) -> Registry:
    return Registry(Endpoint(host, plain_http=True, credentials=Credentials("alice", "secret")),
                    sleep=waits.append)


def test_a_blob_redirected_to_storage_arrives_without_the_registrys_credentials(storage: Server) -> None:
    def registry(h: http.server.BaseHTTPRequestHandler) -> None:
        if h.headers.get("Authorization") is None:
            reply(h, 401, WWW_Authenticate='Basic realm="test"')
        else:
            reply(h, 307, Location=f"http://{storage.host}/blob?signature=abc")

    waits: list[float] = []
    with Server(registry) as front:
        fetched = registry_for(front.host, waits).get_blob("r", DIGEST, len(BLOB), limit=len(BLOB))
    assert fetched == BLOB
    assert [(m, auth is not None) for m, _, auth, _ in front.seen] == [("GET", False), ("GET", True)]
    assert [(m, p, auth) for m, p, auth, _ in storage.seen] == [("GET", "/blob?signature=abc", None)]
    assert waits == []


def test_connections_are_kept_alive_and_one_closed_meanwhile_is_replaced() -> None:
    answers = 0

    def registry(h: http.server.BaseHTTPRequestHandler) -> None:
        nonlocal answers
        answers += 1
        reply(h, 200 if answers != 3 else 404)
        h.close_connection = answers == 3  # closed after the third answer, without saying so

    waits: list[float] = []
    with Server(registry) as front:
        client = registry_for(front.host, waits)
        found = [client.blob_exists("r", DIGEST) for _ in range(5)]
    assert found == [True, True, False, True, True]
    ports = [port for *_, port in front.seen]
    assert len(set(ports[:3])) == 1 and len(set(ports[3:])) == 1 and ports[0] != ports[3]
    assert waits == [] and client.requests_sent == 5  # the replaced connection cost no retry


class ForwardProxy(http.server.BaseHTTPRequestHandler):
    """An HTTP proxy: forwards absolute-URL requests and tunnels CONNECT; ``seen`` is per server."""

    seen: list[str]

    def _forward(self) -> None:
        self.seen.append(f"{self.command} {self.path}")
        target = urlsplit(self.path)
        upstream = http.client.HTTPConnection(target.netloc, timeout=30)
        length = int(self.headers.get("Content-Length") or 0)
        headers = {k: v for k, v in self.headers.items() if not k.lower().startswith("proxy-")}
        upstream.request(self.command, self.path.split(target.netloc, 1)[1] or "/",
                         body=self.rfile.read(length) if length else None, headers=headers)
        answer = upstream.getresponse()
        body = answer.read()
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = _forward

    def do_CONNECT(self) -> None:
        self.seen.append(f"CONNECT {self.path} {self.headers.get('Proxy-Authorization')}")
        host, port = self.path.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=30) as upstream:
            self.send_response(200)
            self.end_headers()
            ends = [self.connection, upstream]
            while True:
                ready, _, _ = select.select(ends, [], [], 30)
                chunks = [(end, end.recv(1 << 16)) for end in ready]
                if not ready or any(not data for _, data in chunks):
                    break
                for end, data in chunks:
                    (upstream if end is self.connection else self.connection).sendall(data)
        self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, list[str]]]:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    seen: list[str] = []
    handler = type("Recording", (ForwardProxy,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()
    server.server_close()


def round_trip(registry: Registry, host: str, tmp_path: Path) -> None:
    module = module_bytes(padding=300)
    ref = reference.parse(f"{host}/proxied/filter:v1")
    pushed = push(registry, ref, built("compat", module))
    got = pull(registry, ref, Store(tmp_path / "store"), 1 << 28)
    assert got.module == module and got.digest == pushed.digest


def test_plain_http_goes_through_the_environments_proxy_unless_no_proxy_names_the_host(
        registry: Service, proxy: tuple[str, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url, seen = proxy
    host = host_of(registry)
    monkeypatch.setenv("HTTP_PROXY", url)
    round_trip(connect(Settings(data_dir=tmp_path, docker_config=tmp_path / "none.json"), host), host, tmp_path)
    assert seen and all(line.split()[1].startswith(f"http://{host}/v2/") for line in seen), seen
    assert any(line.startswith("PUT ") for line in seen) and any(line.startswith("GET ") for line in seen)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    seen.clear()
    round_trip(connect(Settings(data_dir=tmp_path, docker_config=tmp_path / "none.json"), host), host, tmp_path / "again")
    assert seen == []


def test_https_goes_through_a_connect_tunnel(proxy: tuple[str, list[str]], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    url, seen = proxy
    service, tls = start_secure_registry(tmp_path / "secure", {"alice": "correct-horse"})
    try:
        host = host_of(service)
        monkeypatch.setenv("https_proxy", url.replace("http://", "http://user:pass@"))
        settings = Settings(data_dir=tmp_path, docker_config=tmp_path / "none.json", registries={host: {
            "plain_http": False, "ca_bundle": str(tls.ca), "username": "alice", "password": "correct-horse"}})
        round_trip(connect(settings, host), host, tmp_path)
    finally:
        service.stop()
    user_pass = "dXNlcjpwYXNz"  # base64 of user:pass, from the proxy URL
    assert seen and set(seen) == {f"CONNECT {host} Basic {user_pass}"}  # TLS inside: no request seen
