"""Every ``/wasm`` command, declared once: its name, usage, help line, parser, who may run it,
which front ends take it, the stages of its job and whether it waits for an approval.

As with Prow's plugins, each command carries its own help, so the CLI's help, ``/wasm help`` in
Slack, the pull-request help comment and docs/commands.md are all generated from this table
(tests/test_registry.py checks that they agree).  Adding a command is one entry here (with its
parser in parsing.py and its model in models.py) plus its handler in bot/dispatch.py, or just
the entry when it is a job: its ``stages`` say what the job runs.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass

from workers.commands import parsing
from workers.commands.models import Command, CommandError, HelpCommand
from workers.commands.parsing import LANGUAGES, PLATFORMS, TEMPLATE_LANGUAGES

MAX_COMMAND_LENGTH = 1000
FRONT_ENDS = {"slack": "Slack", "github": "pull request comments", "cli": "the CLI", "web": "the web hub"}
EVERYWHERE = frozenset({"slack", "github", "cli"})  # every front end people type commands into
# The web hub (bot/hub/) types nothing: its buttons run these commands as the signed-in person.
HUB_ACTIONS = EVERYWHERE | {"web"}
CHAT_AND_CLI = frozenset({"cli", "slack"})
OVERVIEW = "/wasm COMMAND [ARGS]; /wasm help lists the commands"


@dataclass(frozen=True)
class Spec:
    """One command.  ``permission`` is the action checked (bot/permissions.py), where ``{env}``
    is the environment the command changes or, for approve and deny, the one the job they
    decide on would change; the requester of a job a command acts on counts as ``requester``."""

    name: str
    usage: str
    summary: str
    parse: Callable[[Spec, list[str]], Command]
    where: frozenset[str] = CHAT_AND_CLI  # the front ends that take it (keys of FRONT_ENDS)
    permission: str = ""  # "" is the command's own name
    allowed: tuple[str, ...] = ("*",)  # who may, when [permissions] does not say (bot/permissions.py)
    stages: tuple[str, ...] = ()  # the stages of its job; () when it is answered at once
    approval: bool = False  # waits for an approval when it changes a protected environment

    @property
    def action(self) -> str:
        return self.permission or self.name


def _langs(names: tuple[str, ...]) -> str:
    return "|".join(names)


COMMANDS: tuple[Spec, ...] = (
    Spec("help", "/wasm help [COMMAND]", "show the commands, or one command's usage", parsing.help_topic,
         where=EVERYWHERE),
    Spec("build",
         f"/wasm build SOURCE [--tag REGISTRY/REPOSITORY[:TAG] [--release]] [--lang {_langs(LANGUAGES)}]",
         "build SOURCE into filter.wasm, test it under wasmtime and push it to --tag "
         "(--release announces it)", parsing.build, stages=("build", "test", "push")),
    Spec("init",
         f"/wasm init NAME --lang {_langs(TEMPLATE_LANGUAGES)} [--platform {_langs(PLATFORMS)}[:VERSION]]",
         "scaffold a new filter from a template, then build and test it", parsing.init,
         stages=("scaffold", "build", "test")),
    Spec("test", f"/wasm test SOURCE [--lang {_langs(LANGUAGES)}]",
         "build SOURCE and run its ABI tests under wasmtime, without pushing", parsing.test,
         stages=("build", "test")),
    Spec("push", "/wasm push JOB --tag REGISTRY/REPOSITORY[:TAG] [--release]",
         "push the module a build or test job made and tested (--release announces it)", parsing.push,
         stages=("build", "test", "push")),  # build and test come done from the job named
    Spec("deploy", "/wasm deploy IMAGE|JOB --env ENV [--config JSON] [--root-id ID] [--dry-run] [--force] "
         "[--adopt]",
         "deploy a pushed module to an environment (--dry-run shows what would be applied)", parsing.deploy,
         where=HUB_ACTIONS, permission="deploy:{env}", allowed=(), stages=("deploy",), approval=True),
    Spec("rollback", "/wasm rollback ENV [FILTER]",
         "deploy again the digest that was deployed before the current one", parsing.rollback,
         where=EVERYWHERE, permission="deploy:{env}", allowed=(), stages=("deploy",), approval=True),
    Spec("undeploy", "/wasm undeploy ENV FILTER",
         "remove a filter's WasmPlugin (or Gloo filter entry), and nothing else", parsing.undeploy,
         where=EVERYWHERE, permission="deploy:{env}", allowed=(), stages=("undeploy",), approval=True),
    Spec("status", "/wasm status [ENV]", "show what wasmbot has deployed where", parsing.status,
         where=EVERYWHERE),
    Spec("history", "/wasm history ENV [FILTER]",
         "show who deployed, rolled back or removed what in ENV, and who approved it", parsing.history,
         where=EVERYWHERE),
    Spec("jobs", "/wasm jobs", "list recent jobs", parsing.jobs, where=EVERYWHERE),
    Spec("search", "/wasm search [REGISTRY/]TEXT",
         "find module images whose repository name contains TEXT, with their tags", parsing.search),
    Spec("cancel", "/wasm cancel JOB", "stop a queued or running job after its current stage", parsing.cancel,
         where=EVERYWHERE, allowed=("requester",)),
    Spec("retry", "/wasm retry JOB", "run a failed or cancelled job again from the stage that failed",
         parsing.retry, allowed=("requester",)),
    Spec("approve", "/wasm approve JOB", "approve a change to a protected environment (not your own)",
         parsing.decide, where=HUB_ACTIONS, permission="approve:{env}", allowed=()),
    Spec("deny", "/wasm deny JOB", "turn down a change to a protected environment", parsing.decide,
         where=HUB_ACTIONS, permission="approve:{env}", allowed=()),
    Spec("retest", "/wasm retest",
         "in a pull request: build and test its head commit again (also /wasm build, /wasm test)",
         parsing.pull_request, where=frozenset({"github"})),
    Spec("ok-to-test", "/wasm ok-to-test",
         "in a pull request from a fork or a new contributor: a member lets its head commit run",
         parsing.pull_request, where=frozenset({"github"}), allowed=("github:trusted",)),
)
SPECS: dict[str, Spec] = {spec.name: spec for spec in COMMANDS}
ALIASES = {"list": "search"}


def parse(text: str) -> Command:
    """Turn the text of a command (with or without the leading ``/wasm``) into a command."""
    if len(text) > MAX_COMMAND_LENGTH:
        raise CommandError(f"command is longer than {MAX_COMMAND_LENGTH} characters", OVERVIEW)
    if any((ord(ch) < 32 and ch not in "\t\n") or ord(ch) == 127 for ch in text):
        raise CommandError("command contains control characters", OVERVIEW)
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise CommandError(f"cannot read command: {exc}", OVERVIEW) from None
    if words and words[0] in ("/wasm", "wasm"):
        words = words[1:]
    if not words:
        return HelpCommand()
    name = ALIASES.get(words[0], words[0])
    spec = SPECS.get(name)
    if spec is None:
        raise CommandError(f"unknown command {name!r}", OVERVIEW)
    return spec.parse(spec, words[1:])


def available(front_end: str) -> list[Spec]:
    return [spec for spec in COMMANDS if front_end in spec.where]


def where_text(spec: Spec) -> str:
    """Where a command can be given, in words: "Slack or the CLI"."""
    names = [FRONT_ENDS[key] for key in FRONT_ENDS if key in spec.where]
    return " or ".join(names) if len(names) < 3 else ", ".join(names[:-1]) + " or " + names[-1]


def help_text(front_end: str, topic: str | None = None) -> str:
    """Help for the commands ``front_end`` takes, or the usage and summary of one (plain text)."""
    if topic is not None:
        spec = SPECS[topic]
        where = "" if front_end in spec.where else f"\n(in {where_text(spec)})"
        return f"usage: {spec.usage}\n{spec.summary}{where}"
    specs = available(front_end)
    width = max(len(s.name) for s in specs)
    lines = ["wasmbot commands:"]
    lines += [f"  {spec.name:<{width}}  {spec.summary}" for spec in specs]
    lines.append("Run /wasm help COMMAND for its usage.")
    return "\n".join(lines)


def help_markdown(front_end: str) -> str:
    """The same help as a Markdown list, for a pull request comment."""
    title = "wasmbot commands in pull requests:" if front_end == "github" else "wasmbot commands:"
    return "\n".join([title, ""] + [f"- `{spec.usage}`: {spec.summary}" for spec in available(front_end)])


def _who(spec: Spec) -> str:
    if not spec.allowed:
        return f"nobody until `{spec.action.replace('{env}', 'ENV')}` is granted"
    names = {"*": "anyone", "requester": "the job's requester", "github:trusted": "trusted GitHub members"}
    return ", ".join(names.get(r, r) for r in spec.allowed)


def commands_markdown() -> str:
    """docs/commands.md: the command table, generated (``wasmbot commands --markdown``)."""
    lines = [
        "# Commands",
        "",
        "Generated from workers/commands/registry.py by `wasmbot commands --markdown`; "
        "tests/test_registry.py checks it is current.",
        "",
        "| Command | Usage | What it does | Where | Who may, by default | Approval |",
        "|---|---|---|---|---|---|",
    ]
    for spec in COMMANDS:
        usage = spec.usage.replace("|", "\\|")
        approval = "in a protected environment" if spec.approval else ""
        lines.append(f"| {spec.name} | `{usage}` | {spec.summary} | {where_text(spec)} | {_who(spec)} "
                     f"| {approval} |")
    lines += ["", "Permissions (`[permissions]` in wasmbot.toml) override the defaults: see "
              "docs/slack.md (Permissions).", "", "## Adding a command", "",
              "1. Its model in `workers/commands/models.py` (a frozen pydantic model named by `name`).",
              "2. Its parser in `workers/commands/parsing.py` (words in, the model or a `CommandError` out).",
              "3. Its entry in `COMMANDS` in `workers/commands/registry.py`: usage, help line, front ends, "
              "permission, and `stages` if it runs as a job.",
              "4. Unless it is a job, its handler in `bot/dispatch.py` (`HANDLERS`).",
              "5. `wasmbot commands --markdown > docs/commands.md`.",
              "6. Its lines in `SCRIPT` of `tests/test_golden_replies.py`, then "
              "`WASMBOT_GOLDEN_UPDATE=1 python3 -m pytest tests/test_golden_replies.py` "
              "and read the diff.", ""]
    return "\n".join(lines)
