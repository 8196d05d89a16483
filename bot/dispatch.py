"""One dispatch for every front end: a parsed command and who asked in, a reply (or a job) out.

Front ends only translate: a terminal line, a Slack slash command or button, a pull request
comment becomes a ``Request``; the ``Reply`` becomes printed lines, an ephemeral message or a
comment.  What is decided here is decided once for all of them: whether this front end takes
the command (the registry's ``where``), whether the requester may run it (the registry's
``permission``, checked against the policy in bot/permissions.py), and what it does: answered
at once (``HANDLERS``), acting on a job, or submitted as a job of the registry's ``stages``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

from bot import answers, permissions
from bot.markup import quote
from workers import commands
from workers.config import Settings
from workers.jobs import Job
from workers.oci.registry import RegistryError
from workers.store import open_store


class Status(StrEnum):
    OK = "ok"
    USAGE = "usage"  # not a valid command here: the CLI exits 2
    REFUSED = "refused"  # the requester may not do it
    FAILED = "failed"  # a valid command that could not be done (no such job, a registry error)


@dataclass(frozen=True)
class Requester:
    """Who asks: ``id`` as job records keep it ("alice", "slack:U1", "github:octocat"; messages
    name them with bot/markup.py's ``mention``), and the principal the policy checks.  The CLI's
    user runs on the host with the store itself, so the policy guards the chat and pull request
    front ends, not the CLI."""

    front_end: str  # a key of commands.FRONT_ENDS
    id: str
    principal: permissions.Principal
    members: permissions.GroupLookup | None = None  # user groups, for ``group:`` rules


@dataclass(frozen=True)
class Request:
    command: commands.Command
    text: str  # the command as given, kept with its job
    requester: Requester
    origin: str  # "cli", "slack:TEAM:CHANNEL", "github:OWNER/REPO#12"
    source_root: str = ""
    dedupe_key: str | None = None  # the delivery that asked: a redelivery gets the first job back
    # The front end's own re-run of its change (GitHub: retest and ok-to-test on the pull request).
    rerun: Callable[[str], Awaitable[Reply]] | None = None

    @property
    def scope(self) -> str | None:
        """The jobs this request may see and act on: a pull request comment only its own
        repository's (``github:OWNER/REPO``); None: all of them."""
        if self.requester.front_end != "github":
            return None
        return self.origin.partition("#")[0].partition("@")[0]

    def quote(self, text: str) -> str:
        """User text (command text, errors) as the asking front end shows it literally."""
        return quote(text, self.requester.front_end)


@dataclass(frozen=True)
class Reply:
    text: str
    status: Status = Status.OK
    job: Job | None = None  # the job the command made or acted on
    new: bool = False  # this request made ``job`` (a redelivery of it finds the job its first made)
    detail: str = ""  # a preformatted block: a list, an approval's diff
    syntax: str = ""  # how to highlight ``detail`` ("diff")

    @property
    def ok(self) -> bool:
        return self.status is Status.OK


Handler = Callable[[Settings, Request], Awaitable[Reply]]


async def dispatch(settings: Settings, request: Request) -> Reply:
    """Check, then do: what every front end calls once it has parsed a command."""
    return await admit(settings, request) or await execute(settings, request)


async def admit(settings: Settings, request: Request) -> Reply | None:
    """The checks that need no job: whether this front end takes the command and whether the
    requester may run it.  None when it may go on.  Fast, so Slack can answer within its ack."""
    spec = commands.SPECS[request.command.name]
    front_end = request.requester.front_end
    if front_end not in spec.where:
        return Reply(f"`/wasm {spec.name}` is not available in {commands.FRONT_ENDS[front_end]}; "
                     f"use {commands.where_text(spec)}", Status.USAGE)
    if isinstance(request.command, commands.CancelCommand | commands.RetryCommand | commands.ApproveCommand):
        return None  # checked against the job they act on
    env = getattr(request.command, "env", None) or ""
    return await _refused(settings, request, spec.action.format(env=env))


async def execute(settings: Settings, request: Request) -> Reply:
    handler = HANDLERS.get(request.command.name, _submit)
    return await handler(settings, request)


async def _refused(settings: Settings, request: Request, action: str, *,
                   job: Job | None = None) -> Reply | None:
    who = request.requester
    if who.front_end == "cli":
        return None
    reason = await permissions.check(permissions.policy_of(settings), action, who.principal,
                                     front_end=who.front_end, owner=job.requester if job else None,
                                     members=who.members)
    return Reply(reason, Status.REFUSED) if reason else None


# -- answered at once --------------------------------------------------------------------------


async def _help(settings: Settings, request: Request) -> Reply:
    command = request.command
    assert isinstance(command, commands.HelpCommand)
    front_end = request.requester.front_end
    if front_end == "github" and command.topic is None:
        return Reply(commands.help_markdown(front_end))
    return Reply(request.quote(commands.help_text(front_end, command.topic)))


async def _search(settings: Settings, request: Request) -> Reply:
    assert isinstance(request.command, commands.SearchCommand)
    try:
        return Reply(request.quote(await asyncio.to_thread(answers.search_text, settings, request.command)))
    except RegistryError as exc:
        return Reply(request.quote(str(exc)), Status.FAILED)


async def _list(settings: Settings, request: Request) -> Reply:
    assert isinstance(request.command, commands.ListCommand)
    listed = await asyncio.to_thread(answers.list_text, settings, request.command, request.scope)
    return Reply("", detail=listed)


async def _pull_request(settings: Settings, request: Request) -> Reply:
    assert request.rerun is not None, "only front ends with a re-run take retest and ok-to-test"
    return await request.rerun(request.command.name)


# -- acting on a job ---------------------------------------------------------------------------


async def _on_job(settings: Settings, request: Request) -> Reply:
    """cancel, retry, approve, deny: the job's requester counts as ``requester`` in the policy."""
    from workers import pipeline

    command = request.command
    assert isinstance(command, commands.CancelCommand | commands.RetryCommand | commands.ApproveCommand)
    job = await asyncio.to_thread(open_store(settings).get, command.job)
    deciding = isinstance(command, commands.ApproveCommand)
    if job is None or not answers.in_scope(job, request.scope):  # another repository's: not its business
        return Reply(f"there is no job `{command.job}`", Status.FAILED)
    if deciding and not job.approval:
        return Reply(f"job `{job.id}` is not waiting for an approval (it is {job.state.value})",
                     Status.FAILED)
    env = job.approval.get("action", "").removeprefix("deploy:")
    refused = await _refused(settings, request, commands.SPECS[command.name].action.format(env=env), job=job)
    if refused:
        return refused
    who = request.requester
    if command.name == "approve" and permissions.policy_of(settings).same_person(job.requester, who.id):
        # Under another front end's id ([people]) too: nobody approves their own change.
        return Reply("you asked for this change: someone else who may approve must approve it", Status.FAILED,
                     job=job)
    try:
        if command.name == "approve":
            done = await asyncio.to_thread(pipeline.approve, job.id, who.id)
            return Reply(f"job `{job.id}` approved: it runs now", job=done)
        if command.name == "retry":
            return Reply(f"job `{job.id}` queued again", job=await asyncio.to_thread(pipeline.retry, job.id))
        done = await asyncio.to_thread(pipeline.cancel, job.id, who.id)
    except (KeyError, ValueError) as exc:
        return Reply(request.quote(str(exc)), Status.FAILED,
                     job=await asyncio.to_thread(open_store(settings).get, job.id))
    return Reply(f"job `{job.id}` {'turned down' if command.name == 'deny' else 'cancelled'}", job=done)


# -- jobs --------------------------------------------------------------------------------------


async def _submit(settings: Settings, request: Request) -> Reply:
    """A command the registry gives stages: record its job and queue it (or hold it for approval)."""
    from workers.pipeline import submit_once

    try:
        job, new = await asyncio.to_thread(
            submit_once, request.command, requester=request.requester.id, origin=request.origin,
            text=request.text, source_root=request.source_root, dedupe_key=request.dedupe_key)
    except ValueError as exc:
        return Reply(request.quote(str(exc)), Status.FAILED)
    if job.awaiting_approval:
        env = job.approval["action"].removeprefix("deploy:")
        return Reply(f"job `{job.id}` waits for an approval: someone else allowed to approve:{env} "
                     f"answers `/wasm approve {job.id}`", job=job, new=new,
                     detail=job.approval.get("diff", ""), syntax="diff")
    return Reply(f"job `{job.id}` queued: {request.quote(request.text)}", job=job, new=new)


HANDLERS: dict[str, Handler] = {
    "help": _help,
    "search": _search,
    "jobs": _list,
    "status": _list,
    "history": _list,
    "cancel": _on_job,
    "retry": _on_job,
    "approve": _on_job,
    "deny": _on_job,
    "retest": _pull_request,
    "ok-to-test": _pull_request,
}
