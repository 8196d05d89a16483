"""The registries the OCI tests run against behave as their configurations say."""

from __future__ import annotations

import hashlib
from pathlib import Path

import requests
from registries import FaultyProxy, start_secure_registry

from bot.localservices import start_registry

USERS = {"alice": "correct horse", "reader": "read only please"}


def upload_blob(base: str, repository: str, data: bytes, **kw: object) -> requests.Response:
    """A monolithic blob upload (POST then PUT with the digest), as the OCI spec allows."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    start = requests.post(f"{base}/v2/{repository}/blobs/uploads/", timeout=10, **kw)  # type: ignore[arg-type]
    if start.status_code != 202:
        return start
    location = start.headers["Location"]
    url = location if location.startswith("http") else base + location
    sep = "&" if "?" in url else "?"
    return requests.put(f"{url}{sep}digest={digest}", data=data, timeout=10,
                        headers={"Content-Type": "application/octet-stream"}, **kw)  # type: ignore[arg-type]


def test_tls_registry_with_basic_auth(tmp_path: Path) -> None:
    service, tls = start_secure_registry(tmp_path / "reg", USERS)
    try:
        base = service.url
        anonymous = requests.get(f"{base}/v2/", verify=str(tls.ca), timeout=10)
        assert anonymous.status_code == 401
        assert anonymous.headers["WWW-Authenticate"] == 'Basic realm="wasmbot-test"'
        assert requests.get(f"{base}/v2/", verify=str(tls.ca), auth=("alice", "wrong"), timeout=10).status_code == 401
        assert requests.get(f"{base}/v2/", verify=str(tls.ca), auth=("alice", USERS["alice"]),
                            timeout=10).status_code == 200
        assert upload_blob(base, "team/filter", b"module", verify=str(tls.ca),
                           auth=("alice", USERS["alice"])).status_code == 201
        try:
            requests.get(f"{base}/v2/", timeout=10)  # the system CAs do not know the test CA
            raise AssertionError("an unknown CA was trusted")
        except requests.exceptions.SSLError:
            pass
    finally:
        service.stop()


def test_read_only_registry_serves_but_refuses_pushes(tmp_path: Path) -> None:
    workdir = tmp_path / "reg"
    service, tls = start_secure_registry(workdir, USERS)
    port = service.url.rsplit(":", 1)[1]
    try:
        assert upload_blob(service.url, "team/filter", b"seed", verify=str(tls.ca),
                           auth=("alice", USERS["alice"])).status_code == 201
    finally:
        service.stop()
    service, tls = start_secure_registry(workdir, USERS, readonly=True, port=int(port))
    try:
        digest = "sha256:" + hashlib.sha256(b"seed").hexdigest()
        auth = ("reader", USERS["reader"])
        pulled = requests.get(f"{service.url}/v2/team/filter/blobs/{digest}", verify=str(tls.ca), auth=auth, timeout=10)
        assert pulled.status_code == 200 and pulled.content == b"seed"
        refused = upload_blob(service.url, "team/filter", b"new", verify=str(tls.ca), auth=auth)
        assert refused.status_code == 405 and refused.headers["Allow"] == "GET, HEAD"
    finally:
        service.stop()


def test_faulty_proxy_answers_503_twice_then_passes_through(tmp_path: Path) -> None:
    service = start_registry(tmp_path / "reg")
    proxy = FaultyProxy(service.url, failures=2, method="PUT", path=r"/blobs/uploads/")
    base = proxy.start()
    try:
        statuses = [upload_blob(base, "x/y", b"data").status_code for _ in range(3)]
        assert statuses == [503, 503, 201]
        assert proxy.injected == 2
        assert sum(1 for line in proxy.seen if line.startswith("PUT ")) == 3
    finally:
        proxy.stop()
        service.stop()
