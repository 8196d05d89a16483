"""``/wasm`` commands as data: one parser for every front end (CLI, Slack, GitHub comments).

Each command declares its own usage and help (as Prow plugins do), so ``/wasm help`` is always
in step with what the parser accepts.  Parsing never touches the shell: the text is split with
``shlex`` and every value is checked against a strict pattern before a job can exist.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
from dataclasses import dataclass
from typing import Literal, NoReturn

from pydantic import BaseModel, ConfigDict, computed_field

from workers.oci import reference

MAX_COMMAND_LENGTH = 1000
# What the build stage compiles (workers/recipes.py) and what init scaffolds (templates/).
LANGUAGES = ("assemblyscript", "go", "tinygo", "rust", "cpp", "c", "wasm")
TEMPLATE_LANGUAGES = ("assemblyscript", "go", "rust", "cpp")
PLATFORMS = ("istio", "gloo", "envoy")
_NAME = re.compile(r"^[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_VERSION = re.compile(r"^[0-9]+\.[0-9]+$")

_SOURCE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._/-]{0,255}$")


class CommandError(ValueError):
    """Input that is not a valid command; ``usage`` tells the user what would be."""

    def __init__(self, message: str, usage: str) -> None:
        super().__init__(message)
        self.message = message
        self.usage = usage

    def __str__(self) -> str:
        return f"{self.message}\nusage: {self.usage}"


@dataclass(frozen=True)
class CommandSpec:
    name: str
    usage: str
    summary: str


SPECS: dict[str, CommandSpec] = {
    spec.name: spec
    for spec in (
        CommandSpec("help", "/wasm help [COMMAND]", "show the commands, or one command's usage"),
        CommandSpec(
            "build",
            "/wasm build SOURCE [--tag REGISTRY/REPOSITORY[:TAG] [--release]] [--lang "
            + "|".join(LANGUAGES) + "]",
            "build SOURCE into filter.wasm, test it under wasmtime and push it to --tag "
            "(--release announces it)",
        ),
        CommandSpec("init", "/wasm init NAME --lang " + "|".join(TEMPLATE_LANGUAGES)
                    + " [--platform " + "|".join(PLATFORMS) + "[:VERSION]]",
                    "scaffold a new filter from a template, then build and test it"),
        CommandSpec("test", "/wasm test SOURCE [--lang " + "|".join(LANGUAGES) + "]",
                    "build SOURCE and run its ABI tests under wasmtime, without pushing"),
        CommandSpec("push", "/wasm push JOB --tag REGISTRY/REPOSITORY[:TAG] [--release]",
                    "push the module a build or test job made and tested (--release announces it)"),
        CommandSpec("deploy", "/wasm deploy IMAGE|JOB --env ENV [--config JSON] [--root-id ID] [--dry-run]",
                    "deploy a pushed module to an environment (--dry-run shows what would be applied)"),
        CommandSpec("rollback", "/wasm rollback ENV [FILTER]",
                    "deploy again the digest that was deployed before the current one"),
        CommandSpec("undeploy", "/wasm undeploy ENV FILTER",
                    "remove a filter's WasmPlugin (or Gloo filter entry), and nothing else"),
        CommandSpec("status", "/wasm status [ENV]", "show what wasmbot has deployed where"),
        CommandSpec("history", "/wasm history ENV [FILTER]",
                    "show who deployed, rolled back or removed what in ENV, and who approved it"),
        CommandSpec("jobs", "/wasm jobs", "list recent jobs"),
        CommandSpec("search", "/wasm search [REGISTRY/]TEXT",
                    "find module images whose repository name contains TEXT, with their tags"),
        CommandSpec("cancel", "/wasm cancel JOB", "stop a queued or running job after its current stage"),
        CommandSpec("approve", "/wasm approve JOB",
                    "approve a change to a protected environment (not your own)"),
        CommandSpec("deny", "/wasm deny JOB", "turn down a change to a protected environment"),
        CommandSpec("retest", "/wasm retest",
                    "in a pull request: build and test its head commit again (also /wasm build, /wasm test)"),
        CommandSpec("ok-to-test", "/wasm ok-to-test",
                    "in a pull request from a fork or a new contributor: a member lets its head commit run"),
    )
}


class BuildCommand(BaseModel):
    """Build SOURCE (a path below the front end's source root), test it, push it to ``tag``."""

    model_config = ConfigDict(frozen=True)
    name: Literal["build"] = "build"
    source: str
    tag: str | None = None
    lang: str | None = None
    release: bool = False  # announce the pushed image (Slack #wasm)


class InitCommand(BaseModel):
    """Scaffold filter ``filter`` (a DNS label) from the ``lang`` template for a platform.

    ``source`` is where the new filter lands below the front end's source root, which the
    build and test stages that follow then read.
    """

    model_config = ConfigDict(frozen=True)
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


class HelpCommand(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: Literal["help"] = "help"
    topic: str | None = None


class SearchCommand(BaseModel):
    """Search ``registry`` (None: the configured default registry) for repositories matching ``text``."""

    model_config = ConfigDict(frozen=True)
    name: Literal["search"] = "search"
    text: str
    registry: str | None = None


class DeployCommand(BaseModel):
    """Deploy ``target`` (an image reference, or the id of a job that pushed one) to ``env``."""

    model_config = ConfigDict(frozen=True)
    name: Literal["deploy"] = "deploy"
    target: str
    env: str
    config: str | None = None  # JSON given to the plugin
    root_id: str | None = None
    dry_run: bool = False


class RollbackCommand(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: Literal["rollback"] = "rollback"
    env: str
    filter: str | None = None


class UndeployCommand(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: Literal["undeploy"] = "undeploy"
    env: str
    filter: str


class TestCommand(BaseModel):
    __test__ = False  # not a pytest class
    model_config = ConfigDict(frozen=True)
    name: Literal["test"] = "test"
    source: str
    lang: str | None = None


class PushCommand(BaseModel):
    """Push the module job ``job`` built and tested, to ``tag``."""

    model_config = ConfigDict(frozen=True)
    name: Literal["push"] = "push"
    job: str
    tag: str
    release: bool = False


class ListCommand(BaseModel):
    """``jobs``, ``status [ENV]`` and ``history ENV [FILTER]``: answered at once from the store."""

    model_config = ConfigDict(frozen=True)
    name: Literal["jobs", "status", "history"] = "jobs"
    env: str | None = None
    filter: str | None = None


class PullRequestCommand(BaseModel):
    """Commands that only make sense in a pull request comment (bot/github/)."""

    model_config = ConfigDict(frozen=True)
    name: Literal["retest", "ok-to-test"] = "retest"


class CancelCommand(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: Literal["cancel"] = "cancel"
    job: str


class ApproveCommand(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: Literal["approve", "deny"] = "approve"
    job: str


Command = (BuildCommand | InitCommand | HelpCommand | SearchCommand | CancelCommand | DeployCommand
           | RollbackCommand | UndeployCommand | ApproveCommand | TestCommand | PushCommand | ListCommand
           | PullRequestCommand)
# Commands that change an environment; their permission is checked as "deploy:ENV".
ENVIRONMENT_COMMANDS = ("deploy", "rollback", "undeploy")
_JOB_ID = re.compile(r"^[0-9a-f]{12}$")


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing and exiting."""

    def __init__(self, spec: CommandSpec) -> None:
        super().__init__(prog=f"/wasm {spec.name}", add_help=False, allow_abbrev=False)
        self.spec = spec

    def error(self, message: str) -> NoReturn:
        raise CommandError(message, self.spec.usage)


def _check_source(source: str, usage: str) -> str:
    if source.startswith("/") or not _SOURCE.match(source):
        raise CommandError(
            f"invalid SOURCE {source!r}: use a relative path of letters, digits, '.', '_', '-' and '/'",
            usage,
        )
    if ".." in source.split("/"):
        raise CommandError(f"invalid SOURCE {source!r}: '..' may not leave the source root", usage)
    return source.rstrip("/")


def check_reference(tag: str, usage: str) -> str:
    """Validate an image reference to push to: REGISTRY/REPOSITORY[:TAG], registry required."""
    try:
        ref = reference.parse(tag)
    except reference.InvalidReference as exc:
        raise CommandError(f"invalid --tag: {exc}", usage) from None
    if ref.digest:
        raise CommandError(f"invalid --tag {tag!r}: name where to push, REGISTRY/REPOSITORY[:TAG], "
                           "without @DIGEST", usage)
    return tag


def _parse_deploy(args: list[str]) -> DeployCommand:
    spec = SPECS["deploy"]
    parser = _Parser(spec)
    parser.add_argument("target")
    parser.add_argument("--env", required=True)
    parser.add_argument("--config")
    parser.add_argument("--root-id")
    parser.add_argument("--dry-run", action="store_true")
    ns = parser.parse_args(args)
    if not _JOB_ID.match(ns.target):
        try:
            reference.parse(ns.target)
        except reference.InvalidReference as exc:
            raise CommandError(f"invalid IMAGE: {exc} (or give the id of a job that pushed one)",
                               spec.usage) from None
    if not _NAME.match(ns.env):
        raise CommandError(f"invalid --env {ns.env!r}: environments are named like dev, staging, prod",
                           spec.usage)
    if ns.config is not None:
        try:
            json.loads(ns.config)
        except ValueError as exc:
            raise CommandError(f"--config is not JSON: {exc}", spec.usage) from None
    if ns.root_id is not None and not re.fullmatch(r"[A-Za-z0-9_.:-]{1,128}", ns.root_id):
        raise CommandError(f"invalid --root-id {ns.root_id!r}", spec.usage)
    return DeployCommand(target=ns.target, env=ns.env, config=ns.config, root_id=ns.root_id,
                         dry_run=ns.dry_run)


def _parse_environment_change(name: str, args: list[str]) -> RollbackCommand | UndeployCommand:
    spec = SPECS[name]
    if not 1 <= len(args) <= 2 or (name == "undeploy" and len(args) != 2):
        raise CommandError(f"{name} takes ENV{' FILTER' if name == 'undeploy' else ' [FILTER]'}", spec.usage)
    for value, what in zip(args, ("ENV", "FILTER"), strict=False):
        if not _NAME.match(value):
            raise CommandError(f"invalid {what} {value!r}: a DNS label (lower-case letters, digits, '-')",
                               spec.usage)
    if name == "rollback":
        return RollbackCommand(env=args[0], filter=args[1] if len(args) > 1 else None)
    return UndeployCommand(env=args[0], filter=args[1])


def _parse_search(args: list[str]) -> SearchCommand:
    spec = SPECS["search"]
    if len(args) != 1:
        raise CommandError("search takes one TEXT (a part of a repository name)", spec.usage)
    registry, slash, text = args[0].rpartition("/")
    host, _, path = registry.partition("/")
    if slash and re.fullmatch(reference.REGISTRY, host):
        registry, text = host, f"{path}/{text}" if path else text
    elif slash:
        registry, text = "", args[0]
    if text and not re.fullmatch(r"[a-z0-9._/-]{1,200}", text):
        raise CommandError(f"invalid TEXT {text!r}: repository names use lower-case letters, digits, "
                           "'.', '_', '-' and '/'", spec.usage)
    return SearchCommand(text=text, registry=registry or None)


def _parse_build(args: list[str]) -> BuildCommand:
    spec = SPECS["build"]
    parser = _Parser(spec)
    parser.add_argument("source")
    parser.add_argument("--tag")
    parser.add_argument("--lang", choices=LANGUAGES)
    parser.add_argument("--release", action="store_true")
    ns = parser.parse_args(args)
    tag = check_reference(ns.tag, spec.usage) if ns.tag is not None else None
    if ns.release and tag is None:
        raise CommandError("--release needs --tag: a release is a pushed image", spec.usage)
    return BuildCommand(source=_check_source(ns.source, spec.usage), tag=tag, lang=ns.lang,
                        release=ns.release)


def _parse_init(args: list[str]) -> InitCommand:
    spec = SPECS["init"]
    parser = _Parser(spec)
    parser.add_argument("filter")
    parser.add_argument("--lang", required=True, choices=TEMPLATE_LANGUAGES)
    parser.add_argument("--platform", default="istio")
    ns = parser.parse_args(args)
    if not _NAME.match(ns.filter):
        raise CommandError(f"invalid NAME {ns.filter!r}: use a DNS label (lower-case letters, digits "
                           "and '-', starting with a letter, at most 63 characters)", spec.usage)
    platform, _, version = ns.platform.partition(":")
    if platform not in PLATFORMS:
        raise CommandError(f"invalid --platform {platform!r}: choose one of {', '.join(PLATFORMS)}",
                           spec.usage)
    if version and not _VERSION.match(version):
        raise CommandError(f"invalid platform version {version!r}: use MAJOR.MINOR, e.g. istio:1.26",
                           spec.usage)
    from workers.platforms import PlatformError, choose  # the one version table

    try:
        release, _ = choose(ns.lang, platform, version or None)
    except PlatformError as exc:
        raise CommandError(str(exc), spec.usage) from None
    return InitCommand(filter=ns.filter, lang=ns.lang, platform=platform,
                       platform_version=release.version)


def _parse_help(args: list[str]) -> HelpCommand:
    spec = SPECS["help"]
    if len(args) > 1:
        raise CommandError("help takes at most one COMMAND", spec.usage)
    if args and args[0] not in SPECS:
        raise CommandError(f"unknown command {args[0]!r}", spec.usage)
    return HelpCommand(topic=args[0] if args else None)


def parse(text: str) -> Command:
    """Turn the text of a command (with or without the leading ``/wasm``) into a command."""
    overview = "/wasm COMMAND [ARGS]; /wasm help lists the commands"
    if len(text) > MAX_COMMAND_LENGTH:
        raise CommandError(f"command is longer than {MAX_COMMAND_LENGTH} characters", overview)
    if any((ord(ch) < 32 and ch not in "\t\n") or ord(ch) == 127 for ch in text):
        raise CommandError("command contains control characters", overview)
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise CommandError(f"cannot read command: {exc}", overview) from None
    if words and words[0] in ("/wasm", "wasm"):
        words = words[1:]
    if not words:
        return HelpCommand()
    name, args = words[0], words[1:]
    name = "search" if name == "list" else name
    spec = SPECS.get(name)
    if spec is None:
        raise CommandError(f"unknown command {name!r}", overview)
    if name == "build":
        return _parse_build(args)
    if name == "test":
        parser = _Parser(spec)
        parser.add_argument("source")
        parser.add_argument("--lang", choices=LANGUAGES)
        ns = parser.parse_args(args)
        return TestCommand(source=_check_source(ns.source, spec.usage), lang=ns.lang)
    if name == "push":
        parser = _Parser(spec)
        parser.add_argument("job")
        parser.add_argument("--tag", required=True)
        parser.add_argument("--release", action="store_true")
        ns = parser.parse_args(args)
        if not _JOB_ID.match(ns.job):
            raise CommandError(f"invalid JOB {ns.job!r}: the id of a build or test job (12 hex digits)",
                               spec.usage)
        return PushCommand(job=ns.job, tag=check_reference(ns.tag, spec.usage), release=ns.release)
    if name in ("jobs", "status"):
        if len(args) > (1 if name == "status" else 0) or (args and not _NAME.match(args[0])):
            raise CommandError(f"{name} takes {'at most one ENV' if name == 'status' else 'no arguments'}",
                               spec.usage)
        return ListCommand.model_validate({"name": name, "env": args[0] if args else None})
    if name == "history":
        if not 1 <= len(args) <= 2 or not all(_NAME.match(a) for a in args):
            raise CommandError("history takes ENV and an optional FILTER (DNS labels)", spec.usage)
        return ListCommand(name="history", env=args[0], filter=args[1] if len(args) > 1 else None)
    if name in ("retest", "ok-to-test"):
        if args:
            raise CommandError(f"{name} takes no arguments", spec.usage)
        return PullRequestCommand.model_validate({"name": name})
    if name == "init":
        return _parse_init(args)
    if name == "search":
        return _parse_search(args)
    if name == "deploy":
        return _parse_deploy(args)
    if name in ("rollback", "undeploy"):
        return _parse_environment_change(name, args)
    if name in ("cancel", "approve", "deny"):
        if len(args) != 1 or not _JOB_ID.match(args[0]):
            raise CommandError(f"{name} takes one JOB id (12 hex digits, as wasmbot printed it)", spec.usage)
        return CancelCommand(job=args[0]) if name == "cancel" else ApproveCommand.model_validate(
            {"name": name, "job": args[0]})
    return _parse_help(args)


def help_text(topic: str | None = None) -> str:
    """Help for every command, or the usage and summary of one."""
    if topic is not None:
        spec = SPECS[topic]
        return f"usage: {spec.usage}\n{spec.summary}"
    width = max(len(s.name) for s in SPECS.values())
    lines = ["wasmbot commands:"]
    for spec in SPECS.values():
        lines.append(f"  {spec.name:<{width}}  {spec.summary}")
    lines.append("Run /wasm help COMMAND for its usage.")
    return "\n".join(lines)
