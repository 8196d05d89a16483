"""One parser per command: the words after ``/wasm NAME`` in, a typed command (or a
``CommandError`` naming what is wrong) out.

Parsing never touches the shell: the registry splits the text with ``shlex`` and every value is
checked against a strict pattern here, before a job can exist.  Each parser takes its registry
entry, for the usage line its errors show.
"""

from __future__ import annotations

import argparse
import json
import re
from typing import TYPE_CHECKING, NoReturn

from workers.commands.models import (
    ApproveCommand,
    BuildCommand,
    CancelCommand,
    CommandError,
    DeployCommand,
    HelpCommand,
    InitCommand,
    ListCommand,
    PullRequestCommand,
    PushCommand,
    RetryCommand,
    RollbackCommand,
    SearchCommand,
    TestCommand,
    UndeployCommand,
)
from workers.oci import reference

if TYPE_CHECKING:
    from workers.commands.registry import Spec

# What the build stage compiles (workers/recipes.py) and what init scaffolds (templates/).
LANGUAGES = ("assemblyscript", "go", "tinygo", "rust", "cpp", "c", "wasm")
TEMPLATE_LANGUAGES = ("assemblyscript", "go", "rust", "cpp")
PLATFORMS = ("istio", "gloo", "envoy")
NAME = re.compile(r"^[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$")
JOB_ID = re.compile(r"^[0-9a-f]{12}$")
_VERSION = re.compile(r"^[0-9]+\.[0-9]+$")
_SOURCE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._/-]{0,255}$")


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing and exiting."""

    def __init__(self, spec: Spec) -> None:
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


def build(spec: Spec, args: list[str]) -> BuildCommand:
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


def test(spec: Spec, args: list[str]) -> TestCommand:
    parser = _Parser(spec)
    parser.add_argument("source")
    parser.add_argument("--lang", choices=LANGUAGES)
    ns = parser.parse_args(args)
    return TestCommand(source=_check_source(ns.source, spec.usage), lang=ns.lang)


def init(spec: Spec, args: list[str]) -> InitCommand:
    parser = _Parser(spec)
    parser.add_argument("filter")
    parser.add_argument("--lang", required=True, choices=TEMPLATE_LANGUAGES)
    parser.add_argument("--platform", default="istio")
    ns = parser.parse_args(args)
    if not NAME.match(ns.filter):
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


def push(spec: Spec, args: list[str]) -> PushCommand:
    parser = _Parser(spec)
    parser.add_argument("job")
    parser.add_argument("--tag", required=True)
    parser.add_argument("--release", action="store_true")
    ns = parser.parse_args(args)
    if not JOB_ID.match(ns.job):
        raise CommandError(f"invalid JOB {ns.job!r}: the id of a build or test job (12 hex digits)",
                           spec.usage)
    return PushCommand(job=ns.job, tag=check_reference(ns.tag, spec.usage), release=ns.release)


def deploy(spec: Spec, args: list[str]) -> DeployCommand:
    parser = _Parser(spec)
    parser.add_argument("target")
    parser.add_argument("--env", required=True)
    parser.add_argument("--config")
    parser.add_argument("--root-id")
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--adopt", action="store_true")
    ns = parser.parse_args(args)
    if not JOB_ID.match(ns.target):
        try:
            reference.parse(ns.target)
        except reference.InvalidReference as exc:
            raise CommandError(f"invalid IMAGE: {exc} (or give the id of a job that pushed one)",
                               spec.usage) from None
    if not NAME.match(ns.env):
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
                         dry_run=ns.dry_run, force=ns.force, adopt=ns.adopt)


def _environment_and_filter(spec: Spec, args: list[str], filter_required: bool) -> list[str]:
    if not 1 <= len(args) <= 2 or (filter_required and len(args) != 2):
        raise CommandError(f"{spec.name} takes ENV{' FILTER' if filter_required else ' [FILTER]'}",
                           spec.usage)
    for value, what in zip(args, ("ENV", "FILTER"), strict=False):
        if not NAME.match(value):
            raise CommandError(f"invalid {what} {value!r}: a DNS label (lower-case letters, digits, '-')",
                               spec.usage)
    return args


def rollback(spec: Spec, args: list[str]) -> RollbackCommand:
    env, *name = _environment_and_filter(spec, args, filter_required=False)
    return RollbackCommand(env=env, filter=name[0] if name else None)


def undeploy(spec: Spec, args: list[str]) -> UndeployCommand:
    env, name = _environment_and_filter(spec, args, filter_required=True)
    return UndeployCommand(env=env, filter=name)


def search(spec: Spec, args: list[str]) -> SearchCommand:
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


def jobs(spec: Spec, args: list[str]) -> ListCommand:
    if args:
        raise CommandError("jobs takes no arguments", spec.usage)
    return ListCommand(name="jobs")


def status(spec: Spec, args: list[str]) -> ListCommand:
    if len(args) > 1 or (args and not NAME.match(args[0])):
        raise CommandError("status takes at most one ENV", spec.usage)
    return ListCommand(name="status", env=args[0] if args else None)


def history(spec: Spec, args: list[str]) -> ListCommand:
    if not 1 <= len(args) <= 2 or not all(NAME.match(a) for a in args):
        raise CommandError("history takes ENV and an optional FILTER (DNS labels)", spec.usage)
    return ListCommand(name="history", env=args[0], filter=args[1] if len(args) > 1 else None)


def pull_request(spec: Spec, args: list[str]) -> PullRequestCommand:
    if args:
        raise CommandError(f"{spec.name} takes no arguments", spec.usage)
    return PullRequestCommand.model_validate({"name": spec.name})


def _job_id(spec: Spec, args: list[str]) -> str:
    if len(args) != 1 or not JOB_ID.match(args[0]):
        raise CommandError(f"{spec.name} takes one JOB id (12 hex digits, as wasmbot printed it)", spec.usage)
    return args[0]


def cancel(spec: Spec, args: list[str]) -> CancelCommand:
    return CancelCommand(job=_job_id(spec, args))


def retry(spec: Spec, args: list[str]) -> RetryCommand:
    return RetryCommand(job=_job_id(spec, args))


def decide(spec: Spec, args: list[str]) -> ApproveCommand:
    """``approve`` and ``deny``."""
    return ApproveCommand.model_validate({"name": spec.name, "job": _job_id(spec, args)})


def help_topic(spec: Spec, args: list[str]) -> HelpCommand:
    from workers.commands.registry import SPECS

    if len(args) > 1:
        raise CommandError("help takes at most one COMMAND", spec.usage)
    if args and args[0] not in SPECS:
        raise CommandError(f"unknown command {args[0]!r}", spec.usage)
    return HelpCommand(topic=args[0] if args else None)
