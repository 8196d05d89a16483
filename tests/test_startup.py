"""`wasmbot --help` loads no heavy library: what it costs to start is measured in bench/startup.py."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT

HEAVY = ("pydantic", "requests", "celery", "kombu", "aiohttp", "wasmtime", "redis", "slack_bolt",
         "github", "kubernetes", "yaml", "jsonschema", "sqlalchemy")

PROBE = """
import json, sys
from bot import cli
try:
    cli.main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))
"""


def loaded_by(*argv: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", PROBE, *argv], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def test_help_and_version_load_no_heavy_library() -> None:
    for argv in (["--help"], ["--version"], ["pull", "--help"], ["run", "--help"]):
        loaded = loaded_by(*argv)
        assert "bot" in loaded  # the probe ran the CLI
        assert sorted(loaded & set(HEAVY)) == [], argv


def test_a_command_still_loads_what_it_needs() -> None:
    # The probe would report an empty set if imports silently failed: a real command loads them.
    # (Not pull: it reads its settings without pydantic and speaks HTTP with http.client.)
    assert {"pydantic", "wasmtime"} <= loaded_by("abi-test", "no-such-module.wasm")
    assert "http" in loaded_by("pull", "NOT A REFERENCE")


def test_version_matches_the_project() -> None:
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    out = subprocess.run([sys.executable, "-m", "bot.cli", "--version"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == f"wasmbot {version}"
