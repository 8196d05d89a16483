"""The registry client's HTTP (workers/oci/transport.py, on http.client): what a real registry in
the other tests does not exercise.  Blob downloads redirected to another origin (S3, GCS, a CDN)
arrive without the registry's credentials; a kept-alive connection is reused, and one the server
closed meanwhile is replaced without counting as a failure."""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from workers.oci.credentials import Credentials
from workers.oci.registry import Endpoint, Registry

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
