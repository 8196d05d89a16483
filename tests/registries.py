"""Registries for OCI tests: Debian's docker-registry open, behind TLS with basic auth, or
read-only; plus a fault-injecting proxy that answers 503 a set number of times.

The TLS files come from a throw-away test CA made with ``cryptography``; the htpasswd file
holds bcrypt hashes, the only kind docker-registry accepts.
"""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bot.localservices import Service, free_port, start_registry


@dataclass(frozen=True)
class TLSFiles:
    ca: Path
    cert: Path
    key: Path


def make_tls(folder: Path) -> TLSFiles:
    """A test CA and a server certificate for 127.0.0.1 and localhost, signed by it."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wasmbot test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    files = TLSFiles(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    files.key.chmod(0o600)
    return files


def write_htpasswd(path: Path, users: dict[str, str]) -> Path:
    path.write_text("".join(f"{user}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=4)).decode()}\n"
                            for user, pw in users.items()))
    return path


def start_secure_registry(workdir: Path, users: dict[str, str], *, readonly: bool = False,
                          port: int | None = None) -> tuple[Service, TLSFiles]:
    """docker-registry over TLS (test CA) with htpasswd basic auth, optionally read-only."""
    tls = make_tls(workdir / "tls")
    htpasswd = write_htpasswd(workdir / "htpasswd", users)
    extra = (f"  tls:\n    certificate: {tls.cert}\n    key: {tls.key}\n"
             f"auth:\n  htpasswd:\n    realm: wasmbot-test\n    path: {htpasswd}\n")
    service = start_registry(workdir, port, extra_config=extra, scheme="https", readonly=readonly)
    return service, tls


@dataclass
class FaultyProxy:
    """A reverse proxy in front of a registry that answers ``status`` (503) to the first
    ``failures`` requests matching ``method`` and ``path`` (a regex), then passes everything through."""

    upstream: str
    failures: int
    method: str = "PUT"
    path: str = ".*"
    status: int = 503
    retry_after: str | None = None  # sent with each injected answer when set
    seen: list[str] = field(default_factory=list)
    injected: int = 0

    def start(self) -> str:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _forward(self) -> None:
                proxy.seen.append(f"{self.command} {self.path}")
                if (self.command == proxy.method and re.search(proxy.path, self.path)
                        and proxy.injected < proxy.failures):
                    proxy.injected += 1
                    self.send_response(proxy.status)
                    if proxy.retry_after is not None:
                        self.send_header("Retry-After", proxy.retry_after)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                resp = requests.request(self.command, proxy.upstream + self.path, data=body, headers=headers,
                                        allow_redirects=False, timeout=30)
                self.send_response(resp.status_code)
                for k, v in resp.headers.items():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                        self.send_header(k, v.replace(proxy.upstream, proxy.url))
                self.send_header("Content-Length", str(len(resp.content)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(resp.content)

            do_GET = do_PUT = do_POST = do_PATCH = do_HEAD = do_DELETE = _forward

            def log_message(self, *args: object) -> None:
                pass

        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self.url

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class TokenServer:
    """A Docker token service (the ``WWW-Authenticate: Bearer`` flow) for docker-registry.

    ``users`` maps a name to (password, actions it may have on any repository, e.g. {"pull"}).
    Tokens are ES256 JWTs whose x5c header carries the signing certificate, which the registry
    trusts through its ``rootcertbundle``.  ``issued`` records (user, scope, granted actions).
    """

    workdir: Path
    users: dict[str, tuple[str, set[str]]]
    service: str = "wasmbot-test"
    issuer: str = "wasmbot-test-issuer"
    issued: list[tuple[str, str, list[str]]] = field(default_factory=list)

    def start(self) -> str:
        import base64
        import json
        import time
        import urllib.parse
        import uuid

        import jwt

        self.workdir.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wasmbot test token signer")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(key, hashes.SHA256()))
        self.bundle = self.workdir / "token-signer.pem"
        self.bundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
                user = server._user(self.headers.get("Authorization", ""))
                if user is None:
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                rights = server.users[user][1]
                access = []
                for scope in query.get("scope", []):
                    kind, _, rest = scope.partition(":")
                    resource, _, wanted = rest.rpartition(":")
                    granted = [a for a in wanted.split(",") if a in rights or (kind == "registry" and
                                                                                  "catalog" in rights)]
                    server.issued.append((user, scope, granted))
                    access.append({"type": kind, "name": resource, "actions": granted})
                issued_at = int(time.time())
                token = jwt.encode({"iss": server.issuer, "sub": user, "aud": server.service,
                                    "exp": issued_at + 300, "nbf": issued_at - 10, "iat": issued_at,
                                    "jti": uuid.uuid4().hex, "access": access},
                                   key, algorithm="ES256", headers={"x5c": [x5c]})
                body = json.dumps({"token": token, "expires_in": 300}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        port = free_port()
        self.url = f"http://127.0.0.1:{port}/token"
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self.url

    def _user(self, header: str) -> str | None:
        import base64

        if not header.startswith("Basic "):
            return None
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        known = self.users.get(user)
        return user if known and known[0] == password else None

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_token_registry(workdir: Path, users: dict[str, tuple[str, set[str]]]) -> tuple[Service, TokenServer]:
    """docker-registry over plain HTTP that accepts only bearer tokens from a ``TokenServer``."""
    tokens = TokenServer(workdir / "token", users)
    realm = tokens.start()
    extra = (f"auth:\n  token:\n    realm: {realm}\n    service: {tokens.service}\n"
             f"    issuer: {tokens.issuer}\n    rootcertbundle: {tokens.bundle}\n")
    return start_registry(workdir, extra_config=extra), tokens
