"""Settings: environment, wasmbot.toml, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import ConfigError, load_settings


def test_defaults_use_the_embedded_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("WASMBOT_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("WASMBOT_DATA_DIR", str(tmp_path))
    settings = load_settings()
    assert settings.broker_url == f"sqla+sqlite:///{tmp_path}/broker.sqlite"
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
