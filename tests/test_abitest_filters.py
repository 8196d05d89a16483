"""Real modules from real SDKs, built from source, through realistic cases.

AssemblyScript on @solo-io/proxy-runtime (ABI 0.2.0), Go on the proxy-wasm Go SDK with the
standard Go toolchain (0.2.0), C on the raw ABI with clang and wasi-libc (0.2.1), and a C
module that exercises body buffering, callouts, queues, shared data and ticks.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from workers import abitest
from workers.abitest import cases
from workers.abitest.report import render_text

Build = Callable[[str], Path]
FILTERS = Path(__file__).resolve().parent / "filters"


def run_filter(filter_module: Build, name: str, suite: cases.Suite | None = None) -> abitest.Report:
    wasm = filter_module(name).read_bytes()
    suite = suite or abitest.load(FILTERS / name / "wasm-tests.yaml", name)
    return abitest.run(wasm, suite, name=f"{name}.wasm")


@pytest.mark.parametrize(("name", "abi_version", "allocator", "wasi"), [
    ("assemblyscript", "0.2.0", "malloc", "wasi_unstable.proc_exit"),
    ("go", "0.2.0", "proxy_on_memory_allocate", "wasi_snapshot_preview1.fd_write"),
    ("c", "0.2.1", "proxy_on_memory_allocate", None),
])
def test_sdk_filter_passes_its_cases(filter_module: Build, name: str, abi_version: str,
                                     allocator: str, wasi: str | None) -> None:
    report = run_filter(filter_module, name)
    assert report.ok, render_text(report)
    assert (report.abi_version, report.allocator, report.root_ids) == (abi_version, allocator, ["add-header"])
    assert [c.name for c in report.passed] == [
        "adds the configured response header", "a request with x-deny gets a local 403",
        "another plugin configuration is applied on reconfigure"]
    assert {"proxy_send_local_response", "proxy_add_header_map_value"} <= set(report.imports_used)
    if wasi:
        assert wasi in report.imports
    if name == "assemblyscript":  # proxy-runtime misspells one gRPC callback
        assert [str(w) for w in report.warnings] == [
            "proxy_on_grpc_trailing_metadata: exported, but no host calls a callback of this name; did "
            "you mean proxy_on_grpc_receive_trailing_metadata? (Envoy ignores it)"]
    else:
        assert report.warnings == []


@pytest.mark.parametrize("name", ["assemblyscript", "go", "c"])
def test_a_wrong_expectation_fails_with_expected_and_got(filter_module: Build, name: str) -> None:
    suite = cases.parse({"plugin_config": "actual", "cases": [{
        "name": "wrong value", "expect": {"response": {"headers": {"equal": {"x-wasm-filter": "wanted"}}}}}]},
        "add-header")
    report = run_filter(filter_module, name, suite)
    assert not report.ok
    assert [str(d) for d in report.cases[0].differences] == [
        "response.headers['x-wasm-filter']: expected 'wanted', got 'actual'"]


def test_assemblyscript_abort_is_reported_with_its_message(filter_module: Build) -> None:
    """proxy-runtime aborts (proc_exit 255) for a root id nobody registered."""
    report = run_filter(filter_module, "assemblyscript", abitest.smoke("not-registered"))
    assert not report.ok
    failure = str(report.cases[0].differences[0])
    assert "proxy_on_context_create: the module called proc_exit(255)" in failure
    assert any("Missing root context factory for root id: not-registered" in line
               for line in report.cases[0].logs)


@pytest.mark.parametrize("name", ["assemblyscript", "go", "c"])
def test_without_plugin_configuration_the_default_value_is_used(filter_module: Build, name: str) -> None:
    suite = cases.parse({"cases": [{"name": "default", "expect": {
        "response": {"headers": {"equal": {"x-wasm-filter": "hello"}}}}}]}, "add-header")
    report = run_filter(filter_module, name, suite)
    assert report.ok, render_text(report)


def test_driver_features_on_a_c_module(filter_module: Build) -> None:
    report = run_filter(filter_module, "c-features")
    assert report.ok, render_text(report)
    assert report.root_ids == ["body", "auth", "grpc", "queue", "tick", "stall"]
    by_name = {c.name: c for c in report.cases}
    assert by_name["an unanswered callout is answered as a failure"].notes == [
        "HTTP callout to 'auth-service' has no answer in the case; answered as a failure, as Envoy "
        "does on timeout"]
    assert "never called proxy_continue_stream" in by_name["a stream paused for good is reported as stalled"].notes[0]
    assert by_name["concurrent streams each get their own callout answer and header"].passed


def test_compiled_modules_are_cached_on_disk(filter_module: Build, tmp_path: Path) -> None:
    from workers.abitest import vm

    wasm = filter_module("c").read_bytes()
    vm._modules.clear()
    first = abitest.run(wasm, abitest.smoke("add-header"), cache_dir=tmp_path)
    vm._modules.clear()
    second = abitest.run(wasm, abitest.smoke("add-header"), cache_dir=tmp_path)
    third = abitest.run(wasm, abitest.smoke("add-header"), cache_dir=tmp_path)
    assert (first.compile_source, second.compile_source, third.compile_source) == ("compiled", "disk", "memory")
    assert len(list(tmp_path.glob("*.cwasm"))) == 1
    (next(tmp_path.glob("*.cwasm"))).write_bytes(b"garbage")
    vm._modules.clear()
    assert abitest.run(wasm, abitest.smoke("add-header"), cache_dir=tmp_path).compile_source == "compiled"


def test_harness_catches_proxy_runtimes_empty_configuration_bug(filter_module: Build, tmp_path: Path) -> None:
    """Left to the SDK, proxy-runtime 0.1.8 traps on an empty configuration, as it would in Envoy."""
    import shutil
    import subprocess

    source = FILTERS / "assemblyscript"
    filter_module("assemblyscript")  # installs node_modules
    work = tmp_path / "as"
    shutil.copytree(source, work, ignore=shutil.ignore_patterns("node_modules", "build"))
    (work / "node_modules").symlink_to(source / "node_modules")
    index = work / "assembly" / "index.ts"
    text = index.read_text()
    start, end = text.index("  onConfigure("), text.index("  createContext(")
    index.write_text(text[:start] + text[end:])  # fall back to RootContext.onConfigure
    subprocess.run(["npm", "run", "asbuild"], cwd=work, check=True, capture_output=True, timeout=300)
    wasm = (work / "build" / "filter.wasm").read_bytes()
    report = abitest.run(wasm, abitest.smoke("add-header"), name="as-sdk-default.wasm")
    assert not report.ok
    assert "proxy_on_configure: trap (memory out of bounds)" in str(report.cases[0].differences[0])
    configured = abitest.run(wasm, abitest.smoke("add-header", plugin_config=b"x"), name="as-sdk-default.wasm")
    assert configured.ok, render_text(configured)


@pytest.mark.parametrize("name", ["assemblyscript", "go", "c"])
def test_concurrent_streams_through_real_sdks(filter_module: Build, name: str) -> None:
    """Interleaved streams on one VM: each denied or served on its own, none confused."""
    suite = cases.parse({"plugin_config": "many", "cases": [
        {"name": "served", "streams": 5, "expect": {
            "response": {"headers": {"equal": {"x-wasm-filter": "many"}}}, "local_response": None}},
        {"name": "denied", "streams": 3, "request": {"headers": {"x-deny": "1"}}, "expect": {
            "local_response": {"code": 403}, "response": {"headers": {"equal": {":status": "403"}}}}},
    ]}, "add-header")
    report = run_filter(filter_module, name, suite)
    assert report.ok, render_text(report)


def test_a_failing_stream_is_named(filter_module: Build) -> None:
    suite = cases.parse({"cases": [{"name": "x", "streams": 2, "expect": {
        "response": {"headers": {"equal": {"x-wasm-filter": "other"}}}}}]}, "add-header")
    report = run_filter(filter_module, "c", suite)
    assert [d.field for d in report.cases[0].differences] == [
        "stream 1: response.headers['x-wasm-filter']", "stream 2: response.headers['x-wasm-filter']"]
