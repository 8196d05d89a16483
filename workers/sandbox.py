"""Run untrusted build steps in a podman container with no network and hard limits.

The source is mounted read-only, only the output directory is writable, the container runs as
``nobody`` with every capability dropped, and memory, CPU, process count and wall time are
capped.  A container that outlives its limit is killed and removed, never left behind.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

CONTAINERS_CONF = Path(__file__).resolve().parents[1] / "deploy" / "containers.conf"
PODMAN = ("podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs")
NOBODY = "65534:65534"


class SandboxError(Exception):
    """The sandbox itself failed (podman missing, image missing), not the code in it."""


class SandboxTimeout(Exception):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"exceeded its time limit of {seconds:g}s")
        self.seconds = seconds


@dataclass(frozen=True)
class Limits:
    timeout: float
    memory: str = "1g"
    cpus: float = 1.0
    pids: int = 256


def podman_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("CONTAINERS_CONF", str(CONTAINERS_CONF))
    return env


def podman(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PODMAN, *args], env=podman_env(), capture_output=True, text=True,
                          timeout=timeout, check=False)


def remove(name: str) -> None:
    podman("rm", "--force", "--ignore", "--time", "0", name)


def exists(name: str) -> bool:
    return podman("container", "exists", name).returncode == 0


BACKSTOP_SECONDS = 30


def run(
    name: str,
    image: str,
    argv: Sequence[str],
    *,
    source: Path,
    output: Path,
    limits: Limits,
    on_line: Callable[[str], None],
) -> int:
    """Run ``argv`` in ``image`` as container ``name``; return its exit code.

    A container of the same name left by an earlier, killed attempt is removed first, so the
    step can simply be run again.
    """
    remove(name)
    os.chown(output, 65534, 65534)
    cmd = [
        *PODMAN, "run", "--rm", "--name", name,
        "--network", "none", "--read-only", "--tmpfs", "/tmp:rw,size=256m",
        "--user", NOBODY, "--cap-drop", "all", "--security-opt", "no-new-privileges",
        "--memory", limits.memory, "--memory-swap", limits.memory,
        "--cpus", f"{limits.cpus:g}", "--pids-limit", str(limits.pids),
        # A backstop: conmon kills the container even if this worker dies meanwhile.
        "--timeout", str(int(limits.timeout + BACKSTOP_SECONDS)),
        "--volume", f"{source}:/src:ro", "--volume", f"{output}:/out:rw",
        "--workdir", "/src", image, *argv,
    ]
    try:
        proc = subprocess.Popen(cmd, env=podman_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace")
    except FileNotFoundError:
        raise SandboxError("podman is not installed; run deploy/setup.sh") from None
    stdout = proc.stdout
    assert stdout is not None

    def pump() -> None:
        for line in stdout:
            on_line(line.rstrip("\n"))

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    timed_out = False
    try:
        code = proc.wait(timeout=limits.timeout)
    except subprocess.TimeoutExpired:
        # Our own deadline, so a timeout is known rather than guessed from an exit code
        # (podman's --timeout exits 255, which a failing step can too, and may fire early).
        timed_out = True
        podman("kill", name, timeout=30)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
    finally:
        reader.join(timeout=5)
        remove(name)
    if timed_out:
        raise SandboxTimeout(limits.timeout)
    if code == 125:
        raise SandboxError(f"podman could not run the container (image {image})")
    return code
