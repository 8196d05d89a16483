"""The commands, as typed data: what a front end parsed and what a job records.

Every command is a frozen pydantic model named by its ``name`` field, so ``Command`` is a
discriminated union: a job's command is validated when the job is made and again whenever a
job record is read back.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, computed_field


class CommandError(ValueError):
    """Input that is not a valid command; ``usage`` tells the user what would be."""

    def __init__(self, message: str, usage: str) -> None:
        super().__init__(message)
        self.message = message
        self.usage = usage

    def __str__(self) -> str:
        return f"{self.message}\nusage: {self.usage}"


class _Command(BaseModel):
    """What every command is: immutable once parsed, so a job's command is the one asked for."""

    model_config = ConfigDict(frozen=True)


class BuildCommand(_Command):
    """Build SOURCE (a path below the front end's source root), test it, push it to ``tag``."""

    name: Literal["build"] = "build"
    source: str
    tag: str | None = None
    lang: str | None = None
    release: bool = False  # announce the pushed image (Slack #wasm)


class InitCommand(_Command):
    """Scaffold filter ``filter`` (a DNS label) from the ``lang`` template for a platform.

    ``source`` is where the new filter lands below the front end's source root, which the
    build and test stages that follow then read.
    """

    name: Literal["init"] = "init"
    filter: str
    lang: str
    platform: str = "istio"
    platform_version: str | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def source(self) -> str:
        """Recorded with the job, so the build and test stages find the new filter."""
        return self.filter


class HelpCommand(_Command):
    name: Literal["help"] = "help"
    topic: str | None = None


class SearchCommand(_Command):
    """Search ``registry`` (None: the configured default registry) for repositories matching ``text``."""

    name: Literal["search"] = "search"
    text: str
    registry: str | None = None


class DeployCommand(_Command):
    """Deploy ``target`` (an image reference, or the id of a job that pushed one) to ``env``."""

    name: Literal["deploy"] = "deploy"
    target: str
    env: str
    config: str | None = None  # JSON given to the plugin
    root_id: str | None = None
    dry_run: bool = False
    force: bool = False  # take over fields another field manager owns
    adopt: bool = False  # take over a WasmPlugin wasmbot did not create (undeploy hands it back)


class RollbackCommand(_Command):
    name: Literal["rollback"] = "rollback"
    env: str
    filter: str | None = None


class UndeployCommand(_Command):
    name: Literal["undeploy"] = "undeploy"
    env: str
    filter: str


class TestCommand(_Command):
    __test__ = False  # not a pytest class
    name: Literal["test"] = "test"
    source: str
    lang: str | None = None


class PushCommand(_Command):
    """Push the module job ``job`` built and tested, to ``tag``."""

    name: Literal["push"] = "push"
    job: str
    tag: str
    release: bool = False
    source: str | None = None  # the pushed job's source, filled in when the job is made


class ListCommand(_Command):
    """``jobs``, ``status [ENV]`` and ``history ENV [FILTER]``: answered at once from the store."""

    name: Literal["jobs", "status", "history"] = "jobs"
    env: str | None = None
    filter: str | None = None


class PullRequestCommand(_Command):
    """Commands that only make sense in a pull request comment (bot/github/)."""

    name: Literal["retest", "ok-to-test"] = "retest"


class CancelCommand(_Command):
    name: Literal["cancel"] = "cancel"
    job: str


class RetryCommand(_Command):
    """Run a failed or cancelled job again from the stage that failed (Slack's button, too)."""

    name: Literal["retry"] = "retry"
    job: str


class ApproveCommand(_Command):
    name: Literal["approve", "deny"] = "approve"
    job: str


Command = (BuildCommand | InitCommand | HelpCommand | SearchCommand | CancelCommand | RetryCommand
           | DeployCommand | RollbackCommand | UndeployCommand | ApproveCommand | TestCommand | PushCommand
           | ListCommand | PullRequestCommand)
# Commands that act on a job another command made, named by its id.
JobCommand = CancelCommand | RetryCommand | ApproveCommand | PushCommand
# Commands that change an environment.
EnvironmentCommand = DeployCommand | RollbackCommand | UndeployCommand


def source_of(command: Command) -> str | None:
    """The directory (below the job's source root) a build, test, init or push job builds."""
    if isinstance(command, BuildCommand | TestCommand | InitCommand | PushCommand):
        return command.source
    return None


def released(command: Command) -> bool:
    """Whether the command pushes a release, which is announced."""
    return isinstance(command, BuildCommand | PushCommand) and command.release


def lang_of(command: Command) -> str | None:
    """The language the command names, if any (None: the build detects it)."""
    if isinstance(command, BuildCommand | TestCommand | InitCommand):
        return command.lang
    return None
