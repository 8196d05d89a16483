"""The command registry is the one source: every front end's help, the CLI's help and
docs/commands.md say what it declares, and every command has a parser, a handler or stages."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from bot import dispatch
from bot.github.comments import rendered
from bot.permissions import DEFAULTS, Principal
from workers import commands
from workers.config import Settings
from workers.pipeline import STAGES

ROOT = Path(__file__).resolve().parents[1]


def test_every_command_is_a_job_or_has_a_handler() -> None:
    for spec in commands.COMMANDS:
        assert bool(spec.stages) != (spec.name in dispatch.HANDLERS), spec.name
        assert set(spec.stages) <= set(STAGES), spec.name
        assert spec.where <= set(commands.FRONT_ENDS), spec.name
    assert set(dispatch.HANDLERS) <= set(commands.SPECS)  # no handler for a command nobody declares


@pytest.mark.parametrize("front_end", sorted(commands.FRONT_ENDS))
def test_help_lists_what_each_front_end_takes(front_end: str) -> None:
    text = commands.help_text(front_end)
    markdown = commands.help_markdown(front_end)
    for spec in commands.COMMANDS:
        listed = f"  {spec.name} " in text
        assert listed == (front_end in spec.where), (front_end, spec.name)
        assert (f"- `{spec.usage}`: {spec.summary}" in markdown) == listed
        assert commands.help_text(front_end, spec.name).startswith(f"usage: {spec.usage}\n{spec.summary}")


def test_the_pull_request_help_reply_is_the_registrys(tmp_path: Path) -> None:
    who = dispatch.Requester("github", "github:octo", Principal("github:octo"))
    request = dispatch.Request(commands.HelpCommand(), "/wasm help", who, origin="github:o/r#1")
    reply = asyncio.run(dispatch.dispatch(Settings(data_dir=tmp_path), request))
    assert rendered(reply) == commands.help_markdown("github")


def cli(*argv: str) -> str:
    return subprocess.run([sys.executable, "-m", "bot.cli", *argv], capture_output=True, text=True,
                          check=True, cwd=ROOT).stdout


def test_the_cli_lists_the_registrys_commands() -> None:
    assert cli("commands") == commands.help_text("cli") + "\n"
    assert cli("commands", "deploy") == commands.help_text("cli", "deploy") + "\n"
    assert "wasmbot commands" in cli("run", "--help")


def test_docs_command_table_is_current() -> None:
    assert (ROOT / "docs" / "commands.md").read_text() == commands.commands_markdown() + "\n", \
        "regenerate it: python3 -m bot.cli commands --markdown > docs/commands.md"


def test_defaults_come_from_the_registry() -> None:
    for spec in commands.COMMANDS:
        if "{" not in spec.action:
            assert DEFAULTS.get(spec.action, []) == list(spec.allowed), spec.name
        else:
            assert not spec.allowed  # changing an environment is closed until granted


def test_a_jobs_command_is_typed_and_checked_when_the_job_is_made_and_read_back() -> None:
    import pydantic

    from workers.jobs import Job, Stage

    def job(command: dict[str, object]) -> Job:
        return Job(requester="cli:alice", origin="cli", text="", source_root="/", command=command,  # type: ignore[arg-type]
                   stages=[Stage(name="deploy")])

    made = job({"name": "deploy", "target": "example.com/f:v1", "env": "staging", "force": True})
    assert isinstance(made.command, commands.DeployCommand) and made.command.force
    assert Job.model_validate_json(made.model_dump_json()).command == made.command  # as the store reads it
    with pytest.raises(pydantic.ValidationError, match="env"):
        job({"name": "deploy", "target": "example.com/f:v1"})  # no environment: no job
    with pytest.raises(pydantic.ValidationError):
        job({"name": "frobnicate"})  # no such command
