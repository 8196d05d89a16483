"""The whole path, through real worker processes, on both backends."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import signal
import tarfile
from pathlib import Path

import jsonschema
import requests
from conftest import ROOT, TESTDATA, Wasmbot, manifest_puts, registry_host
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from bot.localservices import free_port, start_registry
from workers import artifacts, sandbox
from workers.abitest import Report
from workers.jobs import State
from workers.oci.image import MANIFEST_MEDIA_TYPE, OCI_CONFIG_MEDIA_TYPE, TAR_GZIP_MEDIA_TYPE
from workers.store import RedisStore, SqliteStore

HELLO = ROOT / "examples" / "hello-c"


def slow_source(path: Path, functions: int) -> None:
    """The hello filter plus generated code that keeps clang busy for a while."""
    shutil.copy(HELLO / "filter.c", path / "filter.c")
    lines = ["#include <stdint.h>"]
    for i in range(functions):
        lines.append(f"__attribute__((noinline)) uint32_t f{i}(uint32_t x) "
                     f"{{ for (int i = 0; i < {i % 7 + 3}; i++) x = x * {i + 3} + (x >> 3) ^ {i}; "
                     "return x; }")
    lines.append("uint32_t slow_all(uint32_t x) {"
                 + "".join(f"x = f{i}(x);" for i in range(functions)) + "return x; }")
    (path / "slow.c").write_text("\n".join(lines))


def oci_validator() -> jsonschema.Draft4Validator:
    """The OCI image-manifest schema, its $refs resolved by file name from tests/testdata."""
    folder = TESTDATA / "oci"

    def retrieve(uri: str) -> Resource:  # the schemas' ids differ; their files do not
        contents = json.loads((folder / uri.rsplit("/", 1)[-1].split("#")[0]).read_text())
        return Resource.from_contents(contents, default_specification=DRAFT4)

    registry: Registry = Registry(retrieve=retrieve)
    schema = json.loads((folder / "image-manifest-schema.json").read_text())
    return jsonschema.Draft4Validator(schema, registry=registry)


def job_id_of(output: str) -> str:
    match = re.search(r"job ([0-9a-f]{12})", output)
    assert match, output
    return match.group(1)


def test_cli_runs_the_whole_path_with_its_own_worker(wasmbot: Wasmbot, registry) -> None:
    ref = f"{registry_host(registry)}/hello-{wasmbot.workdir.name[-8:].lower().strip('_')}:v1"
    proc = wasmbot.cli("run", f"/wasm build examples/hello-c --tag {ref}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no worker is running: starting one" in proc.stderr
    worker_log = Path(wasmbot.env["WASMBOT_DATA_DIR"]) / "cli-worker.log"
    assert f"(its log: {worker_log})" in proc.stderr
    assert job_id_of(proc.stdout) in worker_log.read_text()  # the worker's own lines, kept
    lines = proc.stdout.splitlines()
    for stage in ("build", "test", "push"):
        assert f"[{stage}] running" in lines
        assert any(line.startswith(f"[{stage}] succeeded in ") for line in lines)
    assert lines.index("[build] running") < lines.index("[test] running") < lines.index("[push] running")
    digest = lines[-1].rsplit("@", 1)[1]
    assert lines[-1].startswith("job ") and f"pushed {ref}@sha256:" in lines[-1]

    job_id = lines[0].split()[1]
    job = wasmbot.store.get(job_id)
    assert job is not None and job.state is State.SUCCEEDED
    assert job.artifacts["digest"] == digest
    module = artifacts.in_store(wasmbot.store, job.artifacts["module"])

    repository, tag = ref.split("/", 1)[1].split(":")
    response = requests.get(f"{registry.url}/v2/{repository}/manifests/{tag}",
                            headers={"Accept": MANIFEST_MEDIA_TYPE}, timeout=10)
    assert response.status_code == 200
    manifest = response.json()
    assert response.headers["Docker-Content-Digest"] == digest
    assert "sha256:" + hashlib.sha256(response.content).hexdigest() == digest
    oci_validator().validate(manifest)
    # The default compat variant: one tar+gzip layer holding plugin.wasm, the built module.
    assert manifest["config"]["mediaType"] == OCI_CONFIG_MEDIA_TYPE
    assert [layer["mediaType"] for layer in manifest["layers"]] == [TAR_GZIP_MEDIA_TYPE]
    blob = requests.get(f"{registry.url}/v2/{repository}/blobs/{manifest['layers'][0]['digest']}", timeout=10)
    with tarfile.open(fileobj=io.BytesIO(blob.content), mode="r:gz") as tar:
        extracted = tar.extractfile("plugin.wasm")
        assert extracted is not None and extracted.read() == module
    annotations = manifest["annotations"]
    assert annotations["module.wasm.runtime/abi_version"] == "0.2.0"
    assert annotations["io.wasmbot.root-ids"] == "hello-c"
    assert annotations["org.opencontainers.image.title"] == "hello-c"
    assert annotations["org.opencontainers.image.version"] == "v1"
    assert annotations["io.wasmbot.job"] == job_id

    shown = wasmbot.cli("job", job_id)
    assert shown.returncode == 0 and "push   succeeded" in shown.stdout and digest in shown.stdout
    listed = wasmbot.cli("jobs")
    assert job_id in listed.stdout and "succeeded" in listed.stdout


def test_worker_killed_during_build_is_replaced_and_pushes_once(
        wasmbot: Wasmbot, registry, source_dir: Path) -> None:
    slow_source(source_dir, functions=3000)
    repository = f"killed-{source_dir.name[-10:].lower().strip('_')}"
    first = wasmbot.start_worker()
    job_id = wasmbot.submit(f"/wasm build tests/.sources/{source_dir.name} "
                            f"--tag {registry_host(registry)}/{repository}:v1")
    wasmbot.wait(job_id, stage="build", until="running")
    os.killpg(first.pid, signal.SIGKILL)  # the worker and its pool process, mid-build
    first.wait()

    wasmbot.start_worker()
    job = wasmbot.wait(job_id)
    assert job.state is State.SUCCEEDED, job.model_dump_json(indent=1)
    assert job.stage("build").attempts == 2
    assert job.stage("test").attempts == 1
    assert job.stage("push").attempts == 1
    assert manifest_puts(registry, repository) == 1
    log = [e.text for e in wasmbot.store.events(job_id) if e.kind == "log"]
    assert any("lost this stage; queued again" in line for line in log)


def test_build_over_its_time_limit_fails_and_leaves_no_container(
        wasmbot: Wasmbot, source_dir: Path) -> None:
    slow_source(source_dir, functions=12000)
    wasmbot.env["WASMBOT_BUILD_TIMEOUT"] = "2"
    wasmbot.start_worker()
    job_id = wasmbot.submit(f"/wasm build tests/.sources/{source_dir.name}")
    job = wasmbot.wait(job_id)
    assert job.state is State.FAILED
    build = job.stage("build")
    assert build.state is State.FAILED
    log = "\n".join(e.text for e in wasmbot.store.events(job_id) if e.kind == "log")
    assert build.error == "build exceeded its time limit of 2s; the container was stopped and removed", log
    assert job.stage("test").state is State.SKIPPED and job.stage("push").state is State.SKIPPED
    assert not sandbox.exists(f"wasmbot-{job_id}-build")


def test_module_with_unknown_import_fails_the_test_stage_naming_it(
        wasmbot: Wasmbot, source_dir: Path) -> None:
    source = (HELLO / "filter.c").read_text().replace(
        'EXPORT(proxy_on_done) uint32_t proxy_on_done(uint32_t ctx) { return 1; }',
        'IMPORT(proxy_make_coffee) int32_t proxy_make_coffee(int32_t cups);\n'
        'EXPORT(proxy_on_done) uint32_t proxy_on_done(uint32_t ctx) { return proxy_make_coffee(2); }')
    assert "proxy_make_coffee" in source
    (source_dir / "filter.c").write_text(source)
    wasmbot.start_worker()
    job = wasmbot.wait(wasmbot.submit(f"/wasm build tests/.sources/{source_dir.name}"))
    assert job.state is State.FAILED
    assert job.stage("build").state is State.SUCCEEDED
    assert job.stage("test").state is State.FAILED
    error = job.stage("test").error or ""
    assert "env.proxy_make_coffee: not a proxy-wasm host function of ABI 0.2.0" in error
    assert "Envoy refuses to load the module: missing import" in error
    assert job.stage("push").state is State.SKIPPED

    # Retried once its module has expired (stage outputs live artifact_ttl), the test stage
    # fails saying so, and names no file of the server's.
    expire_outputs(wasmbot, job.id)
    retried = wasmbot.cli("retry", job.id)
    assert retried.returncode == 1
    error = wasmbot.store.get(job.id).stage("test").error or ""  # type: ignore[union-attr]
    assert error == ("this job's filter.wasm expired or was removed (stage outputs are kept for artifact_ttl "
                     "= 7 days): run the job again"), error
    assert wasmbot.env["WASMBOT_DATA_DIR"] not in error + retried.stdout + retried.stderr


def expire_outputs(bot: Wasmbot, job_id: str) -> None:
    """What artifact_ttl does to a job's outputs in the store, now."""
    if isinstance(bot.store, RedisStore):
        bot.store.redis.delete(bot.store._key("artifacts", job_id))
    else:
        assert isinstance(bot.store, SqliteStore)
        bot.store._connect().execute("UPDATE artifacts SET expires = 0 WHERE job_id = ?", (job_id,))


def test_unreachable_registry_fails_push_clearly_and_retry_completes(
        wasmbot: Wasmbot, tmp_path: Path) -> None:
    port = free_port()  # nothing listens here yet
    wasmbot.start_worker()
    job_id = wasmbot.submit(f"/wasm build examples/hello-c --tag localhost:{port}/later:v1")
    job = wasmbot.wait(job_id)
    assert job.state is State.FAILED
    assert job.stage("push").state is State.FAILED
    assert job.stage("push").error.startswith(f"registry localhost:{port} is unreachable over http while "
                                              "trying to check whether later has sha256:")
    assert job.stage("push").error.endswith("check that the registry is running and the host and port "
                                            "are right, then retry")
    failed = wasmbot.cli("job", job_id)
    assert "push   failed" in failed.stdout

    late = start_registry(tmp_path / "late-registry", port=port)
    try:
        retried = wasmbot.cli("retry", job_id)
        assert retried.returncode == 0, retried.stdout + retried.stderr
        job = wasmbot.store.get(job_id)
        assert job is not None and job.state is State.SUCCEEDED
        assert job.stage("build").attempts == 1  # only the failed stage ran again
        assert job.stage("push").attempts == 2
        assert manifest_puts(late, "later") == 1
    finally:
        late.stop()


def test_cli_exits_non_zero_when_the_job_fails(wasmbot: Wasmbot, source_dir: Path) -> None:
    (source_dir / "broken.c").write_text("int main( { return 0; }\n")
    proc = wasmbot.cli("run", f"/wasm build tests/.sources/{source_dir.name}")
    assert proc.returncode == 1
    assert re.search(r"^\[build\] failed in [0-9.]+s: compiler exited with status 1", proc.stdout, re.M)
    assert "error:" in proc.stdout  # the compiler's own message is in the log
    assert "retry with: wasmbot retry" in proc.stdout.splitlines()[-1]


def test_malformed_command_queues_nothing(wasmbot: Wasmbot) -> None:
    proc = wasmbot.cli("run", "/wasm build ../../etc --tag 'x;rm -rf /'")
    assert proc.returncode == 2
    assert "invalid --tag: invalid reference 'x;rm -rf /'" in proc.stderr and "usage: /wasm build" in proc.stderr
    assert wasmbot.store.recent() == []


def test_test_stage_runs_the_sources_behaviour_cases(wasmbot: Wasmbot) -> None:
    wasmbot.start_worker()
    job = wasmbot.wait(wasmbot.submit("/wasm build tests/filters/c"))
    assert job.state is State.SUCCEEDED, job.failed_stage()
    result = job.stage("test").result
    assert (result["abi_version"], result["cases"]) == ("0.2.1", "3/3")
    stored = Report.from_dict(json.loads(artifacts.in_store(wasmbot.store, result["report"]) or b""))
    assert stored.ok and stored.root_ids == ["add-header"]
    junit = (artifacts.in_store(wasmbot.store, result["junit"]) or b"").decode()
    assert 'tests="4" failures="0"' in junit and "a request with x-deny gets a local 403" in junit
    log = "\n".join(e.text for e in wasmbot.store.events(job.id) if e.kind == "log")
    assert "✓ adds the configured response header" in log


def test_failing_case_fails_the_test_stage_with_expected_and_got(wasmbot: Wasmbot, source_dir: Path) -> None:
    shutil.copy(ROOT / "tests" / "filters" / "c" / "filter.c", source_dir / "filter.c")
    cases = (ROOT / "tests" / "filters" / "c" / "wasm-tests.yaml").read_text()
    (source_dir / "wasm-tests.yaml").write_text(cases.replace("x-wasm-filter: from-config}", "x-wasm-filter: other}", 1))
    wasmbot.start_worker()
    job = wasmbot.wait(wasmbot.submit(f"/wasm build tests/.sources/{source_dir.name}"))
    assert job.state is State.FAILED and job.stage("test").state is State.FAILED
    error = job.stage("test").error or ""
    assert error.splitlines()[0] == "filter.wasm: ABI 0.2.1, 2/3 cases passed — FAILED"
    assert ("- adds the configured response header: response.headers['x-wasm-filter']: expected 'other', "
            "got 'from-config'") in error
    (source_dir / "wasm-tests.yaml").write_text("cases:\n  - name: a\n    expect: {trap: 3}\n")
    job = wasmbot.wait(wasmbot.submit(f"/wasm build tests/.sources/{source_dir.name}"))
    assert "case 1 'a' → expect.trap:" in (job.stage("test").error or "")


def test_init_scaffolds_builds_and_tests_a_new_filter(wasmbot: Wasmbot, source_dir: Path) -> None:
    wasmbot.start_worker()
    proc = wasmbot.cli("run", "/wasm init edge-auth --lang rust --platform istio:1.26", cwd=source_dir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[scaffold] rust filter edge-auth for istio 1.26 (Envoy 1.34, ABI 0.2.1)" in proc.stdout
    assert "[test]   ✓ adds the configured response header" in proc.stdout
    assert (source_dir / "edge-auth" / "Cargo.toml").is_file()
    jobs = len(wasmbot.store.recent())
    again = wasmbot.cli("run", "/wasm init edge-auth --lang go", cwd=source_dir)
    assert again.returncode == 1  # refused before anything is queued, naming the path as given
    assert again.stderr.splitlines()[-1] == ("wasmbot: edge-auth already exists; wasmbot never overwrites "
                                             "a destination: choose another NAME")
    assert len(wasmbot.store.recent()) == jobs
    refused = wasmbot.cli("run", "/wasm init edge-auth --lang go --platform gloo:1.17", cwd=source_dir)
    assert refused.returncode == 2 and "It works on gloo (no known version); on gloo 1.17 use" in refused.stderr


def test_stages_after_a_failure_are_skipped_and_a_retry_runs_them(
        wasmbot: Wasmbot, registry, source_dir: Path) -> None:
    # The header is found through -I/src, so the compiler names it by the container's path.
    (source_dir / "broken.h").write_text("int broken(void) { return undefined_thing; }\n")
    (source_dir / "filter.c").write_text("#include <broken.h>\n")
    ref = f"{registry_host(registry)}/skipped-{source_dir.name[-10:].lower().strip('_')}:v1"
    proc = wasmbot.cli("run", f"/wasm build tests/.sources/{source_dir.name} --tag {ref}")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert "[test] skipped" in lines and "[push] skipped" in lines
    job = wasmbot.store.get(job_id_of(proc.stdout))
    assert job is not None and job.state is State.FAILED
    assert [s.state for s in job.stages] == [State.FAILED, State.SKIPPED, State.SKIPPED]
    error = job.stage("build").error or ""
    # Paths as the engineer knows them: relative to the source, not the container's /src.
    assert re.search(r"^  broken\.h:1:\d+: error: use of undeclared identifier 'undefined_thing'", error, re.M), error
    for server_path in ("/src/", str(ROOT), wasmbot.env["WASMBOT_DATA_DIR"]):
        assert server_path not in error and server_path not in proc.stdout
    shown = wasmbot.cli("job", job.id).stdout
    assert "  test   skipped" in shown and "  push   skipped" in shown
    assert "[build:failed test:skipped push:skipped]" in wasmbot.cli("jobs").stdout

    (source_dir / "broken.h").unlink()
    shutil.copy(HELLO / "filter.c", source_dir / "filter.c")
    retried = wasmbot.cli("retry", job.id)
    assert retried.returncode == 0, retried.stdout + retried.stderr
    job = wasmbot.store.get(job.id)
    assert job is not None and job.state is State.SUCCEEDED
    assert [(s.state, s.attempts) for s in job.stages] == [(State.SUCCEEDED, 2), (State.SUCCEEDED, 1),
                                                           (State.SUCCEEDED, 1)]
    assert f"pushed {ref}@sha256:" in retried.stdout.splitlines()[-1]


def test_a_missing_source_is_refused_before_anything_is_queued(wasmbot: Wasmbot, source_dir: Path) -> None:
    (source_dir / "a-file").write_text("not a directory\n")
    (source_dir / "out").symlink_to("/etc")
    here = f"tests/.sources/{source_dir.name}"
    for text, message in [
        ("/wasm build nosuch", "source 'nosuch' is not a directory under the source root"),
        (f"/wasm test {here}/a-file", f"source '{here}/a-file' is not a directory under the source root"),
        (f"/wasm build {here}/out", f"source '{here}/out' leaves the source root"),
        ("/wasm init examples --lang rust",
         "examples already exists; wasmbot never overwrites a destination: choose another NAME"),
    ]:
        proc = wasmbot.cli("run", text)
        assert (proc.returncode, proc.stderr.splitlines()[-1]) == (1, f"wasmbot: {message}"), proc.stderr
        assert str(ROOT) not in proc.stdout + proc.stderr and "submitted" not in proc.stdout
    assert wasmbot.store.recent() == []
