"""The build stage in real toolchain containers: languages, caches, templates and the sandbox."""

from __future__ import annotations

import os
import re
import shutil
import stat
from pathlib import Path

import pytest
from buildhelp import run_build
from conftest import ROOT

from workers import abitest, buildcache, recipes, sandbox
from workers.abitest.report import render_text
from workers.platforms import SDKS
from workers.scaffold import LocalDirectory, render

FILTERS = ROOT / "tests" / "filters"


def scaffold(tmp_path: Path, lang: str, name: str | None = None) -> Path:
    name = name or f"t-{lang}"
    LocalDirectory(tmp_path / name).create(render(name, lang, "istio"))
    return tmp_path / name


def check_module(module: bytes, source: Path) -> abitest.Report:
    report = abitest.run(module, abitest.load(source / "wasm-tests.yaml", source.name))
    assert report.ok, render_text(report)
    return report


# -- languages -------------------------------------------------------------------------------

def test_language_detection_on_real_trees(tmp_path: Path) -> None:
    for lang in ("assemblyscript", "go", "rust", "cpp"):
        assert recipes.detect(scaffold(tmp_path, lang)) == lang
    expected = {"assemblyscript": "assemblyscript", "go": "go", "c": "c", "c-features": "c", "cpp": "cpp"}
    for folder, lang in expected.items():
        assert recipes.detect(FILTERS / folder) == lang, folder
    assert recipes.detect(ROOT / "examples" / "hello-c") == "c"
    (tmp_path / "prebuilt").mkdir()
    (tmp_path / "prebuilt" / "filter.wasm").write_bytes(b"\0asm\1\0\0\0")
    assert recipes.detect(tmp_path / "prebuilt") == "wasm"
    mixed = scaffold(tmp_path, "go", "mixed")
    shutil.copy(ROOT / "templates" / "rust" / "Cargo.toml", mixed / "Cargo.toml")
    with pytest.raises(recipes.DetectError, match="looks like rust and go; say which with --lang"):
        recipes.detect(mixed)
    (tmp_path / "empty").mkdir()
    with pytest.raises(recipes.DetectError, match=re.escape("expected Cargo.toml (Rust), go.mod (Go)")):
        recipes.detect(tmp_path / "empty")


def test_wasmbot_yaml_chooses_the_language_and_is_checked(tmp_path: Path) -> None:
    source = scaffold(tmp_path, "go", "configured")
    (source / ".wasmbot.yaml").write_text("build: {lang: rust}\n")
    run = run_build(source, tmp_path / "data")
    assert run.error == "Cargo.lock is missing: builds use locked dependencies, so commit Cargo.lock with the source"
    (source / ".wasmbot.yaml").write_text("bulid: {lang: go}\n")
    run = run_build(source, tmp_path / "data")
    assert run.error is not None and run.error.startswith(".wasmbot.yaml: bulid: Extra inputs are not permitted")


# -- templates: scaffold, build in the real toolchain, pass the harness ---------------------------

@pytest.mark.parametrize("lang", ["assemblyscript", "go", "rust"])
def test_template_scaffolds_builds_and_passes_its_cases(tmp_path: Path, lang: str) -> None:
    source = scaffold(tmp_path, lang)
    run = run_build(source, tmp_path / "data")
    assert run.result is not None, run.error
    assert run.result["lang"] == lang and run.result["root_ids"] == f"t-{lang}"
    report = check_module(run.module, source)
    assert report.abi_version == SDKS[lang].abi_version
    assert [c.name for c in report.passed] == ["adds the configured response header",
                                              "a new plugin configuration changes the header"]


def test_cpp_template_needs_the_sdk_the_local_image_cannot_have(tmp_path: Path) -> None:
    run = run_build(scaffold(tmp_path, "cpp"), tmp_path / "data")
    assert run.error is not None
    assert "the source uses the proxy-wasm C++ SDK but this toolchain image has none" in run.error
    assert "deploy/toolchains/cpp/Containerfile" in run.error


def test_cpp_toolchain_builds_a_cpp_filter_with_libcxx(tmp_path: Path) -> None:
    source = tmp_path / "cpp"
    shutil.copytree(FILTERS / "cpp", source, ignore=shutil.ignore_patterns("build"))
    run = run_build(source, tmp_path / "data")
    assert run.result is not None, run.error
    assert check_module(run.module, source).abi_version == "0.2.1"


# -- caches ------------------------------------------------------------------------------------

def test_unchanged_rebuild_is_served_from_cache_without_a_container(tmp_path: Path) -> None:
    source = scaffold(tmp_path, "go")
    first = run_build(source, tmp_path / "data")
    assert first.result is not None, first.error
    assert "fetching dependencies for go.sum (network allowed, writes only /deps)" in first.log
    started = sandbox.containers_started
    again = run_build(source, tmp_path / "data")
    assert again.result is not None
    assert sandbox.containers_started == started  # asserted from the runner: none started
    assert any(line.startswith("build cache hit") and line.endswith("no container started") for line in again.log)
    assert again.result["module_sha256"] == first.result["module_sha256"]
    assert (first.result["build_cache"], again.result["build_cache"]) == ("miss", "hit")  # for the metrics
    main = source / "main.go"
    main.write_text(main.read_text().replace('"hello"', '"hi"', 1))
    changed = run_build(source, tmp_path / "data")
    assert changed.result is not None and sandbox.containers_started == started + 1  # compile only
    assert any(line.startswith("dependencies from cache") for line in changed.log)
    assert changed.result["module_sha256"] != first.result["module_sha256"]


def test_cache_evicts_least_recently_used_entries(tmp_path: Path) -> None:
    cache = buildcache.Cache(tmp_path / "c", max_bytes=2500)
    for name in ("a", "b", "c"):
        with cache.filling(name) as entry:
            (entry / "filter.wasm").write_bytes(b"x" * 1000)
        os.utime(tmp_path / "c" / name, (1000 + ord(name), 1000 + ord(name)))
    assert sorted(p.name for p in cache.entries()) == ["b", "c"]  # "a", the oldest, went
    assert cache.get("b") is not None  # used now: the newest
    with cache.filling("d") as entry:
        (entry / "filter.wasm").write_bytes(b"x" * 1000)
    assert sorted(p.name for p in cache.entries()) == ["b", "d"]


def test_source_digest_ignores_build_outputs_and_sees_modes(tmp_path: Path) -> None:
    source = scaffold(tmp_path, "rust")
    before = buildcache.source_digest(source)
    (source / "target").mkdir()
    (source / "target" / "junk").write_text("x")
    assert buildcache.source_digest(source) == before
    lib = source / "src" / "lib.rs"
    lib.chmod(lib.stat().st_mode | stat.S_IXUSR)
    assert buildcache.source_digest(source) != before


# -- other sources and failures -------------------------------------------------------------------

def test_precompiled_module_is_accepted_and_garbage_refused(tmp_path: Path, filter_module) -> None:
    source = tmp_path / "prebuilt"
    source.mkdir()
    shutil.copy(filter_module("c"), source / "add-header.wasm")
    run = run_build(source, tmp_path / "data")
    assert run.result is not None and run.result["lang"] == "wasm"
    assert "precompiled module add-header.wasm: nothing to build" in run.log
    (source / "add-header.wasm").write_bytes(b"MZ not wasm")
    assert run_build(source, tmp_path / "data").error == "add-header.wasm is not a WebAssembly module (no \\0asm header)"


def test_compiler_errors_come_first_in_the_failure(tmp_path: Path) -> None:
    source = tmp_path / "broken"
    source.mkdir()
    (source / "filter.c").write_text("int main( { return 0 }\n")
    run = run_build(source, tmp_path / "data")
    assert run.error is not None and run.error.startswith("compiler exited with status 1:\n")
    assert "filter.c:1:11: error: expected parameter declarator" in run.error
    assert any("error: expected parameter declarator" in line for line in run.log)  # streamed too


def test_toolchain_without_a_local_recipe_says_what_to_do(tmp_path: Path) -> None:
    run = run_build(scaffold(tmp_path, "go"), tmp_path / "data", lang="tinygo")
    assert run.error is not None
    assert run.error.startswith("no tinygo toolchain image: set toolchain_images.tinygo, or build one")
    assert "has no local recipe" in run.error


# -- the sandbox, attacked from a build script -----------------------------------------------------

def hostile_crate(tmp_path: Path, build_rs: str) -> Path:
    """A Rust crate whose build script (which cargo runs during the compile) misbehaves."""
    source = tmp_path / "hostile"
    (source / "src").mkdir(parents=True)
    (source / "Cargo.toml").write_text('[package]\nname = "hostile"\nversion = "0.1.0"\nedition = "2021"\n'
                                       '[lib]\ncrate-type = ["cdylib"]\n')
    (source / "Cargo.lock").write_text('version = 4\n\n[[package]]\nname = "hostile"\nversion = "0.1.0"\n')
    (source / "src" / "lib.rs").write_text("")
    (source / "build.rs").write_text(build_rs)
    return source


def test_a_build_that_opens_a_network_connection_fails(tmp_path: Path) -> None:
    source = hostile_crate(tmp_path, """
        use std::net::{TcpStream, ToSocketAddrs};
        fn main() {
            let by_name = "index.crates.io:443".to_socket_addrs();
            println!("cargo:warning=dns {:?}", by_name.is_ok());
            let direct = TcpStream::connect("203.0.113.80:443");
            if direct.is_err() && by_name.is_err() { panic!("no network: {:?}", direct.err()); }
        }""")
    run = run_build(source, tmp_path / "data")
    assert run.error is not None and "no network:" in run.text, run.text
    assert "Network is unreachable" in run.text or "os error 101" in run.text


def test_a_build_writing_outside_its_output_fails(tmp_path: Path) -> None:
    source = hostile_crate(tmp_path, """
        fn main() {
            for path in ["/src/planted", "/etc/planted", "/deps/planted"] {
                if let Err(e) = std::fs::write(path, "x") { println!("cargo:warning={path}: {e}"); }
                else { panic!("wrote {path}"); }
            }
        }""")
    run = run_build(source, tmp_path / "data")
    # The build's /src is the source itself, so its output names that file relative to it.
    assert re.search(r"[\s:]planted: Read-only file system", run.text), run.text
    assert "/etc/planted: Read-only file system" in run.text
    assert "/deps/planted: Read-only file system" in run.text
    assert not (source / "planted").exists()


def test_fork_bomb_is_stopped_by_the_pids_limit(tmp_path: Path) -> None:
    source = hostile_crate(tmp_path, """
        fn main() {
            let mut children = Vec::new();
            for _ in 0..10_000 {
                match std::process::Command::new("sleep").arg("30").spawn() {
                    Ok(c) => children.push(c),
                    Err(e) => panic!("spawn failed after {} processes: {e}", children.len()),
                }
            }
        }""")
    run = run_build(source, tmp_path / "data", build_pids=64, build_timeout=120)
    assert run.error is not None and "spawn failed after" in run.text, run.text
    assert "Resource temporarily unavailable" in run.text
    names = sandbox.podman("ps", "--all", "--format", "{{.Names}}").stdout.split()
    assert not [n for n in names if n.startswith("wasmbot-")]  # nothing left behind


def test_memory_hog_is_stopped_by_the_memory_limit(tmp_path: Path) -> None:
    source = hostile_crate(tmp_path, """
        fn main() {
            let mut hog: Vec<Vec<u8>> = Vec::new();
            for i in 0..64 { hog.push(vec![1u8; 64 << 20]); println!("cargo:warning={} MiB", (i + 1) * 64); }
        }""")
    run = run_build(source, tmp_path / "data", build_memory="512m", build_timeout=120)
    assert run.error is not None
    assert "signal: 9, SIGKILL" in run.text or "status 137" in (run.error or ""), run.text


def test_docker_engine_through_a_cli_compatible_shim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Docker is not installed here; podman speaks its CLI, so a `docker` on PATH that is podman
    runs the Docker code path (no podman-only flags) against real containers."""
    shim = tmp_path / "bin" / "docker"
    shim.parent.mkdir()
    shim.write_text('#!/bin/sh\nexec podman --runtime runc --cgroup-manager cgroupfs "$@"\n')
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim.parent}:{os.environ['PATH']}")
    source = tmp_path / "c"
    shutil.copytree(FILTERS / "c", source, ignore=shutil.ignore_patterns("build"))
    run = run_build(source, tmp_path / "data", container_engine="docker")
    assert run.result is not None, run.error
    check_module(run.module, source)
