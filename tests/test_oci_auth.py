"""Registries that want credentials: TLS with a test CA and htpasswd, the bearer-token flow with a
read-only user, a read-only registry, and where credentials come from.  Passwords never show."""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from ocihelp import built, host_of, module_bytes
from registries import TLSFiles, TokenServer, start_secure_registry, start_token_registry

from bot.localservices import Service, start_registry
from workers.config import Settings
from workers.oci import reference
from workers.oci.connect import connect
from workers.oci.inspect import inspect
from workers.oci.pull import pull
from workers.oci.push import push
from workers.oci.registry import AuthenticationFailed, Denied, Registry, RegistryError, Unreachable
from workers.oci.search import search
from workers.oci.store import Store

PASSWORD = "correct-horse-battery"
READER_PASSWORD = "reader-only-pass"


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, TLSFiles]]:
    service, tls = start_secure_registry(tmp_path_factory.mktemp("secure"), {"alice": PASSWORD})
    yield service, tls
    service.stop()


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, TokenServer]]:
    service, tokens = start_token_registry(tmp_path_factory.mktemp("token"), {
        "writer": (PASSWORD, {"pull", "push", "catalog"}), "reader": (READER_PASSWORD, {"pull"})})
    yield service, tokens
    service.stop()
    tokens.stop()


def connected(tmp: Path, host: str, **config: object) -> Registry:
    settings = Settings(data_dir=tmp / "data", registries={host: config} if config else {},
                        docker_config=tmp / "docker-config.json")
    return connect(settings, host, sleep=lambda seconds: None)


def ref(host: str, name: str) -> reference.Reference:
    return reference.parse(f"{host}/{name}")


def test_tls_registry_with_basic_auth_pushes_pulls_and_inspects(secure, tmp_path: Path) -> None:
    service, tls = secure
    host = host_of(service)
    registry = connected(tmp_path, host, plain_http=False, ca_bundle=str(tls.ca), username="alice",
                         password=PASSWORD)
    module = module_bytes(padding=300)
    pushed = push(registry, ref(host, "secure/add-header:v1"), built("compat", module))
    got = pull(registry, ref(host, "secure/add-header:v1"), Store(tmp_path / "store"), 1 << 28)
    assert got.module == module and got.digest == pushed.digest
    assert inspect(registry, ref(host, "secure/add-header:v1")).variant == "compat"


def test_an_unknown_ca_is_a_clear_tls_error(secure, tmp_path: Path) -> None:
    service, _ = secure
    host = host_of(service)
    with pytest.raises(Unreachable) as caught:
        inspect(connected(tmp_path, host, plain_http=False, username="alice", password=PASSWORD),
                ref(host, "secure/add-header:v1"))
    assert f"registry {host}: TLS verification failed" in str(caught.value)
    assert f'set ca_bundle under [registries."{host}"]' in str(caught.value)


def test_a_wrong_password_is_rejected_without_showing_it(secure, tmp_path: Path, caplog) -> None:
    service, tls = secure
    host = host_of(service)
    caplog.set_level(logging.DEBUG)
    registry = connected(tmp_path, host, plain_http=False, ca_bundle=str(tls.ca), username="alice",
                         password="not-the-password")
    with pytest.raises(AuthenticationFailed) as caught:
        push(registry, ref(host, "secure/add-header:v2"), built())
    message = str(caught.value)
    assert message.startswith(f"registry {host} rejected user 'alice' (from wasmbot configuration) while "
                              "trying to check whether secure/add-header has sha256:")
    assert message.endswith("check the username and password (or token) and that the account is active")
    assert "not-the-password" not in message + caplog.text + repr(registry)
    assert base64.b64encode(b"alice:not-the-password").decode() not in caplog.text


def test_no_credentials_says_how_to_log_in(secure, tmp_path: Path) -> None:
    service, tls = secure
    host = host_of(service)
    with pytest.raises(AuthenticationFailed) as caught:
        inspect(connected(tmp_path, host, plain_http=False, ca_bundle=str(tls.ca)), ref(host, "secure/x:v1"))
    assert f"registry {host} rejected anonymous access" in str(caught.value)
    assert f'set username and password (or password_file) under [registries."{host}"]' in str(caught.value)


def test_credentials_from_docker_config_json_and_password_file(secure, tmp_path: Path) -> None:
    service, tls = secure
    host = host_of(service)
    auth = base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    (tmp_path / "docker-config.json").write_text(json.dumps({"auths": {f"https://{host}": {"auth": auth}}}))
    registry = connected(tmp_path, host, plain_http=False, ca_bundle=str(tls.ca))
    assert registry.endpoint.credentials is not None
    assert registry.endpoint.credentials.source.endswith("docker-config.json (auths)")
    push(registry, ref(host, "docker-config/add-header:v1"), built())
    secret = tmp_path / "secret"
    secret.write_text(PASSWORD + "\n")
    registry = connected(tmp_path, host, plain_http=False, ca_bundle=str(tls.ca), username="alice",
                         password_file=str(secret))
    assert inspect(registry, ref(host, "docker-config/add-header:v1")).variant == "compat"


def test_credentials_from_a_docker_credential_helper(secure, tmp_path: Path, monkeypatch) -> None:
    service, tls = secure
    host = host_of(service)
    helper = tmp_path / "bin" / "docker-credential-wasmbot-test"
    helper.parent.mkdir()
    # The helper protocol: `get` with the server on stdin, JSON with Username and Secret on stdout.
    helper.write_text("#!/bin/sh\nread server\n"
                      f"[ \"$server\" = \"{host}\" ] || {{ echo 'credentials not found in native keychain'; exit 1; }}\n"
                      f"echo '{{\"ServerURL\": \"{host}\", \"Username\": \"alice\", \"Secret\": \"{PASSWORD}\"}}'\n")
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{helper.parent}{os.pathsep}{os.environ['PATH']}")
    (tmp_path / "docker-config.json").write_text(json.dumps({"credHelpers": {host: "wasmbot-test"}}))
    registry = connected(tmp_path, host, plain_http=False, ca_bundle=str(tls.ca))
    assert registry.endpoint.credentials is not None
    assert registry.endpoint.credentials.source == "credential helper docker-credential-wasmbot-test"
    push(registry, ref(host, "helper/add-header:v1"), built())
    assert "correct-horse" not in repr(registry.endpoint.credentials)
    (tmp_path / "docker-config.json").write_text(json.dumps({"credHelpers": {host: "missing-helper"}}))
    with pytest.raises(RegistryError, match=r"names credential helper 'missing-helper'.*not on PATH"):
        connected(tmp_path, host, plain_http=False, ca_bundle=str(tls.ca))


def test_bearer_tokens_are_fetched_per_scope(token_registry, tmp_path: Path) -> None:
    service, tokens = token_registry
    host = host_of(service)
    writer = connected(tmp_path, host, username="writer", password=PASSWORD)
    pushed = push(writer, ref(host, "tokens/add-header:v1"), built())
    # The registry names the scope in its challenge (its order of actions varies); one token each.
    granted = {(user, scope.rsplit(":", 1)[0], frozenset(actions)) for user, scope, actions in tokens.issued}
    assert ("writer", "repository:tokens/add-header", frozenset({"pull", "push"})) in granted
    reader = connected(tmp_path, host, username="reader", password=READER_PASSWORD)
    found = inspect(reader, ref(host, "tokens/add-header:v1"))
    assert found.digest == pushed.digest
    assert ("reader", "repository:tokens/add-header:pull", ["pull"]) in tokens.issued
    assert not any(user == "reader" and "push" in actions for user, _, actions in tokens.issued)
    assert [f.repository for f in search(writer, "tokens")] == ["tokens/add-header"]


def test_a_user_without_push_rights_is_denied_clearly(token_registry, tmp_path: Path) -> None:
    service, _ = token_registry
    host = host_of(service)
    reader = connected(tmp_path, host, username="reader", password=READER_PASSWORD)
    with pytest.raises(Denied) as caught:
        push(reader, ref(host, "tokens/by-reader:v1"), built())
    assert str(caught.value).startswith(
        f"registry {host} denied user 'reader' (from wasmbot configuration) the right to push to "
        "tokens/by-reader (while trying to open an upload in tokens/by-reader)")
    with pytest.raises(RegistryError, match=f"registry {host} does not offer its catalog to this account"):
        search(reader, "tokens")


def test_a_wrong_password_at_the_token_service(token_registry, tmp_path: Path) -> None:
    service, _ = token_registry
    host = host_of(service)
    with pytest.raises(AuthenticationFailed) as caught:
        inspect(connected(tmp_path, host, username="reader", password="wrong"), ref(host, "tokens/add-header:v1"))
    assert f"registry {host} rejected user 'reader'" in str(caught.value)
    assert "its token service refused" in str(caught.value) and "wrong" not in str(caught.value)


def test_a_read_only_registry_refuses_pushes_and_serves_pulls(tmp_path: Path) -> None:
    folder = tmp_path / "registry"
    service = start_registry(folder)
    host = host_of(service)
    try:
        pushed = push(connected(tmp_path, host), ref(host, "frozen/add-header:v1"), built())
    finally:
        service.stop()
    service = start_registry(folder, port=int(host.rsplit(":", 1)[1]), readonly=True)
    try:
        registry = connected(tmp_path, host)
        assert inspect(registry, ref(host, "frozen/add-header:v1")).digest == pushed.digest
        with pytest.raises(Denied) as caught:
            push(registry, ref(host, "frozen/other:v1"), built("oci"))
        assert str(caught.value).startswith(f"registry {host} does not accept pushes (HTTP 405")
        assert "it may be read-only" in str(caught.value)
    finally:
        service.stop()


def test_stage_failure_and_job_log_never_carry_the_password(secure, tmp_path: Path, filter_module) -> None:
    from test_push_variants import push_stage_run

    from workers.stages import StageError

    service, tls = secure
    host = host_of(service)
    settings = Settings(data_dir=tmp_path / "data", docker_config=tmp_path / "none.json", registries={
        host: {"plain_http": False, "ca_bundle": str(tls.ca), "username": "alice", "password": "hunter2-wrong"}})
    log: list[str] = []
    with pytest.raises(StageError) as caught:
        push_stage_run(filter_module("c"), f"{host}/stage/add-header:v1", settings, tmp_path / "w", log)
    assert "rejected user 'alice'" in str(caught.value)
    assert "hunter2" not in str(caught.value) + "\n".join(log) + repr(settings)
