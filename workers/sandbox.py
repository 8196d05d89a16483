"""Run untrusted build steps in a container (podman or Docker) with hard limits.

Only the mounts a step is given are visible; only those marked writable can be written; the
container runs as ``nobody`` (a worker that is not root: as its own user) with every capability
dropped, a read-only root, no network unless the step is a dependency fetch, and capped memory,
CPU, processes and wall time.  A container that outlives its limit is killed and removed, never
left behind.  Its environment is only what the step is given: the engine itself runs with an
allow-list of the worker's variables, and podman's forwarding of proxy variables is off.  Each
container carries its owner's id (``OWNER_LABEL``), so a later worker can remove what a killed
one left (workers/sweep.py).

With ``CONTAINER_HOST`` set, podman is the remote client of that service (a worker in a
container using the host's podman socket); mount paths are then paths on the service's host.
"""

from __future__ import annotations

import contextvars
import io
import os
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from workers import lease, logcap

CONTAINERS_CONF = Path(__file__).resolve().parents[1] / "deploy" / "containers.conf"
ENGINES: dict[str, tuple[str, ...]] = {
    # Hosts without systemd need runc with cgroupfs; podman reads deploy/containers.conf.
    "podman": ("podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs"),
    "docker": ("docker",),
}
NOBODY = 65534
BACKSTOP_SECONDS = 30
OWNER_LABEL = "io.wasmbot.owner"
# What the engine itself needs from the worker's environment; tokens and the rest stay out.
ENGINE_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TMPDIR", "XDG_RUNTIME_DIR",
              "XDG_CONFIG_HOME", "XDG_DATA_HOME", "CONTAINER_HOST", "CONTAINER_SSHKEY",
              "CONTAINER_CONNECTION", "CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF",
              "CONTAINERS_REGISTRIES_CONF", "REGISTRY_AUTH_FILE", "DOCKER_HOST", "DOCKER_CONFIG",
              "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY", "DOCKER_CONTEXT", "HTTP_PROXY", "HTTPS_PROXY",
              "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")
CHUNK = 1 << 20
containers_started = 0  # in this process: lets callers (and tests) see a cache hit started none


class SandboxError(Exception):
    """The sandbox itself failed (engine missing, image missing), not the code in it."""


class OutputTooLarge(Exception):
    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"output is over {max_bytes / 2**20:g} MiB")
        self.max_bytes = max_bytes


class SandboxTimeout(Exception):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"exceeded its time limit of {seconds:g}s")
        self.seconds = seconds


@dataclass(frozen=True)
class Limits:
    timeout: float
    memory: str = "2g"
    cpus: float = 1.0
    pids: int = 256
    tmpfs: str = "1g"  # /tmp inside the container, counted against the memory limit


@dataclass(frozen=True)
class Capture:
    """The container's stdout goes to ``path`` (its stderr is the log); more than ``max_bytes``
    of it stops the container."""
    path: Path
    max_bytes: int


@dataclass(frozen=True)
class Mount:
    host: Path
    target: str
    writable: bool = False


def engine_argv(engine: str) -> tuple[str, ...]:
    """The engine's command line.  A remote podman (CONTAINER_HOST) refuses the local runtime
    flags: the service was started with its own."""
    if engine == "podman" and os.environ.get("CONTAINER_HOST"):
        return ("podman", "--remote")
    return ENGINES[engine]


def sandbox_user() -> tuple[int, int]:
    """``nobody`` when the worker is root.  A worker that is not root (the container image's
    user) cannot give its mounts to nobody, so its steps run as its own unprivileged ids."""
    if os.geteuid() == 0:
        return NOBODY, NOBODY
    return os.geteuid(), os.getegid()


def engine_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ENGINE_ENV}
    env.setdefault("CONTAINERS_CONF", str(CONTAINERS_CONF))
    return env


def engine_run(engine: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run([*engine_argv(engine), *args], env=engine_env(), capture_output=True,
                              text=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise SandboxError(f"{engine} is not installed; run deploy/setup.sh") from None


def podman(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return engine_run("podman", *args, timeout=timeout)


def remove(name: str, engine: str = "podman") -> None:
    engine_run(engine, "rm", "--force", name)


def exists(name: str, engine: str = "podman") -> bool:
    return engine_run(engine, "container", "inspect", name).returncode == 0


def image_id(image: str, engine: str = "podman") -> str:
    """The image's content id: part of every build cache key, so a new toolchain rebuilds."""
    proc = engine_run(engine, "image", "inspect", "--format", "{{.Id}}", image)
    if proc.returncode != 0:
        raise SandboxError(f"toolchain image {image} is not available to {engine}")
    return proc.stdout.strip()


def run(
    name: str,
    image: str,
    argv: Sequence[str],
    *,
    mounts: Sequence[Mount],
    limits: Limits,
    on_line: Callable[[str], None],
    network: bool = False,
    env: Mapping[str, str] | None = None,
    workdir: str = "/src",
    engine: str = "podman",
    tmpfs: Mapping[str, str] | None = None,
    capture: Capture | None = None,
    line_max: int = logcap.LINE_MAX,
) -> int:
    """Run ``argv`` in ``image`` as container ``name``; return its exit code.

    A container of the same name left by an earlier, killed attempt is removed first, so the
    step can simply be run again.  Output (stdout and stderr; only stderr with ``capture``)
    reaches ``on_line`` line by line while the step runs, each line cut at ``line_max`` bytes
    (workers/logcap.py).  ``tmpfs`` adds size-capped in-memory directories (target: size),
    which vanish with the container.
    """
    remove(name, engine)
    uid, gid = sandbox_user()
    cmd = [
        *engine_argv(engine), "run", "--rm", "--name", name,
        "--network", "bridge" if network else "none",
        "--read-only", "--tmpfs", f"/tmp:rw,exec,size={limits.tmpfs},mode=1777",
        "--user", f"{uid}:{gid}", "--cap-drop", "all", "--security-opt", "no-new-privileges",
        "--memory", limits.memory, "--memory-swap", limits.memory,
        "--cpus", f"{limits.cpus:g}", "--pids-limit", str(limits.pids),
        "--env", "HOME=/tmp", "--workdir", workdir, "--label", f"{OWNER_LABEL}={lease.owner_id()}",
    ]
    if engine == "podman":  # a backstop: conmon kills the container even if this worker dies
        cmd += ["--timeout", str(int(limits.timeout + BACKSTOP_SECONDS)), "--http-proxy=false"]
    for target, size in (tmpfs or {}).items():
        cmd += ["--tmpfs", f"{target}:rw,noexec,size={size},mode=1777"]
    for key, value in (env or {}).items():
        cmd += ["--env", f"{key}={value}"]
    for mount in mounts:
        if mount.writable and os.geteuid() == 0:
            os.chown(mount.host, uid, gid)
        cmd += ["--volume", f"{mount.host}:{mount.target}:{'rw' if mount.writable else 'ro'}"]
    cmd += [image, *argv]
    global containers_started
    containers_started += 1
    try:
        proc = subprocess.Popen(cmd, env=engine_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE if capture else subprocess.STDOUT)
    except FileNotFoundError:
        raise SandboxError(f"{engine} is not installed; run deploy/setup.sh") from None
    assert proc.stdout is not None
    output = proc.stderr if capture and proc.stderr else proc.stdout  # what the log shows
    overflow = threading.Event()

    def drain(stream: io.BufferedReader, into: Capture) -> None:
        """Copy at most ``max_bytes + 1`` bytes, so an endless or sparse output costs no more."""
        written = 0
        with into.path.open("wb") as out:
            while chunk := stream.read1(CHUNK):
                out.write(chunk[:into.max_bytes + 1 - written])
                written += len(chunk)
                if written > into.max_bytes:
                    overflow.set()
                    engine_run(engine, "kill", name, timeout=30)
                    break
        stream.close()

    threads = [threading.Thread(target=contextvars.copy_context().run, daemon=True,
                            args=(logcap.pump, output, line_max, on_line))]
    if capture:
        threads.append(threading.Thread(target=drain, args=(proc.stdout, capture), daemon=True))
    for thread in threads:
        thread.start()
    timed_out = False
    try:
        code = proc.wait(timeout=limits.timeout)
    except subprocess.TimeoutExpired:
        # Our own deadline, so a timeout is known rather than guessed from an exit code
        # (podman's --timeout exits 255, which a failing step can too, and may fire early).
        timed_out = True
        engine_run(engine, "kill", name, timeout=30)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
    finally:
        for thread in threads:
            thread.join(timeout=5)
        remove(name, engine)
    if overflow.is_set() and capture:
        raise OutputTooLarge(capture.max_bytes)
    if timed_out:
        raise SandboxTimeout(limits.timeout)
    if code == 125:
        raise SandboxError(f"{engine} could not run the container (image {image})")
    return code
