"""wasmbot's container image, as a platform team would run it: built by deploy/image.sh from the
top-level Dockerfile, `wasmbot serve` and `wasmbot worker` in podman containers (host network,
loopback only) against a real Redis, a signed Slack command through the container to the Slack
stand-in, and a build that the containerised worker runs through the host's podman socket."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import tomllib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
import yaml
from conftest import ROOT, Wasmbot
from slackapi import BOT_TOKEN, SIGNING_SECRET, SlackStandIn, signed_headers, slash_command

from bot.localservices import Service, _wait_until, free_port
from workers import sandbox
from workers.artifacts import in_store
from workers.jobs import State
from workers.store import RedisStore

UID = 10001  # the image's user (Dockerfile)
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
SOCKET_IN_CONTAINER = "/run/podman/podman.sock"


def podman(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return sandbox.podman(*args, timeout=timeout)


@pytest.fixture(scope="session")
def image() -> str:
    """localhost/wasmbot:latest, built (or found in podman's caches) by deploy/image.sh."""
    proc = subprocess.run(["bash", str(ROOT / "deploy" / "image.sh")], capture_output=True, text=True,
                          timeout=1800, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def podman_socket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The host's podman API service on a socket the image's user may use (group-owned by it)."""
    folder = tmp_path_factory.mktemp("podman")
    path = folder / "podman.sock"
    log = folder / "service.log"
    process = subprocess.Popen([*sandbox.ENGINES["podman"], "system", "service", "--time=0", f"unix://{path}"],
                               env=sandbox.engine_env(), stdout=log.open("wb"), stderr=subprocess.STDOUT)
    service = Service("podman system service", process, f"unix://{path}", log)

    def listening() -> bool:
        with socket.socket(socket.AF_UNIX) as sock:
            try:
                sock.connect(str(path))
                return True
            except OSError:
                return False

    _wait_until(listening, service)
    os.chown(path, 0, UID)
    os.chmod(path, 0o660)
    yield path
    service.stop()


@dataclass
class Containers:
    """Containers of the image, each run by an attached ``podman run --rm`` whose output is its
    log; all are removed at teardown."""

    image: str
    logs: Path
    running: dict[str, Service] = field(default_factory=dict)

    def start(self, role: str, *args: str, command: tuple[str, ...], ready: Callable[[str], bool],
              timeout: float = 30) -> str:
        """A container named after ``role``, once ``ready(name)`` holds (its log if it exits first)."""
        name = f"{role}-{uuid.uuid4().hex[:8]}"
        log = self.logs / f"{name}.log"
        process = subprocess.Popen(
            [*sandbox.ENGINES["podman"], "run", "--rm", "--name", name, "--network", "host", "--hostname", name,
             *args, self.image, *command],
            env=sandbox.engine_env(), stdout=log.open("wb"), stderr=subprocess.STDOUT)
        self.running[name] = Service(f"container {name}", process, name, log)
        _wait_until(lambda: ready(name), self.running[name], timeout=timeout)
        return name

    def log(self, name: str) -> str:
        return self.running[name].log.read_text()

    def remove_all(self) -> None:
        for name, service in self.running.items():
            podman("rm", "--force", "--time", "10", name)
            service.stop()


@pytest.fixture(scope="module")
def containers(image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containers]:
    running = Containers(image, tmp_path_factory.mktemp("container-logs"))
    yield running
    running.remove_all()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shared by the server and worker containers, mounted at the same path as on this host: the
    host's podman mounts the job's directories into the toolchain containers by these paths."""
    path = tmp_path_factory.mktemp("shared") / "data"
    path.mkdir()
    os.chown(path, UID, UID)
    return path


@pytest.fixture(scope="module")
def backend(redis_service: Service, tmp_path_factory: pytest.TempPathFactory) -> Wasmbot:
    """The host side: a CLI that submits to the containers' Redis, and a view of the job store."""
    redis.Redis.from_url(redis_service.url).flushdb()
    workdir = tmp_path_factory.mktemp("submitter")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WASMBOT_") and k != "REDIS_URL"}
    env |= {"REDIS_URL": redis_service.url, "WASMBOT_DATA_DIR": str(workdir / "data"),
            "WASMBOT_CONFIG": str(workdir / "none.toml")}
    return Wasmbot(env=env, store=RedisStore(redis_service.url), workdir=workdir)


def shared(data_dir: Path, redis_url: str) -> tuple[str, ...]:
    """What both containers get: Redis, the data directory and the source tree at host paths."""
    return ("--env", f"REDIS_URL={redis_url}", "--env", f"WASMBOT_DATA_DIR={data_dir}",
            "--volume", f"{data_dir}:{data_dir}", "--volume", f"{ROOT}:{ROOT}:ro")


@pytest.fixture(scope="module")
def slack_api() -> Iterator[SlackStandIn]:
    stand_in = SlackStandIn()
    stand_in.start()
    yield stand_in
    stand_in.stop()


@dataclass(frozen=True)
class Server:
    container: str
    url: str


@pytest.fixture(scope="module")
def server(containers: Containers, data_dir: Path, redis_service: Service, slack_api: SlackStandIn) -> Server:
    """`wasmbot serve` in the image on a free loopback port, once it answers /healthz."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    name = containers.start(
        "wasmbot-serve", *shared(data_dir, redis_service.url),
        "--env", f"WASMBOT_WEB_PORT={port}", "--env", f"WASMBOT_PUBLIC_URL={url}",
        "--env", f"WASMBOT_SOURCE_ROOT={ROOT}", "--env", "WASMBOT_SLACK_UPDATE_INTERVAL=0.2",
        "--env", f"SLACK_SIGNING_SECRET={SIGNING_SECRET}", "--env", f"SLACK_BOT_TOKEN={BOT_TOKEN}",
        "--env", f"SLACK_API_URL={slack_api.api_url}",
        command=("serve", "--host", "127.0.0.1"),  # loopback, not the image's 0.0.0.0: host network
        ready=lambda _: answers(f"{url}/healthz"))
    return Server(name, url)


@pytest.fixture(scope="module")
def worker(containers: Containers, data_dir: Path, redis_service: Service, podman_socket: Path,
           toolchain_image: str, backend: Wasmbot) -> str:
    """`wasmbot worker` in the image, running builds through the host's podman socket; its name
    (the container's hostname) once it has registered in the job store."""
    return containers.start(
        "wasmbot-worker", *shared(data_dir, redis_service.url),
        "--volume", f"{podman_socket}:{SOCKET_IN_CONTAINER}",
        "--env", f"CONTAINER_HOST=unix://{SOCKET_IN_CONTAINER}",
        "--env", f"WASMBOT_TOOLCHAIN_IMAGES={json.dumps({'c': toolchain_image})}",
        command=("worker", "--concurrency", "1"),
        ready=lambda name: any(w.startswith(f"{name}:") for w in backend.store.live_workers()), timeout=60)


def answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).status_code == 200
    except requests.ConnectionError:
        return False


def inspect(image: str) -> dict[str, Any]:
    proc = podman("image", "inspect", image)
    assert proc.returncode == 0, proc.stderr
    record: dict[str, Any] = json.loads(proc.stdout)[0]
    return record


# -- the image -------------------------------------------------------------------------------

def test_the_image_runs_as_its_own_user_with_a_healthcheck_and_labels(image: str) -> None:
    record = inspect(image)
    config = record["Config"]
    assert config["User"] == f"{UID}:{UID}"
    assert config["Entrypoint"] == ["wasmbot"] and config["Cmd"] == ["serve", "--host", "0.0.0.0"]
    assert "8080/tcp" in config["ExposedPorts"]
    assert "WASMBOT_DATA_DIR=/var/lib/wasmbot" in config["Env"]
    assert record["ManifestType"] == "application/vnd.docker.distribution.manifest.v2+json"  # keeps HEALTHCHECK
    assert "/healthz" in " ".join(record["Healthcheck"]["Test"])
    labels = config["Labels"]
    assert labels["org.opencontainers.image.version"] == VERSION
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"

    who = podman("run", "--rm", "--entrypoint", "id", image)
    assert who.returncode == 0 and who.stdout.startswith(f"uid={UID}(wasmbot) gid={UID}(wasmbot)"), who
    version = podman("run", "--rm", image, "--version")
    assert (version.returncode, version.stdout) == (0, f"wasmbot {VERSION}\n"), version
    # /wasm init renders the templates, which are not in the wheel: the image puts them beside it.
    templates = podman("run", "--rm", "--entrypoint", "python3", image, "-c",
                       "from workers.scaffold import TEMPLATES; print(sorted(p.name for p in TEMPLATES.iterdir()))")
    assert "'rust'" in templates.stdout and "'go'" in templates.stdout, templates


def test_the_version_comes_from_pyproject_in_a_tree_that_is_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib import metadata

    from bot import cli

    def not_installed(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    assert cli.version() == VERSION
    monkeypatch.setattr(metadata, "version", not_installed)
    assert cli.version() == VERSION
    with pytest.raises(SystemExit) as exited:
        cli.main(["--version"])
    assert exited.value.code == 0


def test_the_server_in_the_image_is_healthy_and_ready(server: Server) -> None:
    assert requests.get(f"{server.url}/healthz", timeout=10).json() == {"status": "ok"}
    ready = requests.get(f"{server.url}/readyz", timeout=10)
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"broker": "ok", "store": "ok"}}
    check = podman("healthcheck", "run", server.container)  # the image's HEALTHCHECK command, run once
    assert check.returncode == 0, check
    health = podman("inspect", "--format", "{{.State.Health.Status}}", server.container)
    assert health.stdout.strip() == "healthy", health


# -- the worker ------------------------------------------------------------------------------

def test_a_worker_in_the_image_builds_through_the_host_podman_socket(worker: str, backend: Wasmbot,
                                                                     containers: Containers, data_dir: Path) -> None:
    def tasks_done() -> int:
        return len(re.findall(r"Task wasmbot\.stage\[[0-9a-f-]+\] succeeded", containers.log(worker)))

    before = tasks_done()
    submitted = backend.cli("run", "--detach", "/wasm build examples/hello-c")
    assert submitted.returncode == 0, submitted.stderr
    assert "no worker is running" not in submitted.stderr  # the CLI saw the container's worker
    match = re.search(r"job ([0-9a-f]{12}) submitted", submitted.stdout)
    assert match, submitted.stdout
    job = backend.wait(match.group(1))
    assert job.state is State.SUCCEEDED, [(s.name, s.state, s.error) for s in job.stages]
    # Every stage ran in the container (celery logs a task's success just after the job's record).
    _wait_until(lambda: tasks_done() - before == len(job.stages), containers.running[worker])
    log = "\n".join(e.text for e in backend.store.events(job.id) if e.kind == "log")
    assert "compiling (no network, read-only source)" in log  # a real container build, not a cache hit
    # kept by the container's worker in the job store both sides share, read here
    module = in_store(backend.store, job.artifacts["module"])
    assert module is not None and module.startswith(b"\0asm"), job.artifacts["module"]


def test_the_worker_healthcheck_of_the_compose_file_passes(worker: str) -> None:
    test = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())["services"]["worker"]["healthcheck"]["test"]
    assert test[0] == "CMD"
    check = podman("exec", worker, *test[1:])
    assert check.returncode == 0, check


# -- Slack, end to end -----------------------------------------------------------------------

def test_a_signed_slack_command_through_the_server_container(server: Server, worker: str,
                                                             slack_api: SlackStandIn) -> None:
    body = slash_command("build examples/hello-c", slack_api.response_url(f"commands/{uuid.uuid4().hex}"))
    acked = requests.post(f"{server.url}/slack/events", data=body.encode(),
                          headers=signed_headers(body, "application/x-www-form-urlencoded"), timeout=10)
    assert acked.status_code == 200 and acked.text == ""

    def succeeded(api: SlackStandIn) -> dict[str, object] | None:
        edits = [c.args for c in api.called("chat.update")]
        return next((e for e in reversed(edits) if "*succeeded*" in json.dumps(e["blocks"])), None)

    final = slack_api.wait_for(succeeded)
    posted = slack_api.called("chat.postMessage")
    assert len(posted) == 1 and posted[0].args["channel"] == "C111" and posted[0].token == BOT_TOKEN
    assert {c.args["ts"] for c in slack_api.called("chat.update")} == {final["ts"]}
    forged = requests.post(f"{server.url}/slack/events", data=body.encode(),
                           headers=signed_headers(body, "application/x-www-form-urlencoded", secret="wrong"),
                           timeout=10)
    assert forged.status_code == 401
