"""deploy/compose.yaml against the Compose Specification's own JSON schema (vendored from
compose-go, see tests/testdata/README.md), and its wasmbot services against wasmbot's CLI."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
import yaml
from conftest import ROOT, TESTDATA

from bot.cli import build_parser
from workers.config import Settings

COMPOSE = ROOT / "deploy" / "compose.yaml"


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
    assert set(services) == {"server", "worker", "redis", "registry"}
    assert services["registry"]["image"] == "docker.io/library/registry:2"
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
