"""Where settings come from, without pydantic: the file's path, the default data directory, and
the raw environment and file contents, for ``workers.config`` and the CLI's quick reading of the
registry settings (``workers.oci.config``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


class ConfigError(Exception):
    """Configuration that wasmbot cannot start with; the message names the setting."""


def config_file() -> Path:
    """``WASMBOT_CONFIG``, else ``wasmbot.toml`` in the working directory."""
    return Path(os.environ.get("WASMBOT_CONFIG", "wasmbot.toml"))


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "wasmbot"


def environment() -> dict[str, str]:
    """The environment by lower-cased name: setting names are matched case-insensitively."""
    return {name.lower(): value for name, value in os.environ.items()}


def file_contents() -> dict[str, Any]:
    """The TOML file's tables, or nothing when there is no file (errors propagate)."""
    path = config_file()
    if not path.is_file():
        return {}
    import tomllib

    with path.open("rb") as f:
        return tomllib.load(f)
