"""The terminal front end: ``wasmbot run "/wasm ..."`` and the job commands of the CLI.

A line typed here goes through the same parser and dispatch (bot/dispatch.py) as Slack and
GitHub; a job it makes is followed in the terminal, event by event, until it ends.  When no
worker is running, one is started for the duration of the command, so one command shows the
whole path.  Everything heavy is imported where it is used, so that ``wasmbot --help`` starts
fast.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.dispatch import Reply
    from workers.commands import Command
    from workers.config import Settings
    from workers.jobs import Event, Job

EXIT_FAILED, EXIT_USAGE = 1, 2


def _settings() -> Settings:
    from workers.celery_app import settings

    return settings()


def _age(ts: float) -> str:
    seconds = int(time.time() - ts)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def describe(event: Event, job: Job | None) -> str:
    """One line for one event, as the CLI prints it."""
    from workers.jobs import State

    prefix = f"[{event.stage}] " if event.stage else ""
    if event.kind == "log":
        return prefix + event.text
    if event.kind == "stage" and event.state is not None and job is not None:
        stage = job.stage(event.stage or "")
        elapsed = f" in {stage.elapsed:.1f}s" if event.state.finished and stage.elapsed else ""
        retried = event.state is State.RUNNING and stage.attempts > 1
        attempt = f" (attempt {stage.attempts})" if retried else ""
        text = f"{prefix}{event.state.value}{elapsed}{attempt}"
        return text + (f": {event.text}" if event.text else "")
    return f"job {event.state.value if event.state else ''}"


def follow(job_id: str, after: int = 0) -> Job:
    """Print the job's events as they happen until it finishes; return the final record."""
    from workers.jobs import State
    from workers.pipeline import store

    jobs = store()
    while True:
        for event in jobs.events(job_id, after=after, timeout=1.0):
            after = event.seq
            if event.state is State.PENDING or (event.kind == "job" and event.state is State.QUEUED):
                continue  # the record's creation: nothing has happened yet
            print(describe(event, jobs.get(job_id)), flush=True)
        job = jobs.get(job_id)
        if job is None:
            raise SystemExit(f"job {job_id} disappeared from the store")
        if job.state.finished and not jobs.events(job_id, after=after):
            return job


def summary(job: Job) -> str:
    from workers.jobs import State

    if job.state is State.SUCCEEDED:
        if "digest" in job.artifacts:
            return f"job {job.id} succeeded: pushed {job.artifacts['image']}@{job.artifacts['digest']}"
        return f"job {job.id} succeeded"
    failed = job.failed_stage()
    where = f" in {failed.name}" if failed else ""
    return f"job {job.id} {job.state.value}{where}; retry with: wasmbot retry {job.id}"


@contextmanager
def worker_if_needed(settings: Settings) -> Iterator[None]:
    """Start a worker for the duration of the block unless one is already running."""
    from workers.pipeline import store

    if store().live_workers():
        yield
        return
    # Its log goes to a file: a pipe nobody reads would fill up and stall the worker.
    log_path = settings.data_dir / "cli-worker.log"
    print(f"no worker is running: starting one for this command (its log: {log_path})",
          file=sys.stderr, flush=True)
    with log_path.open("ab") as worker_log:
        proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "worker", "--concurrency", "1"],
                                stdout=subprocess.DEVNULL, stderr=worker_log)
    try:
        yield
    finally:
        proc.send_signal(signal.SIGTERM)  # warm shutdown: the job is done, nothing is lost
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cmd_run(args: argparse.Namespace) -> int:
    """Parse the line, dispatch it as the local user, print the reply, follow the job."""
    from workers import commands

    settings = _settings()
    try:
        command = commands.parse(args.text)
    except commands.CommandError as exc:
        print(f"wasmbot: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return run_command(settings, command, args.text, detach=args.detach)


def cmd_retry(args: argparse.Namespace) -> int:
    from workers import commands

    settings = _settings()
    try:
        command = commands.parse(f"/wasm retry {args.job}")
    except commands.CommandError as exc:
        print(f"wasmbot: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    return run_command(settings, command, f"/wasm retry {args.job}")


def run_command(settings: Settings, command: Command, text: str, *, detach: bool = False) -> int:
    from bot.dispatch import Request, Requester, Status, dispatch
    from bot.permissions import Principal
    from workers import commands
    from workers.jobs import State
    from workers.pipeline import store

    user = getpass.getuser()
    request = Request(command, text, Requester("cli", user, Principal(user)), origin="cli",
                      source_root=os.getcwd())
    job_id = getattr(command, "job", None) if command.name in ("retry", "approve") else None
    after = max((e.seq for e in store().events(job_id)), default=0) if job_id else 0
    # Dispatch first: a refused command (a missing SOURCE) needs no worker, and a queued job
    # waits in the broker for a worker (the one started below when it is followed).
    reply = asyncio.run(dispatch(settings, request))
    if not reply.ok:
        print(f"wasmbot: {plain(reply.text)}", file=sys.stderr)
        return EXIT_USAGE if reply.status is Status.USAGE else EXIT_FAILED
    job = reply.job
    if job is None or command.name in ("cancel", "deny"):
        _print(reply)
        return 0
    if commands.SPECS[command.name].stages:
        print(f"job {job.id} submitted: {text}", flush=True)
        if job.awaiting_approval:
            _print(reply)
            return 0
    else:
        _print(reply)
    if detach:
        return 0
    with worker_if_needed(settings):
        job = follow(job.id, after=after)
    print(summary(job))
    return 0 if job.state is State.SUCCEEDED else EXIT_FAILED


def plain(text: str) -> str:
    """A reply's text for a terminal: without the Markdown code marks chat shows."""
    return text.replace("`", "")


def _print(reply: Reply) -> None:
    if reply.text:
        print(plain(reply.text), flush=True)
    if reply.detail:
        print(reply.detail, flush=True)


def cmd_jobs(args: argparse.Namespace) -> int:
    _settings()
    from workers.pipeline import store

    jobs = store().recent(limit=args.limit)
    if not jobs:
        print("no jobs yet")
    for job in jobs:
        stages = " ".join(f"{s.name}:{s.state.value}" for s in job.stages)
        print(f"{job.id}  {job.state.value:<9}  {_age(job.created_at):>4} ago  "
              f"{job.requester}@{job.origin}  {job.text}  [{stages}]")
    return 0


def cmd_job(args: argparse.Namespace) -> int:
    _settings()
    from workers.pipeline import store

    job = store().get(args.job)
    if job is None:
        print(f"wasmbot: no job {args.job!r}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(job.model_dump_json(indent=2))
        return 0
    print(f"job {job.id}: {job.state.value}\n  command: {job.text}\n"
          f"  by {job.requester} from {job.origin}, {_age(job.created_at)} ago")
    for stage in job.stages:
        took = f" {stage.elapsed:.1f}s" if stage.elapsed else ""
        tries = f", {stage.attempts} attempts" if stage.attempts > 1 else ""
        print(f"  {stage.name:<6} {stage.state.value}{took}{tries}")
    for key, value in job.artifacts.items():
        print(f"  {key}: {value}")
    print("log:")
    for event in store().events(job.id):
        stamp = time.strftime("%H:%M:%S", time.localtime(event.ts))
        print(f"  {stamp} {describe(event, job)}")
    return 0


