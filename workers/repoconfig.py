"""``.wasmbot.yaml``: how the bot builds, tests and deploys a filter repository.

Every field is optional; without the file the language is detected and the defaults apply.
Unknown fields are refused, so a typo never silently does nothing.
"""

from __future__ import annotations

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
