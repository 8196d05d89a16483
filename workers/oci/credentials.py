"""Registry credentials: wasmbot's own configuration first, then Docker's ``config.json``.

``config.json`` is read the way the Docker CLI reads it: ``credHelpers[host]``, then
``credsStore``, then ``auths[host]`` (``auth`` as base64 ``user:password``, or ``username`` and
``password``, or an ``identitytoken`` for the OAuth2 refresh-token flow).  A credential
helper is run as ``docker-credential-NAME get`` with the host on stdin.  Secrets live only in
``Credentials``, whose repr hides them; nothing here logs.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from workers.oci.config import OciSettings


class CredentialsError(Exception):
    """Credentials are configured but cannot be read; the message says where."""


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)
    identity_token: bool = False  # ``password`` is an OAuth2 refresh token
    source: str = "wasmbot configuration"  # where they came from, for error messages

    def basic(self) -> str:
        return base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


def docker_config_path(settings: OciSettings) -> Path:
    if settings.docker_config is not None:
        return settings.docker_config
    folder = os.environ.get("DOCKER_CONFIG")
    return Path(folder) / "config.json" if folder else Path.home() / ".docker" / "config.json"


def lookup(settings: OciSettings, host: str) -> Credentials | None:
    """The credentials for ``host``, or None to try anonymously."""
    config = settings.registry(host)
    if config.username:
        if config.password_file is not None:
            try:
                password = config.password_file.read_text().strip()
            except OSError as exc:
                raise CredentialsError(f"cannot read password_file for registry {host}: "
                                       f"{exc.strerror} ({config.password_file})") from None
        else:
            password = config.password or ""
        return Credentials(config.username, password)
    return _from_docker_config(docker_config_path(settings), host)


def _from_docker_config(path: Path, host: str) -> Credentials | None:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise CredentialsError(f"cannot read Docker credentials in {path}: {exc}") from None
    helper = (data.get("credHelpers") or {}).get(host) or data.get("credsStore")
    if helper:
        found = _from_helper(helper, host, path)
        if found is not None:
            return found
    for key, entry in (data.get("auths") or {}).items():
        if _host_of(key) == host and isinstance(entry, dict):
            return _from_entry(entry, host, path)
    return None


def _host_of(key: str) -> str:
    """``auths`` keys may be ``host``, ``https://host`` or ``https://host/v1/``."""
    return key.split("://", 1)[-1].split("/", 1)[0]


def _from_entry(entry: dict[str, str], host: str, path: Path) -> Credentials | None:
    source = f"{path} (auths)"
    if entry.get("identitytoken"):
        return Credentials(entry.get("username") or "<token>", entry["identitytoken"], True, source)
    if entry.get("auth"):
        try:
            username, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except ValueError:
            raise CredentialsError(f"the auth entry for {host} in {path} is not base64 "
                                   "user:password") from None
        return Credentials(username, password, False, source)
    if entry.get("username"):
        return Credentials(entry["username"], entry.get("password", ""), False, source)
    return None


def _from_helper(helper: str, host: str, path: Path) -> Credentials | None:
    import subprocess  # only here: most pushes and pulls run no helper

    program = f"docker-credential-{helper}"
    try:
        proc = subprocess.run([program, "get"], input=host, capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise CredentialsError(f"{path} names credential helper {helper!r} for {host}, "
                               f"but {program} is not on PATH") from None
    except subprocess.TimeoutExpired:
        raise CredentialsError(f"credential helper {program} did not answer within 30s") from None
    if proc.returncode != 0:
        if "credentials not found" in (proc.stdout + proc.stderr).lower():
            return None
        raise CredentialsError(f"credential helper {program} failed for {host} (exit {proc.returncode})")
    try:
        answer = json.loads(proc.stdout)
        username, secret = answer["Username"], answer["Secret"]
    except (ValueError, KeyError, TypeError):
        raise CredentialsError(f"credential helper {program} answered something that is not "
                               "{\"Username\", \"Secret\"} JSON") from None
    return Credentials(username, secret, username == "<token>", f"credential helper {program}")
