"""``wasmbot``: run commands, workers and the web app from a terminal.

``wasmbot run "/wasm build examples/hello-c --tag localhost:5000/hello:v1"`` goes through the
same parser and pipeline as Slack and GitHub will, and starts a worker for the duration of the
command when none is running, so one command shows the whole path.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from bot import imagecli

if TYPE_CHECKING:  # the rest is imported where it is used, so that `wasmbot --help` starts fast
    from workers.config import Settings
    from workers.jobs import Event, Job

EXIT_FAILED, EXIT_USAGE = 1, 2


def _setup() -> Settings:
    from workers.celery_app import configure
    from workers.config import load_settings

    settings = load_settings()
    configure(settings)
    return settings


def _start_logging(args: argparse.Namespace, settings: Settings) -> None:
    """Process logs of the long-running commands: level and format from flags, else settings."""
    from workers import logsetup

    logsetup.configure(args.log_level or settings.log_level, args.log_format or settings.log_format)


def _logging_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-level", "--loglevel", dest="log_level", type=str.upper,
                        choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
                        help="default: WASMBOT_LOG_LEVEL, else INFO")
    parser.add_argument("--log-format", choices=("text", "json"),
                        help="json: one object per line (default: WASMBOT_LOG_FORMAT, else text)")


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
    from workers import commands
    from workers.jobs import State

    settings = _setup()
    try:
        command = commands.parse(args.text)
    except commands.CommandError as exc:
        print(f"wasmbot: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if isinstance(command, commands.HelpCommand):
        print(commands.help_text(command.topic))
        return 0
    if isinstance(command, commands.PullRequestCommand):
        print(f"wasmbot: /wasm {command.name} works in a pull request comment on GitHub", file=sys.stderr)
        return EXIT_USAGE
    if isinstance(command, commands.ListCommand):
        from bot.answers import list_text

        print(list_text(settings, command))
        return 0
    if isinstance(command, commands.ApproveCommand):
        from workers.pipeline import approve, cancel

        try:
            if command.name == "approve":
                job = approve(command.job, by=getpass.getuser())
            else:
                job = cancel(command.job, by=getpass.getuser())
        except (KeyError, ValueError) as exc:
            print(f"wasmbot: {exc}", file=sys.stderr)
            return EXIT_FAILED
        if command.name == "deny":
            print(f"job {job.id} turned down")
            return 0
        print(f"job {job.id} approved", flush=True)
        with worker_if_needed(settings):
            job = follow(job.id)
        print(summary(job))
        return 0 if job.state is State.SUCCEEDED else EXIT_FAILED
    if isinstance(command, commands.CancelCommand):
        from workers.pipeline import cancel

        try:
            job = cancel(command.job, by=getpass.getuser())
        except (KeyError, ValueError) as exc:
            print(f"wasmbot: {exc}", file=sys.stderr)
            return EXIT_FAILED
        print(f"job {job.id} cancelled")
        return 0
    if isinstance(command, commands.SearchCommand):
        from bot.answers import search_text
        from workers.oci.registry import RegistryError

        try:
            print(search_text(settings, command))
        except RegistryError as exc:
            print(f"wasmbot: {exc}", file=sys.stderr)
            return EXIT_FAILED
        return 0
    from workers.pipeline import submit

    with worker_if_needed(settings):
        try:
            job = submit(command, requester=getpass.getuser(), origin="cli", text=args.text,
                         source_root=os.getcwd())
        except ValueError as exc:
            print(f"wasmbot: {exc}", file=sys.stderr)
            return EXIT_FAILED
        print(f"job {job.id} submitted: {args.text}", flush=True)
        if job.awaiting_approval:
            print(f"job {job.id} waits for an approval: someone else allowed to {job.approval['action']} "
                  f"runs /wasm approve {job.id}")
            if job.approval.get("diff"):
                print(job.approval["diff"])
            return 0
        if args.detach:
            return 0
        job = follow(job.id)
    print(summary(job))
    return 0 if job.state is State.SUCCEEDED else EXIT_FAILED


def cmd_retry(args: argparse.Namespace) -> int:
    settings = _setup()
    from workers.jobs import State
    from workers.pipeline import retry, store

    with worker_if_needed(settings):
        try:
            after = max((e.seq for e in store().events(args.job)), default=0)
            job = retry(args.job)
        except (KeyError, ValueError) as exc:
            print(f"wasmbot: {exc}", file=sys.stderr)
            return EXIT_USAGE
        print(f"job {job.id} queued again", flush=True)
        job = follow(job.id, after=after)
    print(summary(job))
    return 0 if job.state is State.SUCCEEDED else EXIT_FAILED


def cmd_jobs(args: argparse.Namespace) -> int:
    _setup()
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
    _setup()
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


def cmd_worker(args: argparse.Namespace) -> int:
    settings = _setup()
    _start_logging(args, settings)
    from workers.celery_app import app, log_worker_notices

    concurrency = args.concurrency or settings.worker_concurrency
    log_worker_notices()
    quiet = ["--quiet"] if (args.log_format or settings.log_format) == "json" else []  # no banner
    app.worker_main([*quiet, "worker", "--queues", "wasmbot", "--concurrency", str(concurrency),
                     "--loglevel", args.log_level or settings.log_level,
                     "--hostname", f"wasmbot-{os.getpid()}@%h", "--without-gossip", "--without-mingle"])
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _setup()
    _start_logging(args, settings)
    import asyncio

    from bot.serving import serve
    from bot.web import JobAccessLogger, make_app

    host, port = args.host or settings.web_host, args.port if args.port is not None else settings.web_port
    asyncio.run(serve(make_app(settings), settings, host, port, access_log_class=JobAccessLogger))
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    """Registry, worker and web app in one process tree; Ctrl-C stops them all."""
    settings = _setup()
    _start_logging(args, settings)
    import logging

    from bot.localservices import ServiceError, start_registry

    log = logging.getLogger("wasmbot.dev")
    services = []
    if not args.no_registry:
        try:
            registry = start_registry(settings.data_dir / "registry", port=args.registry_port)
        except ServiceError as exc:
            log.error("%s", exc)
            return EXIT_FAILED
        services.append(registry)
        log.info("registry: %s (push to 127.0.0.1:%s/NAME:TAG)", registry.url, args.registry_port)
    flags = ["--log-level", args.log_level or settings.log_level,
             "--log-format", args.log_format or settings.log_format]
    children = [subprocess.Popen([sys.executable, "-m", "bot.cli", "worker", *flags]),
                subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", *flags])]
    log.info("worker and web app (http://%s:%s/healthz) started; Ctrl-C stops everything",
             settings.web_host, settings.web_port)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        for child in children:
            child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
        for service in services:
            service.stop()
    log.info("stopped")
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    """One retention pass now: old jobs, their logs and artifacts, then the disk bound."""
    from workers import retention
    from workers.config import load_settings
    from workers.store import open_store

    settings = load_settings()
    try:
        older_than = retention.parse_duration(args.older_than) if args.older_than is not None else None
    except ValueError as exc:
        print(f"wasmbot: --older-than: {exc}", file=sys.stderr)
        return EXIT_USAGE
    report = retention.collect(settings, open_store(settings), older_than=older_than, dry_run=args.dry_run)
    print(json.dumps(report.as_dict()) if args.json else report.text())
    return 0


def _cases_beside(module: Path) -> Path | None:
    """``wasm-tests.yaml`` in the module's directory or the one above (a project's build/)."""
    for folder in (module.parent, module.parent.parent):
        candidate = folder / "wasm-tests.yaml"
        if candidate.is_file():
            return candidate
    return None


def cmd_abi_test(args: argparse.Namespace) -> int:
    from workers import abitest
    from workers.abitest import report as render
    from workers.config import load_settings
    from workers.stages.test import cache_dir, limits

    settings = load_settings()
    module = Path(args.module)
    try:
        wasm = module.read_bytes()
    except OSError as exc:
        print(f"wasmbot: cannot read {module}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    root_id = args.root_id or module.stem
    cases = Path(args.cases) if args.cases else _cases_beside(module)
    try:
        suite = abitest.load(cases, root_id) if cases else abitest.smoke(root_id)
    except abitest.CasesError as exc:
        print(f"wasmbot: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.root_id:
        suite = suite.with_root_id(args.root_id)
    if args.config is not None:
        suite = suite.with_plugin_config(args.config.encode())
    report = abitest.run(wasm, suite, limits=limits(settings), name=module.name,
                         cache_dir=cache_dir(settings))
    if args.junit:
        Path(args.junit).write_text(render.to_junit(report))
    if args.format == "json":
        print(json.dumps(report.to_dict(), indent=2))
    elif args.format == "markdown":
        print(render.render_markdown(report))
    elif args.format == "slack":
        print(render.render_slack(report))
    else:
        print(render.render_text(report, verbose=args.verbose))
    return 0 if report.ok else EXIT_FAILED


def version() -> str:
    """The installed distribution's version (``importlib.metadata`` is loaded only when asked)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("wasmbot")
    except PackageNotFoundError:  # running from a checkout that was never installed
        import tomllib

        with (Path(__file__).resolve().parents[1] / "pyproject.toml").open("rb") as f:
            return str(tomllib.load(f)["project"]["version"])


class _Version(argparse.Action):
    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print wasmbot's version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_args: object) -> None:
        print(f"wasmbot {version()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wasmbot", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="submit a /wasm command and follow its job")
    p.add_argument("text", help='e.g. "/wasm build examples/hello-c --tag localhost:5000/hello:v1"')
    p.add_argument("--detach", action="store_true", help="print the job id and return at once")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("retry", help="run a failed job again from the stage that failed")
    p.add_argument("job")
    p.set_defaults(func=cmd_retry)

    p = sub.add_parser("jobs", help="list recent jobs")
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(func=cmd_jobs)

    p = sub.add_parser("job", help="show one job's record and log")
    p.add_argument("job")
    p.add_argument("--json", action="store_true", help="print the record as JSON")
    p.set_defaults(func=cmd_job)

    p = sub.add_parser("worker", help="start a Celery worker")
    p.add_argument("--concurrency", type=int)
    _logging_flags(p)
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("serve", help="run the web application (health probes, later Slack and GitHub)")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    _logging_flags(p)
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("abi-test", help="load a .wasm the way Envoy would and run its behaviour cases",
                       description="Validate a proxy-wasm module's ABI surface, run it on wasmtime "
                       "with every host function, and check the cases in wasm-tests.yaml. Exits 1 "
                       "when the module would not load or a case fails, 2 on bad input.")
    p.add_argument("module", help="the compiled filter (.wasm)")
    p.add_argument("--cases", help="behaviour cases (default: wasm-tests.yaml beside the module "
                   "or one directory up; without one, a plain GET runs through the filter)")
    p.add_argument("--config", help="plugin configuration (text or JSON) for every case that does "
                   "not set its own")
    p.add_argument("--root-id", help="root id to start the plugin with (default: the cases "
                   "file's, else the module's file name)")
    p.add_argument("--format", choices=("text", "markdown", "slack", "json"), default="text")
    p.add_argument("--junit", metavar="FILE", help="also write JUnit XML to FILE")
    p.add_argument("-v", "--verbose", action="store_true", help="show logs of passing cases too")
    p.set_defaults(func=cmd_abi_test)

    imagecli.register(sub)

    p = sub.add_parser("gc", help="prune old jobs, logs and artifacts and bound the data directory now")
    p.add_argument("--older-than", metavar="DURATION",
                   help="prune finished jobs untouched this long, e.g. 7d or 12h (default: retention_days)")
    p.add_argument("--dry-run", action="store_true", help="report what would go; remove nothing")
    p.add_argument("--json", action="store_true", help="print the counts as one JSON object")
    p.set_defaults(func=cmd_gc)

    p = sub.add_parser("dev", help="run a local registry, a worker and the web app until Ctrl-C")
    p.add_argument("--registry-port", type=int, default=5000)
    p.add_argument("--no-registry", action="store_true")
    _logging_flags(p)
    p.set_defaults(func=cmd_dev)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
        return result
    except Exception as exc:
        from workers.config import ConfigError  # loaded by any command that reads settings

        if not isinstance(exc, ConfigError):
            raise
        print(f"wasmbot: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
