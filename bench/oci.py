"""Benchmark: ``wasmbot push|pull`` as whole commands, side by side with ``oras`` and ``crane``.

    python3 bench/oci.py [--sizes 1,10] [--runs 5] [--cpu] [--oras PATH] [--crane PATH]

Against Debian's docker-registry on loopback (started here), with 1 MB and 10 MB modules (a
valid module plus a custom section of base64 text, which gzip shrinks about as much as real
code).  Each figure is the median wall-clock time of ``--runs`` runs of the whole process,
start-up and imports included, as a person or a CI job pays it:

* push: into a new repository with an empty wasmbot data directory (nothing cached);
* re-push: the same module again with the same data directory (layer and load check cached,
  every blob already in the registry): what an unchanged rebuild costs;
* pull: into an empty data directory, module written to a file;
* oras: ``oras push`` of the module as one layer / ``oras pull``; crane: ``crane append`` of the
  compat layer's tar / ``crane export`` of the image: the same bytes over the same registry;
* push oci, pull oci: wasmbot with ``--variant oci``, whose layer is the module itself as in
  oras's image (no gzip, no tar), against oras's push and pull figures above.

``ratio`` is against the faster of oras and crane for the same step, or, when neither is
installed (they are looked up on PATH and in ~/.cache/wasmbot/bin), against the same run's
``python3 -c pass``.  Issue 20's target: push and pull within 1.5x of the faster peer.
``python3 -c pass`` and ``python3 -S -c pass`` (no site-packages: no ``.pth`` files run) are
shown for scale: they are the floor of any Python command here.

wasmbot's modules run from bytecode, as in an installed wasmbot (pip compiles it): they are
compiled once, before the runs, under a cache prefix in the scratch folder, whatever
``PYTHONDONTWRITEBYTECODE`` says (with it, every run would compile them from source again).
"""

from __future__ import annotations

import argparse
import base64
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.localservices import start_registry  # noqa: E402

PEERS = ("oras", "crane")
CONTENT_TYPE = "application/vnd.module.wasm.content.layer.v1+wasm"
SAME_BYTES_AS = {"push oci": ("push", "oras"), "pull oci": ("pull", "oras")}


def module(mb: int) -> bytes:
    """A module wasmbot's load check accepts, padded to ``mb`` MB with a custom section."""
    import wasmtime

    base = bytes(wasmtime.wat2wasm(
        '(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1")) '
        '(func (export "malloc") (param i32) (result i32) i32.const 0))'))
    name = b"bench"
    payload = base64.b64encode(os.urandom(mb * 750_000))[: mb * 1_000_000 - len(base) - 16]
    body = _leb(len(name)) + name + payload
    return base + b"\0" + _leb(len(body)) + body


def _leb(n: int) -> bytes:
    out = b""
    while True:
        byte, n = n & 0x7F, n >> 7
        out += bytes([byte | (0x80 if n else 0)])
        if not n:
            return out


def peer(name: str) -> str | None:
    """The peer on PATH, else the one deploy/tools/NAME.sh builds and caches (as setup.sh runs it)."""
    if found := shutil.which(name):
        return found
    built = subprocess.run(["bash", str(ROOT / "deploy" / "tools" / f"{name}.sh")],
                           capture_output=True, text=True)
    return built.stdout.strip() if built.returncode == 0 else None


def median_time(runs: int, command: Callable[[int], list[str]], env: Callable[[int], dict[str, str]],
                cwd: Path, cpu: bool) -> float:
    """Median seconds of ``command(i)`` run as a process, ``i`` = 0 .. runs-1: wall-clock, or with
    ``--cpu`` the process's user + system CPU time."""
    times = []
    for i in range(runs):
        started, used = time.perf_counter(), _cpu()
        subprocess.run(command(i), cwd=cwd, env=env(i), check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
        times.append(_cpu() - used if cpu else time.perf_counter() - started)
    return statistics.median(times)


def _cpu() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return children.ru_utime + children.ru_stime


Command = Callable[[int], list[str]]


def commands(wasmbot: list[str], peers: dict[str, str], host: str, mb: int
             ) -> dict[str, dict[str, tuple[Command, str]]]:
    """Per step and tool: the command of run ``i`` and its wasmbot data directory (``{i}``: one
    per run, so nothing is cached; without it the runs share one)."""
    repo = f"{host}/bench/{{tool}}-{mb}"
    ours = repo.format(tool="wasmbot")
    steps: dict[str, dict[str, tuple[Command, str]]] = {
        "push": {"wasmbot": (lambda i: [*wasmbot, "push", "plugin.wasm", f"{ours}-{i}:v1"],
                             "push-{mb}-{{i}}")},
        "re-push": {"wasmbot": (lambda i: [*wasmbot, "push", "plugin.wasm", f"{ours}-0:again{i}"],
                                "push-{mb}-0")},  # the data directory of the first push's run 0
        "pull": {"wasmbot": (lambda i: [*wasmbot, "pull", f"{ours}-0:v1", "-o", f"out-{i}.wasm"],
                             "pull-{mb}-{{i}}")},
        "push oci": {"wasmbot": (lambda i: [*wasmbot, "push", "plugin.wasm", f"{ours}-oci-{i}:v1",
                                            "--variant", "oci"], "pushoci-{mb}-{{i}}")},
        "pull oci": {"wasmbot": (lambda i: [*wasmbot, "pull", f"{ours}-oci-0:v1", "-o", f"oci-{i}.wasm"],
                                 "pulloci-{mb}-{{i}}")}}
    if "oras" in peers:
        oras, ref = [peers["oras"], "--plain-http"], repo.format(tool="oras")
        steps["push"]["oras"] = (lambda i: [oras[0], "push", *oras[1:], f"{ref}-{i}:v1",
                                            f"plugin.wasm:{CONTENT_TYPE}"], "x")
        steps["re-push"]["oras"] = (lambda i: [oras[0], "push", *oras[1:], f"{ref}-0:again{i}",
                                               f"plugin.wasm:{CONTENT_TYPE}"], "x")
        steps["pull"]["oras"] = (lambda i: [oras[0], "pull", *oras[1:], f"{ref}-0:v1", "-o", f"oras-{i}"],
                                 "x")
    if "crane" in peers:
        crane, cref = [peers["crane"], "--insecure"], repo.format(tool="crane")
        steps["push"]["crane"] = (lambda i: [*crane, "append", "-f", "plugin.tar", "-t", f"{cref}-{i}:v1"],
                                  "x")
        steps["re-push"]["crane"] = (lambda i: [*crane, "append", "-f", "plugin.tar", "-t",
                                                f"{cref}-0:again{i}"], "x")
        steps["pull"]["crane"] = (lambda i: [*crane, "export", f"{cref}-0:v1", f"crane-{i}.tar"], "x")
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,10", help="module sizes in MB")
    parser.add_argument("--runs", type=int, default=5, help="runs per figure (the median is shown)")
    parser.add_argument("--cpu", action="store_true", help="CPU time (user + system) instead of wall-clock: "
                        "steadier on a busy machine; waits on the registry are left out")
    for name in PEERS:
        parser.add_argument(f"--{name}", metavar="PATH", help=f"the {name} binary (default: on PATH, "
                            f"else what deploy/tools/{name}.sh builds)")
    args = parser.parse_args()
    peers = {name: path for name in PEERS if (path := getattr(args, name) or peer(name))}
    for name in set(PEERS) - peers.keys():
        print(f"{name} not found, and deploy/tools/{name}.sh could not build it: not compared")
    with tempfile.TemporaryDirectory(prefix="wasmbot-bench-oci-") as tmp:
        folder = Path(tmp)
        service = start_registry(folder / "registry")
        try:
            host = service.url.split("://", 1)[1]
            base_env = {k: v for k, v in os.environ.items()
                        if not k.startswith("WASMBOT_") and k != "PYTHONDONTWRITEBYTECODE"}
            base_env |= {"WASMBOT_CONFIG": str(folder / "none.toml"),
                         "WASMBOT_DOCKER_CONFIG": str(folder / "none.json"),
                         "PYTHONPATH": str(ROOT), "DOCKER_CONFIG": str(folder / "docker"),
                         "PYTHONPYCACHEPREFIX": str(folder / "pycache")}
            subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "bot"),
                            str(ROOT / "workers")], env=base_env, check=True, stdout=subprocess.DEVNULL)

            def env_for(data: str) -> Callable[[int], dict[str, str]]:
                return lambda i: base_env | {"WASMBOT_DATA_DIR": str(folder / "data" / data.format(i=i))}

            wasmbot = [sys.executable, "-m", "bot.cli"]
            def python(*flags: str) -> float:
                return median_time(args.runs, lambda i: [sys.executable, *flags, "-c", "pass"], env_for("x"),
                                   folder, args.cpu)

            baseline, bare = python(), python("-S")
            print(f"registry: docker-registry on {service.url}; median {'CPU' if args.cpu else 'wall-clock'} "
                  f"time of {args.runs} whole-command runs; "
                  f"python3 -c pass: {baseline:.3f} s, python3 -S -c pass: {bare:.3f} s")
            print(f"{'size':>5} {'step':<9} {'wasmbot s':>9} " + "".join(f"{n + ' s':>9} " for n in peers)
                  + f"{'ratio':>6}  (to {'the faster peer' if peers else 'python3 -c pass'})")
            for mb in (int(s) for s in args.sizes.split(",")):
                work = folder / f"m{mb}"
                work.mkdir()
                (work / "plugin.wasm").write_bytes(module(mb))
                from workers.oci import image  # the compat layer crane appends: the same tar

                (work / "plugin.tar").write_bytes(image.plugin_tar((work / "plugin.wasm").read_bytes()))
                steps = commands(wasmbot, peers, host, mb)
                rows: dict[str, dict[str, float]] = {}
                for step, by_tool in steps.items():
                    rows[step] = {tool: median_time(args.runs, command, env_for(
                        data.format(step=step, mb=mb, tool=tool)), work, args.cpu)
                        for tool, (command, data) in by_tool.items()}
                for step, times in rows.items():
                    if step in SAME_BYTES_AS:  # wasmbot alone ran: oras's figures of the plain step
                        base, tool = SAME_BYTES_AS[step]
                        times |= {tool: rows[base][tool]} if tool in rows[base] else {}
                    others = [t for name, t in times.items() if name != "wasmbot"]
                    against = min(others) if others else baseline
                    print(f"{mb:>3}MB {step:<9} {times['wasmbot']:9.3f} "
                          + "".join(f"{times[n]:9.3f} " if n in times else f"{'-':>9} " for n in peers)
                          + f"{times['wasmbot'] / against:6.2f}")
        finally:
            service.stop()


if __name__ == "__main__":
    main()
