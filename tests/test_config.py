"""Settings: environment, wasmbot.toml, and clear errors."""

from __future__ import annotations

import os
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


# The CLI's push, pull, inspect and tag read their settings with workers.oci.config.load, without
# pydantic; whatever it accepts must be what Settings makes of the same sources, and what it is
# unsure of must be left to Settings (its answer or its error).
OCI_FILE = ('data_dir = "/srv/wasmbot"\ndocker_config = "/etc/docker/config.json"\npush_variant = "both"\n'
            'oci_tag_suffix = "-solo"\nregistry_timeout = 5\nregistry_retries = 0\ntest_max_module_mb = 16\n'
            'test_compile_seconds = 2.5\ntest_compile_memory_mb = 512\nbuild_timeout = 42\n'
            '[registries."*.corp.example"]\nplain_http = true\nvariant = "oci"\n'
            '[registries."secure.corp.example"]\nca_bundle = "/etc/ca.pem"\nusername = "bot"\npassword = "s3cr3t"\n'
            '[registries."ghcr.io"]\nusername = "me"\npassword_file = "/run/secrets/ghcr"\n')
PLAIN = [
    ("", {}),
    ("", {"XDG_DATA_HOME": "/xdg"}),
    (OCI_FILE, {}),
    (OCI_FILE, {"WASMBOT_REGISTRY_TIMEOUT": "7.5", "WASMBOT_REGISTRY_RETRIES": "10", "WASMBOT_PUSH_VARIANT": "oci",
                "wasmbot_data_dir": "/elsewhere", "WASMBOT_TEST_MAX_MODULE_MB": "1", "WASMBOT_OCI_TAG_SUFFIX": "_x",
                "WASMBOT_DOCKER_CONFIG": "rel/config.json", "WASMBOT_TEST_COMPILE_MEMORY_MB": "256"}),
]
LEFT_TO_SETTINGS = [
    ("", {"WASMBOT_REGISTRIES": '{"ghcr.io": {"username": "u", "password": "p"}}'}),  # JSON: merged with the file
    ("", {"WASMBOT_REGISTRY_RETRIES": "11"}),
    ("", {"WASMBOT_REGISTRY_TIMEOUT": " 5"}),
    ("", {"WASMBOT_TEST_MAX_MODULE_MB": "1e3"}),
    ("", {"WASMBOT_TEST_COMPILE_MEMORY_MB": "255"}),
    ("", {"WASMBOT_PUSH_VARIANT": "docker"}),
    ("", {"WASMBOT_OCI_TAG_SUFFIX": "/no"}),
    ("", {"WASMBOT_DATA_DIR": ""}),
    ('registry_timeout = "5"\n', {}),
    ("registry_retries = 2.0\n", {}),
    ("test_max_module_mb = 0\n", {}),
    ("registry_timeout = true\n", {}),
    ('registries = "ghcr.io"\n', {}),
    ('[registries."ghcr.io"]\nusername = "u"\npassword = "p"\npassword_file = "/p"\n', {}),
    ('[registries."ghcr.io"]\npassword = "p"\n', {}),
    ('[registries."ghcr.io"]\nplain_http = "yes"\n', {}),
    ('[registries."ghcr.io"]\nvariant = "docker"\n', {}),
    ('[registries."ghcr.io"]\nusername = ""\n', {}),
    ('[registries."ghcr.io"]\ninsecure = true\n', {}),
    ("registry_timeout = [\n", {}),
]


def _outcome(load: object) -> object:
    try:
        return load()  # type: ignore[operator]
    except ConfigError as exc:
        return str(exc)


@pytest.mark.parametrize(("text", "env"), PLAIN + LEFT_TO_SETTINGS)
def test_the_clis_quick_reading_of_the_registry_settings_is_settings_own(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, text: str, env: dict[str, str]) -> None:
    from workers.oci import config as oci

    for name in list(os.environ):
        if name.upper().startswith("WASMBOT_") or name == "XDG_DATA_HOME":
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    config = tmp_path / "wasmbot.toml"
    config.write_text(text)
    monkeypatch.setenv("WASMBOT_CONFIG", str(config))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    full = _outcome(lambda: load_settings().oci())
    assert _outcome(oci.load) == full
    if (text, env) in PLAIN:
        assert isinstance(full, oci.OciSettings) and oci._quick() == full  # taken without Settings
    else:
        with pytest.raises(oci._Unsure):
            oci._quick()


def test_the_quick_readings_defaults_are_settings_defaults() -> None:
    from workers.config import Settings
    from workers.oci.config import DEFAULTS

    assert {name: Settings.model_fields[name].default for name in DEFAULTS} == DEFAULTS


@pytest.mark.parametrize("url", ["sentinel://127.0.0.1:26379", "127.0.0.1:6379", "redis+socket:///run/redis.sock"])
def test_a_redis_url_wasmbot_cannot_use_is_refused_at_start(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                            url: str) -> None:
    # One URL serves Celery's broker and the job store (redis-py), which takes only these schemes.
    monkeypatch.setenv("WASMBOT_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("REDIS_URL", url)
    with pytest.raises(ConfigError, match=re.escape("REDIS_URL: Value error, wasmbot needs one Redis endpoint: "
                                                    "a redis://, rediss:// or unix:// URL")):
        load_settings()
    for good in ("redis://:pw@redis:6379/0", "rediss://redis.example.com:6380/0", "unix:///run/redis.sock"):
        monkeypatch.setenv("REDIS_URL", good)
        assert load_settings().redis_url == good
