"""Settings: environment, wasmbot.toml, and clear errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from workers.config import ConfigError, load_settings


def test_defaults_use_the_embedded_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("WASMBOT_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("WASMBOT_DATA_DIR", str(tmp_path))
    settings = load_settings()
    assert settings.broker_url == f"wasmbot-sqla+sqlite:///{tmp_path}/broker.sqlite"
    assert settings.uses_plain_http("localhost:5000") and not settings.uses_plain_http("ghcr.io")


def test_file_then_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "wasmbot.toml"
    config.write_text('redis_url = "redis://127.0.0.1:6390/1"\nbuild_timeout = 42\n')
    monkeypatch.setenv("WASMBOT_CONFIG", str(config))
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert load_settings().build_timeout == 42
    assert load_settings().broker_url == "redis://127.0.0.1:6390/1"
    monkeypatch.setenv("WASMBOT_BUILD_TIMEOUT", "7")
    assert load_settings().build_timeout == 7


def test_errors_name_the_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "wasmbot.toml"
    config.write_text('build_timeout = -1\nbuild_memory = "lots"\nno_such_setting = 1\n')
    monkeypatch.setenv("WASMBOT_CONFIG", str(config))
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith(f"invalid configuration ({config}): ")
    assert "build_timeout: Input should be greater than 0" in message
    assert "build_memory: String should match pattern" in message
    assert "no_such_setting: Extra inputs are not permitted" in message
    config.write_text("build_timeout = [\n")
    with pytest.raises(ConfigError, match="invalid configuration file"):
        load_settings()


def test_registries_from_the_file_exact_host_before_pattern(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config = tmp_path / "wasmbot.toml"
    config.write_text('push_variant = "oci"\n'
                      '[registries."*.corp.example"]\nplain_http = true\nvariant = "both"\n'
                      '[registries."secure.corp.example"]\nca_bundle = "/etc/ca.pem"\nusername = "bot"\n'
                      'password = "s3cr3t"\n'
                      '[registries."localhost:5443"]\nplain_http = false\n')
    monkeypatch.setenv("WASMBOT_CONFIG", str(config))
    settings = load_settings()
    assert settings.uses_plain_http("build.corp.example") and settings.variant_for("build.corp.example") == "both"
    assert not settings.uses_plain_http("secure.corp.example")
    assert settings.variant_for("secure.corp.example") == "oci"  # its entry sets none: the global default
    assert not settings.uses_plain_http("localhost:5443") and settings.uses_plain_http("127.0.0.1:5000")
    assert settings.uses_plain_http("[::1]:5000") and not settings.uses_plain_http("[2001:db8::1]:5000")
    assert "s3cr3t" not in repr(settings) and "s3cr3t" not in str(settings.model_dump())


def test_a_registry_with_two_passwords_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WASMBOT_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("WASMBOT_REGISTRIES",
                       '{"ghcr.io": {"username": "u", "password": "p", "password_file": "/run/p"}}')
    with pytest.raises(ConfigError, match=re.escape("registries.ghcr.io: Value error, give password or password_file")):
        load_settings()
    monkeypatch.setenv("WASMBOT_REGISTRIES", '{"ghcr.io": {"password": "p"}}')
    with pytest.raises(ConfigError, match="a password needs a username"):
        load_settings()
