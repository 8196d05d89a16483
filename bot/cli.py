"""``wasmbot``: the program — the terminal front end, workers, the web server, image tools.

``wasmbot run "/wasm build examples/hello-c --tag localhost:5000/hello:v1"`` goes through the
same parser and dispatch as Slack and GitHub (bot/terminal.py).  This module only wires the
subcommands; it is the one place above every front end (docs/architecture.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bot import imagecli

if TYPE_CHECKING:  # the rest is imported where it is used, so that `wasmbot --help` starts fast
    from workers.config import Settings

EXIT_FAILED, EXIT_USAGE = 1, 2


def _terminal(name: str) -> Callable[[argparse.Namespace], int]:
    """``bot.terminal.NAME``, imported when run: it loads asyncio, which the image commands skip."""
    def run(args: argparse.Namespace) -> int:
        from bot import terminal

        command: Callable[[argparse.Namespace], int] = getattr(terminal, name)
        return command(args)
    return run


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


def cmd_commands(args: argparse.Namespace) -> int:
    from workers import commands

    if args.topic is not None and args.topic not in commands.SPECS:
        print(f"wasmbot: unknown command {args.topic!r}; wasmbot commands lists them", file=sys.stderr)
        return EXIT_USAGE
    print(commands.commands_markdown() if args.markdown else commands.help_text("cli", args.topic))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from workers import routing

    try:
        toolchains = routing.parse(args.toolchains)
    except ValueError as exc:
        print(f"wasmbot: --toolchains: {exc}", file=sys.stderr)
        return EXIT_USAGE
    settings = _setup()
    _start_logging(args, settings)
    from workers.celery_app import app, log_worker_notices

    concurrency = args.concurrency or settings.worker_concurrency
    log_worker_notices()
    quiet = ["--quiet"] if (args.log_format or settings.log_format) == "json" else []  # no banner
    queues = ",".join(routing.queues(toolchains))
    app.worker_main([*quiet, "worker", "--queues", queues, "--concurrency", str(concurrency),
                     "--loglevel", args.log_level or settings.log_level,
                     "--hostname", f"wasmbot-{os.getpid()}@%h", "--without-gossip", "--without-mingle"])
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _setup()
    _start_logging(args, settings)
    from bot.application import make_app
    from bot.serving import run
    from bot.web import JobAccessLogger

    host, port = args.host or settings.web_host, args.port if args.port is not None else settings.web_port
    run(make_app(settings), settings, host, port, access_log_class=JobAccessLogger)
    return 0


def cmd_dev(args: argparse.Namespace) -> int:
    """Registry, worker and web app in one process tree; Ctrl-C stops them all."""
    settings = _setup()
    _start_logging(args, settings)
    import logging
    import signal
    import subprocess

    from bot.localservices import ServiceError, start_registry, stop

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
        stop(children, timeout=30)
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
    guess = "" if args.root_id else "the module's file name"
    cases = Path(args.cases) if args.cases else _cases_beside(module)
    try:
        suite = abitest.load(cases, root_id, guess) if cases else abitest.smoke(root_id, root_id_guess=guess)
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

    p = sub.add_parser("run", help="submit a /wasm command and follow its job",
                       epilog="`wasmbot commands` lists the /wasm commands and what they do.")
    p.add_argument("text", help='e.g. "/wasm build examples/hello-c --tag localhost:5000/hello:v1"')
    p.add_argument("--detach", action="store_true", help="print the job id and return at once")
    p.set_defaults(func=_terminal("cmd_run"))

    p = sub.add_parser("commands", help="list the /wasm commands (from the command registry)")
    p.add_argument("topic", nargs="?", help="one command: its usage")
    p.add_argument("--markdown", action="store_true", help="the table of docs/commands.md")
    p.set_defaults(func=cmd_commands)

    p = sub.add_parser("retry", help="run a failed job again from the stage that failed")
    p.add_argument("job")
    p.set_defaults(func=_terminal("cmd_retry"))

    p = sub.add_parser("jobs", help="list recent jobs")
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(func=_terminal("cmd_jobs"))

    p = sub.add_parser("job", help="show one job's record and log")
    p.add_argument("job")
    p.add_argument("--json", action="store_true", help="print the record as JSON")
    p.set_defaults(func=_terminal("cmd_job"))

    p = sub.add_parser("worker", help="start a Celery worker")
    p.add_argument("--concurrency", type=int)
    p.add_argument("--toolchains", metavar="LIST",
                   help="the build toolchains this host runs, comma-separated (c, cpp, go, tinygo, rust, "
                   "assemblyscript), or none; default: all. Every worker also runs the stages that need "
                   "no toolchain (test, push, deploy, ...); docs/operations.md \"Routing\"")
    _logging_flags(p)
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("serve", help="serve the web front end (probes, metrics, job logs), and Slack "
                       "and GitHub when configured")
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
        from workers.configsource import ConfigError

        if not isinstance(exc, ConfigError):
            raise
        print(f"wasmbot: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
