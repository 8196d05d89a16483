"""Fixtures: real servers on loopback (Redis, docker-registry), real workers, the toolchain image.

Every pipeline test runs twice, on Redis and on the embedded SQLite default, through
``wasmbot`` CLI processes and ``wasmbot worker`` processes, as a user would run them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import apicontract
import pytest
import redis
from githubapi import GitHubStandIn
from kubeserver import KubeServer
from slackapi import SlackStandIn

from bot.localservices import Service, _wait_until, free_port, healthy, start_redis, start_registry
from workers.config import Settings
from workers.jobs import Job
from workers.store import JobStore, RedisStore, SqliteStore

ROOT = Path(__file__).resolve().parents[1]
TESTDATA = ROOT / "tests" / "testdata"  # vendored public payloads, CRDs and schemas (see its README)


@pytest.fixture(autouse=True)
def api_contract() -> Iterator[None]:
    """Fail the test during which a stand-in got a Slack or GitHub call (or a test sent a webhook
    payload) that the published spec does not allow (tests/apicontract.py).  Checked at teardown,
    after the test's own fixtures have stopped the processes that make the calls."""
    before = len(apicontract.violations)
    yield
    found = apicontract.violations[before:]
    if found:
        pytest.fail(f"{len(found)} call(s) break the published API specs:\n" + "\n".join(found), pytrace=False)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """How many calls were checked against each spec, for the record."""
    counts = apicontract.checked
    if counts:
        terminalreporter.write_line(
            f"API contracts: {counts['github']} GitHub REST calls checked against @octokit/openapi, "
            f"{counts['slack']} Slack Web API calls against slack-api-specs, {counts['webhooks']} webhook "
            f"payloads against @octokit/webhooks-schemas; {len(apicontract.violations)} violation(s)")


@pytest.fixture
def github_api() -> Iterator[GitHubStandIn]:
    """A GitHub stand-in of the test's own (tests/githubapi.py)."""
    stand_in = GitHubStandIn()
    stand_in.start()
    yield stand_in
    stand_in.stop()


@pytest.fixture
def slack_api() -> Iterator[SlackStandIn]:
    """A Slack stand-in of the test's own (tests/slackapi.py); test_image keeps a module-wide one."""
    stand_in = SlackStandIn()
    stand_in.start()
    yield stand_in
    stand_in.stop()


@pytest.fixture(scope="session")
def toolchain_image() -> str:
    proc = subprocess.run(["bash", str(ROOT / "deploy/toolchains/build-image.sh"), "c"],
                          capture_output=True, text=True, check=True)
    return proc.stdout.strip().splitlines()[-1]


@pytest.fixture
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeServer]:
    """A real Kubernetes API server of the test's own, serving the Istio and Gloo CRDs
    (tests/kubeserver.py); about two seconds to start."""
    server = KubeServer(tmp_path_factory.mktemp("kube")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = start_registry(tmp_path_factory.mktemp("registry"))
    yield service
    service.stop()


@pytest.fixture(scope="session")
def redis_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = start_redis(tmp_path_factory.mktemp("redis"))
    yield service
    service.stop()


def registry_host(service: Service) -> str:
    return service.url.removeprefix("http://").replace("127.0.0.1", "localhost")


def manifest_puts(service: Service, repository: str) -> int:
    """How many manifest uploads the registry's access log shows for ``repository``."""
    pattern = re.compile(rf'"PUT /v2/{re.escape(repository)}/manifests/')
    return len(pattern.findall(service.log.read_text()))


@dataclass
class Wasmbot:
    """wasmbot run as separate processes against one backend, plus a direct view of its store."""

    env: dict[str, str]
    store: JobStore
    workdir: Path
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def cli(self, *args: str, timeout: float = 300, cwd: Path = ROOT,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """The CLI; its working directory is the source root of the jobs it submits."""
        return subprocess.run([sys.executable, "-m", "bot.cli", *args], env=self.env | (env or {}), cwd=cwd,
                              capture_output=True, text=True, timeout=timeout, check=False)

    def submit(self, text: str) -> str:
        proc = self.cli("run", "--detach", text)
        assert proc.returncode == 0, proc.stderr
        match = re.search(r"job ([0-9a-f]{12}) submitted", proc.stdout)
        assert match, proc.stdout
        return match.group(1)

    def start_worker(self, *flags: str) -> subprocess.Popen[bytes]:
        """``wasmbot worker --concurrency 1 FLAGS``; its log is ``worker-N.log`` in the workdir."""
        log = (self.workdir / f"worker-{len(self.workers)}.log").open("wb")
        proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "worker", "--concurrency", "1", *flags],
                                env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.workers.append(proc)
        return proc

    def wait(self, job_id: str, until: str = "finished", stage: str | None = None,
             timeout: float = 240) -> Job:
        """Follow the job's event stream until it finishes (or ``stage`` reaches ``until``)."""
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            for event in self.store.events(job_id, after=seen, timeout=2):
                seen = event.seq
                if stage and event.stage == stage and event.state and event.state.value == until:
                    job = self.store.get(job_id)
                    assert job is not None
                    return job
            job = self.store.get(job_id)
            assert job is not None
            if until == "finished" and job.state.finished:
                return job
        raise AssertionError(f"job {job_id} did not reach {stage or 'job'} {until} in {timeout}s")

    def serve(self, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
        """``wasmbot serve`` on ``port`` with ``env`` added, once it answers ``/healthz``."""
        log = self.workdir / "serve.log"
        process = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", "--port", str(port)],
                                   env=self.env | env, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"

        _wait_until(healthy(url), Service("wasmbot serve", process, url, log), timeout=30)
        return process

    def stop_workers(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.workers:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> JobStore:
    """A bare job store of each kind, for tests of the store's own rules."""
    if request.param == "redis":
        service: Service = request.getfixturevalue("redis_service")
        redis.Redis.from_url(service.url).flushdb()
        return RedisStore(service.url)
    return SqliteStore(tmp_path / "jobs.sqlite")


@pytest.fixture(params=["sqlite", "redis"])
def wasmbot(request: pytest.FixtureRequest, tmp_path: Path, toolchain_image: str) -> Iterator[Wasmbot]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WASMBOT_") and k != "REDIS_URL"}
    env.update(WASMBOT_DATA_DIR=str(tmp_path / "data"), WASMBOT_TOOLCHAIN_IMAGES=json.dumps({"c": toolchain_image}),
               WASMBOT_LEASE_TTL="3", WASMBOT_CONFIG=str(tmp_path / "none.toml"),
               WASMBOT_LOG_LINK_KEY="test-log-link-key")  # with Redis, links need a shared key
    store: JobStore
    if request.param == "redis":
        service: Service = request.getfixturevalue("redis_service")
        redis.Redis.from_url(service.url).flushdb()
        env["REDIS_URL"] = service.url
        store = RedisStore(service.url)
    else:
        (tmp_path / "data").mkdir()
        store = SqliteStore(tmp_path / "data" / "jobs.sqlite")
    bot = Wasmbot(env=env, store=store, workdir=tmp_path)
    yield bot
    bot.stop_workers()


@pytest.fixture
def source_dir(tmp_path: Path) -> Path:
    """A scratch source directory below the repository (the CLI's source root is its cwd)."""
    path = ROOT / "tests" / ".sources" / tmp_path.name
    path.mkdir(parents=True)
    yield path  # type: ignore[misc]
    shutil.rmtree(path, ignore_errors=True)


@contextmanager
def front_ends(bot: Wasmbot, env: dict[str, str]) -> Iterator[tuple[str, SlackStandIn, subprocess.Popen[bytes]]]:
    """`wasmbot serve` with the Slack and GitHub front ends on, against stand-ins of their APIs
    (``env`` adds settings): the server's URL, the Slack stand-in and the server process."""
    from githubapi import TOKEN, WEBHOOK_SECRET, GitHubStandIn
    from slackapi import BOT_TOKEN, SIGNING_SECRET

    slack, github = SlackStandIn(), GitHubStandIn()
    slack.start()
    github.start()
    port = free_port()
    process = bot.serve(port, {
        "SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_API_URL": slack.api_url,
        "GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET, "GITHUB_TOKEN": TOKEN, "GITHUB_API_URL": github.url,
        "WASMBOT_PUBLIC_URL": f"http://127.0.0.1:{port}"} | env)
    try:
        yield f"http://127.0.0.1:{port}", slack, process
    finally:
        process.terminate()
        process.wait(30)
        slack.stop()
        github.stop()


def settings_for(bot: Wasmbot) -> Settings:
    return Settings(data_dir=Path(bot.env["WASMBOT_DATA_DIR"]), redis_url=bot.env.get("REDIS_URL"),
                    log_link_key=bot.env.get("WASMBOT_LOG_LINK_KEY"))


def log_link(bot: Wasmbot, server_url: str, job_id: str) -> str:
    """The signed link to ``job_id``'s log that the server at ``server_url`` shows."""
    from bot.loglinks import log_url

    link = log_url(settings_for(bot).model_copy(update={"public_url": server_url}), job_id)
    assert link is not None
    return link


@pytest.fixture(scope="session")
def filter_module() -> Callable[[str], Path]:
    """Build a test filter under tests/filters from source (once per session) and return it."""
    sys.path.insert(0, str(ROOT / "tests" / "filters"))
    from build import build  # type: ignore[import-not-found]

    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            built[name] = build(name)
        return built[name]
    return get


@pytest.fixture
def wasmbot_cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``wasmbot ARGS`` in a subprocess with its own data directory; ``config`` is wasmbot.toml's text."""
    def run(*args: str, config: str = "", env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        toml = tmp_path / "cli-wasmbot.toml"
        toml.write_text(config)
        environment = {k: v for k, v in os.environ.items() if not k.startswith("WASMBOT_")}
        environment |= {"WASMBOT_DATA_DIR": str(tmp_path / "cli-data"), "WASMBOT_CONFIG": str(toml),
                        "WASMBOT_DOCKER_CONFIG": str(tmp_path / "no-docker-config.json")} | (env or {})
        return subprocess.run([sys.executable, "-m", "bot.cli", *args], env=environment, cwd=ROOT,
                              capture_output=True, text=True, timeout=timeout, check=False)
    return run
