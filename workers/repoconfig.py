"""``.wasmbot.yaml``: how the bot builds, tests and deploys a filter repository, and what the
filter declares about itself (its name and root ids).

Every field is optional; without the file the language is detected and the defaults apply.
Unknown fields are refused, so a typo never silently does nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

FILENAME = ".wasmbot.yaml"
_RELATIVE_PATH = r"^[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)*$"
Lang = Literal["assemblyscript", "go", "tinygo", "rust", "cpp", "c", "wasm"]


class RepoConfigError(Exception):
    """The file cannot be read or does not follow the format; the message says where."""


class Build(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lang: Lang | None = None


class Test(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # A relative path inside the repository: no "..", no leading "/" or ".".
    cases: str = Field(default="wasm-tests.yaml", pattern=_RELATIVE_PATH)


class Deploy(BaseModel):
    model_config = ConfigDict(extra="forbid")
    platform: str | None = Field(default=None, description="istio, gloo or envoy, with :VERSION")
    environments: list[str] = []


class RepoConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    root_id: str | None = None
    build: Build = Build()
    test: Test = Test()
    deploy: Deploy = Deploy()
    registry: str | None = None


def load(source: Path) -> RepoConfig:
    path = source / FILENAME
    if not path.is_file():
        return RepoConfig()
    try:
        data: Any = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise RepoConfigError(f"{FILENAME} is not valid YAML{where}") from None
    try:
        return RepoConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise RepoConfigError(f"{FILENAME}: {problems}") from None


def filter_name(config: RepoConfig, fallback: str) -> str:
    """The filter's name: ``name:`` in .wasmbot.yaml, else ``fallback``, which the caller chooses
    as what the user knows the filter by (its repository, or its source directory)."""
    return config.name or fallback


def root_ids(source: Path, config: RepoConfig, name: str) -> list[str]:
    """The root ids the filter declares: ``runtime-config.json`` (either spelling), else
    ``root_id:`` in .wasmbot.yaml, else the ``root_id`` its test cases run it under, else ``name``."""
    path = source / "runtime-config.json"
    if path.is_file():
        try:
            data = json.loads(path.read_text())
            inner = data.get("config", {})
            ids = inner.get("rootIds", inner.get("root_ids"))
            if isinstance(ids, list) and all(isinstance(i, str) for i in ids) and ids:
                return ids
        except (ValueError, AttributeError) as exc:
            raise RepoConfigError(f"runtime-config.json is not valid: {exc}") from None
        raise RepoConfigError("runtime-config.json has no config.rootIds list of strings")
    return [config.root_id or _cases_root_id(source, config.test.cases) or name]


def _cases_root_id(source: Path, name: str) -> str | None:
    """``root_id`` at the top of the test cases; a file that cannot be read says nothing here
    (the test stage reports what is wrong with it)."""
    cases = source / name
    if not cases.is_file() or not cases.resolve().is_relative_to(source.resolve()):
        return None
    try:
        data = yaml.safe_load(cases.read_text())
    except (OSError, yaml.YAMLError):
        return None
    root_id = data.get("root_id") if isinstance(data, dict) else None
    return root_id if isinstance(root_id, str) and root_id else None
