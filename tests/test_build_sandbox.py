"""The build sandbox against hostile sources: option injection, the worker's environment, links
and special files, the /out quota, and what a killed worker leaves behind (issue 16).

Real podman, the real toolchain images, the real build stage and real worker processes."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import stat
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from buildhelp import run_build
from conftest import ROOT, Wasmbot
from test_build import FILTERS, hostile_crate
from test_pipeline import slow_source

from workers import lease, recipes, sandbox
from workers.jobs import State
from workers.recipes import Recipe

SECRET = "ghp_test0123456789abcdefSECRET"
HOSTILE_LINKER = ("#!/bin/sh\necho HOSTILE-LINKER-RAN >&2\ntouch /out/pwned\n"
                  "ln -sf /proc/self/environ /out/filter.wasm\n")


def tree_text(root: Path) -> bytes:
    """Every regular file's bytes below ``root`` (where a leaked secret would land)."""
    return b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.is_symlink())


# -- 0: no file name becomes an option; no worker secret reaches a build ------------------------

@pytest.mark.parametrize("lang, source_file, ext", [
    ("c", ROOT / "examples" / "hello-c" / "filter.c", "c"),
    ("cpp", FILTERS / "cpp" / "filter.cc", "cc"),
])
def test_a_file_name_never_becomes_a_compiler_option(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lang: str, source_file: Path, ext: str) -> None:
    """``-B.c`` would make clang look for its linker in ``.c/``: the tree's own "linker"."""
    monkeypatch.setenv("GITHUB_TOKEN", SECRET)
    source = tmp_path / "inj"
    (source / f".{ext}").mkdir(parents=True)
    shutil.copy(source_file, source / f"filter.{ext}")
    (source / f"-B.{ext}").write_text(  # legitimate, oddly named
        '__attribute__((export_name("odd_name_compiled_as_a_file"))) int odd(void) { return 1; }\n')
    shutil.copy(source_file.parent / "wasm-tests.yaml", source / "wasm-tests.yaml")
    for name in ("wasm-ld-14", "wasm-ld", "ld"):
        (source / f".{ext}" / name).write_text(HOSTILE_LINKER)
        (source / f".{ext}" / name).chmod(0o755)
    run = run_build(source, tmp_path / "data")
    assert run.result is not None, run.error  # compiled as a file, not read as an option
    assert run.result["lang"] == lang
    assert "HOSTILE-LINKER-RAN" not in run.text
    module = run.module
    assert module.startswith(b"\0asm") and b"odd_name_compiled_as_a_file" in module
    assert SECRET.encode() not in module + tree_text(tmp_path / "data")


def test_the_worker_environment_never_reaches_a_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", SECRET)
    monkeypatch.setenv("HTTPS_PROXY", "http://user:proxysecret@127.0.0.1:9")  # podman forwards proxies
    monkeypatch.setenv("WASMBOT_SLACK_BOT_TOKEN", "xoxb-slacksecret")
    source = hostile_crate(tmp_path, """
        fn main() { for (k, v) in std::env::vars() { println!("cargo:warning=ENV {k}={v}"); } }""")
    run = run_build(source, tmp_path / "data")
    assert run.result is not None, run.error
    assert "ENV HOME=/tmp" in run.text  # the build did print its environment
    for secret in (SECRET, "proxysecret", "slacksecret"):
        assert secret not in run.text


# -- 1: links and special files, in the source and in /out --------------------------------------

def make_socket(path: Path) -> None:
    sock = socket.socket(socket.AF_UNIX)
    cwd = os.getcwd()
    os.chdir(path.parent)  # a relative bind: tmp paths can exceed a socket address's 108 bytes
    try:
        sock.bind(path.name)
    finally:
        os.chdir(cwd)
        sock.close()


def link_out(link: Path, outside: Path) -> None:
    """A relative link that climbs out of the tree to a host file starting with \\0asm."""
    link.parent.mkdir()
    link.symlink_to(os.path.relpath(outside, link.parent))


BAD_ENTRIES: dict[str, tuple[Callable[[Path, Path], None], str]] = {
    "device link": (lambda src, _: (src / "x.wasm").symlink_to("/dev/zero"),
                    "x.wasm is a symbolic link to an absolute path"),
    "link out": (lambda src, outside: link_out(src / "sub" / "f.wasm", outside),
                 "sub/f.wasm is a symbolic link that leaves the source"),
    "fifo": (lambda src, _: os.mkfifo(src / "pipe.c"), "pipe.c is a FIFO"),
    "socket": (lambda src, _: make_socket(src / "sock.c"), "sock.c is a socket"),
    "device": (lambda src, _: os.mknod(src / "zero.c", stat.S_IFCHR | 0o600, os.makedev(1, 5)),
               "zero.c is a character device"),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", list(BAD_ENTRIES))
def test_links_and_special_files_in_a_source_are_refused_before_reading(tmp_path: Path, case: str) -> None:
    outside = tmp_path / "host.wasm"
    outside.write_bytes(b"\0asm\1\0\0\0 a host file")
    source = tmp_path / "src"
    source.mkdir()
    make, message = BAD_ENTRIES[case]
    make(source, outside)
    run = run_build(source, tmp_path / "data")
    assert run.error is not None and run.error.startswith(message), run.error
    assert "only regular files, directories and links inside it" in run.error


def test_links_inside_a_source_are_kept(tmp_path: Path) -> None:
    source = tmp_path / "c"
    shutil.copytree(FILTERS / "c", source, ignore=shutil.ignore_patterns("build"))
    (source / "docs").mkdir()
    (source / "docs" / "wasm-tests.yaml").symlink_to("../wasm-tests.yaml")
    run = run_build(source, tmp_path / "data")
    assert run.result is not None, run.error


@pytest.mark.parametrize("make, what", [
    ("ln -s /proc/self/environ /out/filter.wasm", "/out/filter.wasm is not a regular file"),
    ("mkfifo /out/filter.wasm", "/out/filter.wasm is not a regular file"),
    ("echo x > /out/filter.wasm; ln -s /proc/self/environ /out/extra", "/out/extra is not a regular file"),
    ("true", "the build produced no filter.wasm"),
])
def test_out_may_hold_only_regular_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         make: str, what: str) -> None:
    """A compile step that leaves a link or a FIFO in /out (what a hostile linker could do)."""
    monkeypatch.setenv("GITHUB_TOKEN", SECRET)
    monkeypatch.setitem(recipes.RECIPES, "c", Recipe("c", "c", make))
    source = tmp_path / "c"
    shutil.copytree(FILTERS / "c", source, ignore=shutil.ignore_patterns("build"))
    run = run_build(source, tmp_path / "data")
    assert run.error is not None and run.error.startswith(what), run.error
    assert SECRET.encode() not in tree_text(tmp_path / "data")


# -- 2: the /out quota, through a real worker ----------------------------------------------------

def sparse_output_crate(path: Path) -> None:
    """A crate whose configured linker writes a sparse 3 GiB module (cargo honours .cargo/config)."""
    crate = hostile_crate(path.parent / "crate", 'fn main() {}')
    for item in crate.iterdir():
        shutil.move(str(item), path / item.name)
    (path / ".cargo").mkdir()
    (path / ".cargo" / "config.toml").write_text('[target.wasm32-wasip1]\nlinker = "/src/evil-ld"\n')
    (path / "evil-ld").write_text('#!/bin/sh\nwhile [ "$#" -gt 0 ]; do [ "$1" = -o ] && out="$2"; shift; done\n'
                                  'exec truncate -s 3G "$out"\n')
    (path / "evil-ld").chmod(0o755)


def disk_use(root: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            with contextlib.suppress(FileNotFoundError):  # a file that went while we walked
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


def worker_rss(worker: psutil.Process) -> int:
    """The largest resident set among the worker's Python processes (itself and its pool)."""
    rss = 0
    for proc in [worker, *worker.children(recursive=True)]:
        try:
            if "python" in proc.name():
                rss = max(rss, proc.memory_info().rss)
        except psutil.NoSuchProcess:
            pass
    return rss


@pytest.mark.timeout(600)
def test_an_output_over_the_quota_fails_the_job_and_stays_bounded(wasmbot: Wasmbot, source_dir: Path) -> None:
    sparse_output_crate(source_dir)
    data = Path(wasmbot.env["WASMBOT_DATA_DIR"])
    worker = psutil.Process(wasmbot.start_worker().pid)
    baseline = disk_use(data)
    job_id = wasmbot.submit(f"/wasm build tests/.sources/{source_dir.name}")
    peak_rss = peak_disk = seen = 0
    deadline = time.monotonic() + 540
    while True:
        peak_rss, peak_disk = max(peak_rss, worker_rss(worker)), max(peak_disk, disk_use(data) - baseline)
        job = wasmbot.store.get(job_id)
        assert job is not None
        if job.state.finished or time.monotonic() > deadline:
            break
        for event in wasmbot.store.events(job_id, after=seen, timeout=0.3):  # sample again on progress
            seen = event.seq
    log = "\n".join(e.text for e in wasmbot.store.events(job_id) if e.kind == "log")
    assert job.state is State.FAILED, log
    assert job.stage("build").error == "output is over 64 MiB", log
    assert 0 < peak_rss < 300 * 2**20, peak_rss
    assert peak_disk < 64 * 2**20 * 1.1, peak_disk
    assert not list((data / "cache" / "builds").glob("*")) if (data / "cache" / "builds").exists() else True
    assert not list(data.rglob("wasmbot-out-*"))


# -- 8: a new worker sweeps what a killed one left -----------------------------------------------

def labelled_containers() -> dict[str, str]:
    names = sandbox.podman("ps", "--all", "--filter", f"label={sandbox.OWNER_LABEL}",
                           "--format", "{{.Names}}").stdout.split()
    return {n: sandbox.podman("container", "inspect", "--format",
                              f'{{{{index .Config.Labels "{sandbox.OWNER_LABEL}"}}}}', n).stdout.strip()
            for n in names}


def wait_for(condition: Callable[[], object], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.mark.timeout(600)
def test_a_new_worker_sweeps_what_a_killed_one_left(wasmbot: Wasmbot, source_dir: Path) -> None:
    slow_source(source_dir, functions=3000)
    data = Path(wasmbot.env["WASMBOT_DATA_DIR"])
    first = wasmbot.start_worker()
    job_id = wasmbot.submit(f"/wasm build tests/.sources/{source_dir.name}")
    wasmbot.wait(job_id, stage="build", until="running")
    wait_for(lambda: f"wasmbot-{job_id}-build" in labelled_containers(), "the build container")
    wait_for(lambda: list((data / "artifacts" / job_id).glob("wasmbot-out-*")), "the output file")
    dead_owner = labelled_containers()[f"wasmbot-{job_id}-build"]
    dead_tag = dead_owner.replace(":", "@")
    # What a predecessor killed while filling the cache, or an older version, would leave too.
    builds = data / "cache" / "builds"
    builds.mkdir(parents=True, exist_ok=True)
    (builds / f".abc@{dead_tag}.x1y2").mkdir()
    (builds / "half.tmp").write_bytes(b"x")
    old_tmp = Path("/tmp") / f"wasmbot-out-{job_id}"
    old_tmp.mkdir()
    # A live worker's scratch and container, which must survive the sweep.
    live_scratch = builds / f".def@{lease.path_tag()}.z9"
    live_scratch.mkdir()
    live = f"wbtest-live-{job_id}"
    started = sandbox.podman("run", "-d", "--name", live, "--label", f"{sandbox.OWNER_LABEL}={lease.owner_id()}",
                             "--network", "none", json.loads(wasmbot.env["WASMBOT_TOOLCHAIN_IMAGES"])["c"],
                             "sleep", "300")
    assert started.returncode == 0, started.stderr
    try:
        os.killpg(first.pid, signal.SIGKILL)  # the worker and its pool process, mid-build
        first.wait()
        second = wasmbot.start_worker()
        log = wasmbot.workdir / "worker-1.log"
        wait_for(lambda: log.exists() and "startup sweep:" in log.read_text(), "the startup sweep")
        assert dead_owner not in labelled_containers().values()
        assert not [p for p in (data / "artifacts" / job_id).glob("wasmbot-out-*") if dead_tag in p.name]
        assert not (builds / f".abc@{dead_tag}.x1y2").exists() and not (builds / "half.tmp").exists()
        assert not old_tmp.exists()
        assert live_scratch.is_dir() and live in labelled_containers()
        job = wasmbot.wait(job_id)
        assert job.state is State.SUCCEEDED
        assert second.poll() is None
        assert not list((data / "artifacts").rglob("wasmbot-out-*"))
        assert not [n for n, owner in labelled_containers().items() if owner != lease.owner_id()]
    finally:
        sandbox.remove(live)
        shutil.rmtree(live_scratch, ignore_errors=True)
