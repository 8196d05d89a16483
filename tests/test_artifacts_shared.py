"""Stage outputs pass between workers through shared storage, never a local path (issue 22,
acceptance 1): the built module through the registry's scratch repository (or, with no
registry configured, the job store), test reports and a GitHub checkout through the job store
or the registry, so that each stage can run on another host.

Two real worker processes on one Redis, each with its own state directory and its own
``TMPDIR``: a build-only worker (it consumes only the C toolchain's queue) and a worker of
the general queue.  The build-only worker's state is wiped once its build is done, as a host
that went away, so a later stage can only succeed through the shared storage.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import requests
from conftest import ROOT, Wasmbot, registry_host
from test_github import FILTER, REPO, GitHubBot, completed, githubbot, pull_request  # noqa: F401 (a fixture)
from test_routing import wait_registered

from bot.github import render
from bot.localservices import Service
from workers import artifacts, retention
from workers.abitest import Report
from workers.config import Settings
from workers.jobs import Job, Stage, State
from workers.oci.image import MANIFEST_MEDIA_TYPE
from workers.store import JobStore

# A worker that consumes only the C toolchain's queue: it runs builds and nothing else.
BUILD_ONLY = """
from workers.celery_app import configure
from workers.config import load_settings
configure(load_settings()).worker_main(["worker", "--queues", "wasmbot.c", "--concurrency", "1",
    "--loglevel", "INFO", "--hostname", "build-only-%d@%%h" % __import__("os").getpid(),
    "--without-gossip", "--without-mingle"])
"""


def host(bot: Wasmbot, name: str, argv: list[str]) -> tuple[subprocess.Popen[bytes], Path]:
    """A worker as if on a host of its own: its own data directory and its own /tmp."""
    state = bot.workdir / f"host-{name}"
    (state / "tmp").mkdir(parents=True)
    env = bot.env | {"WASMBOT_DATA_DIR": str(state / "data"), "TMPDIR": str(state / "tmp")}
    log = (bot.workdir / f"worker-{len(bot.workers)}.log").open("wb")
    proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    bot.workers.append(proc)
    return proc, state


def build_only(bot: Wasmbot, name: str) -> tuple[subprocess.Popen[bytes], Path]:
    return host(bot, name, [sys.executable, "-c", BUILD_ONLY])


def general(bot: Wasmbot, name: str) -> tuple[subprocess.Popen[bytes], Path]:
    return host(bot, name, [sys.executable, "-m", "bot.cli", "worker", "--concurrency", "1", "--toolchains", "none"])


def gone(proc: subprocess.Popen[bytes], state: Path) -> None:
    """The host goes away: its worker stops (a warm shutdown: the stage it runs ends and hands
    over first) and its state directory and /tmp go with it."""
    proc.terminate()
    proc.wait(60)
    shutil.rmtree(state)


def ran_in(bot: Wasmbot, log: str, job_id: str, stage: str) -> bool:
    return f"job {job_id}: stage {stage} running" in (bot.workdir / log).read_text()


def pushed_module(registry: Service, ref: str) -> bytes:
    repository, tag = ref.split("/", 1)[1].split(":")
    manifest = requests.get(f"{registry.url}/v2/{repository}/manifests/{tag}",
                            headers={"Accept": MANIFEST_MEDIA_TYPE}, timeout=10).json()
    blob = requests.get(f"{registry.url}/v2/{repository}/blobs/{manifest['layers'][0]['digest']}", timeout=10)
    with tarfile.open(fileobj=io.BytesIO(blob.content), mode="r:gz") as tar:
        extracted = tar.extractfile("plugin.wasm")
        assert extracted is not None
        return extracted.read()


def server_settings(bot: Wasmbot) -> Settings:
    return Settings(data_dir=bot.workdir / "server", redis_url=bot.env["REDIS_URL"],
                    artifact_registry=bot.env.get("WASMBOT_ARTIFACT_REGISTRY"))


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("shared", ["registry", "store"])
@pytest.mark.parametrize("wasmbot", ["redis"], indirect=True)
def test_build_test_and_push_on_different_hosts(wasmbot: Wasmbot, registry: Service, shared: str) -> None:
    """The build runs on host A, which then goes away; test and push run on host B."""
    wasmbot.env["WASMBOT_LEASE_TTL"] = "60"
    scratch = f"{registry_host(registry)}/scratch-{wasmbot.workdir.name[-8:].lower().strip('_')}"
    if shared == "registry":
        wasmbot.env["WASMBOT_ARTIFACT_REGISTRY"] = scratch
    builder, builder_state = build_only(wasmbot, "a")
    wait_registered(wasmbot, {"worker-0.log": ["c"]})
    ref = f"{registry_host(registry)}/shared-{shared}-{wasmbot.workdir.name[-8:].lower().strip('_')}:v1"
    job_id = wasmbot.submit(f"/wasm build tests/filters/c --tag {ref}")
    built = wasmbot.wait(job_id, stage="build", until="succeeded")
    assert built.stage("test").state is State.QUEUED  # nobody consumes the general queue yet
    gone(builder, builder_state)

    general(wasmbot, "b")
    job = wasmbot.wait(job_id)
    assert job.state is State.SUCCEEDED, [(s.name, s.state, s.error) for s in job.stages]
    assert ran_in(wasmbot, "worker-0.log", job_id, "build") and ran_in(wasmbot, "worker-1.log", job_id, "test")
    assert ran_in(wasmbot, "worker-1.log", job_id, "push")

    # Byte for byte: what was built is what the shared storage holds, what was tested, what was pushed.
    settings = server_settings(wasmbot)
    module = artifacts.get(settings, wasmbot.store, job.artifacts["module"])
    assert sha256(module) == job.artifacts["module_sha256"] == job.stage("test").result["tested_sha256"]
    assert pushed_module(registry, ref) == module
    if shared == "registry":
        assert job.artifacts["module"].startswith(f"oci:{scratch}/{job_id}@sha256:")
    else:
        assert job.artifacts["module"] == f"store:{job_id}/filter.wasm"

    # The report a front end shows is complete: every case, for the module that was built.
    report = Report.from_dict(json.loads(artifacts.get(settings, wasmbot.store, job.artifacts["report"])))
    assert report.ok and report.sha256 == job.artifacts["module_sha256"].removeprefix("sha256:")
    assert [c.name for c in report.cases] == ["adds the configured response header",
                                              "a request with x-deny gets a local 403",
                                              "another plugin configuration is applied on reconfigure"
                                              ], report.cases
    shown = render.abi_report(wasmbot.store, job)
    assert shown is not None and all(c.name in shown for c in report.cases) and "3/3" in shown
    junit = artifacts.get(settings, wasmbot.store, job.artifacts["junit"]).decode()
    assert 'tests="4" failures="0"' in junit and "a request with x-deny gets a local 403" in junit


@pytest.mark.parametrize("wasmbot", ["redis"], indirect=True)
def test_a_chat_or_terminal_source_is_needed_only_where_it_is_built(wasmbot: Wasmbot, registry: Service) -> None:
    """A terminal's or chat's source is a directory where the job is submitted (the CLI's working
    directory, ``source_root`` for Slack): the build reads it, and what later stages need of it
    (the test cases, the git revision the image names) goes with the build's outputs, so test
    and push run on a host that has no such directory."""
    wasmbot.env["WASMBOT_LEASE_TTL"] = "60"
    builder, builder_state = build_only(wasmbot, "a")
    wait_registered(wasmbot, {"worker-0.log": ["c"]})
    checkout = builder_state / "sources" / "add-header"  # on host A only
    shutil.copytree(ROOT / "tests" / "filters" / "c", checkout)
    for git in (["init", "-q"], ["add", "."], ["-c", "user.name=t", "-c", "user.email=t@example.com",
                                               "commit", "-qm", "the filter"]):
        subprocess.run(["git", "-C", str(checkout), *git], check=True)
    revision = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], check=True,
                              capture_output=True, text=True).stdout.strip()
    ref = f"{registry_host(registry)}/chat-source-{wasmbot.workdir.name[-8:].lower().strip('_')}:v1"
    submitted = wasmbot.cli("run", "--detach", f"/wasm build add-header --tag {ref}", cwd=checkout.parent)
    job_id = re.search(r"job ([0-9a-f]{12}) submitted", submitted.stdout).group(1)  # type: ignore[union-attr]
    wasmbot.wait(job_id, stage="build", until="succeeded")
    gone(builder, builder_state)  # the source goes with host A

    general(wasmbot, "b")
    job = wasmbot.wait(job_id)
    assert job.state is State.SUCCEEDED, [(s.name, s.state, s.error) for s in job.stages]
    assert job.stage("test").result["cases"] == "3/3"  # the source's cases, not a plain GET
    manifest = requests.get(f"{registry.url}/v2/{ref.split('/', 1)[1].replace(':', '/manifests/')}",
                            headers={"Accept": MANIFEST_MEDIA_TYPE}, timeout=10).json()
    assert manifest["annotations"]["org.opencontainers.image.revision"] == revision


@pytest.mark.parametrize("wasmbot", ["redis"], indirect=True)
def test_scratch_artifacts_are_deleted_once_their_time_is_up(wasmbot: Wasmbot, registry: Service) -> None:
    scratch = f"{registry_host(registry)}/scratch-gc-{wasmbot.workdir.name[-8:].lower().strip('_')}"
    settings = Settings(data_dir=wasmbot.workdir / "server", redis_url=wasmbot.env["REDIS_URL"],
                        artifact_registry=scratch, artifact_ttl=60)
    module = b"\0asm\x01\0\0\0" + os.urandom(4096)  # any bytes: the store does not look inside
    ref = artifacts.put(settings, wasmbot.store, "job0000000001", "filter.wasm", module, large=True)
    small = artifacts.put(settings, wasmbot.store, "job0000000001", "abi-test.json", b"{}")
    assert ref.startswith(f"oci:{scratch}/job0000000001@sha256:") and small == "store:job0000000001/abi-test.json"
    assert artifacts.get(settings, wasmbot.store, ref) == module
    repository, digest = ref.removeprefix(f"oci:{registry_host(registry)}/").split("@")
    manifest = f"{registry.url}/v2/{repository}/manifests/{digest}"
    assert requests.get(manifest, headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
                        timeout=10).status_code == 200

    assert artifacts.collect(settings, wasmbot.store, now=time.time()) == 0  # not yet due
    assert artifacts.collect(settings, wasmbot.store, now=time.time() + 61) == 1
    assert requests.get(manifest, timeout=10).status_code == 404
    with pytest.raises(artifacts.ArtifactMissing, match="expired or was removed"):
        artifacts.get(settings, wasmbot.store, ref)
    assert artifacts.collect(settings, wasmbot.store, now=time.time() + 61) == 0  # each goes once

    # Each retention pass deletes what is due (its store part: one worker at a time).
    ref = artifacts.put(settings, wasmbot.store, "job0000000002", "filter.wasm", module, large=True)
    assert retention.collect(settings, wasmbot.store).scratch == 0
    wasmbot.store.add_scratch(ref, time.time() - 1)  # as if its artifact_ttl were up
    assert retention.collect(settings, wasmbot.store, dry_run=True).scratch == 1
    assert retention.collect(settings, wasmbot.store).scratch == 1
    with pytest.raises(artifacts.ArtifactMissing):
        artifacts.get(settings, wasmbot.store, ref)


@pytest.mark.parametrize("wasmbot", ["redis"], indirect=True)
def test_a_pull_request_checked_out_on_one_host_is_built_on_another(githubbot: GitHubBot,  # noqa: F811
                                                                     registry: Service) -> None:
    """fetch on host B; B goes away; the build on host A reads the checkout from the shared
    storage; the test on host C; the check run shows the whole ABI report."""
    bot, api = githubbot.bot, githubbot.api
    bot.env["WASMBOT_LEASE_TTL"] = "60"
    bot.env["WASMBOT_ARTIFACT_REGISTRY"] = f"{registry_host(registry)}/scratch-pr"
    api.add_repo(REPO, FILTER)
    sha = api.add_commit(REPO, FILTER)
    builder, _ = build_only(bot, "a")
    wait_registered(bot, {"worker-0.log": ["c"]})
    os.killpg(builder.pid, signal.SIGSTOP)  # live (its heartbeat holds), but builds nothing yet
    fetcher, fetcher_state = general(bot, "b")
    wait_registered(bot, {"worker-0.log": ["c"], "worker-1.log": []})
    assert githubbot.post("pull_request", pull_request(api, "opened", sha)).status_code == 200
    deadline = time.monotonic() + 120
    while not (job := next(iter(bot.store.recent()), None)) or job.stage("fetch").state is not State.SUCCEEDED:
        assert time.monotonic() < deadline, "the fetch did not succeed"
        bot.store.events(job.id if job else "none", timeout=1)
    gone(fetcher, fetcher_state)
    shutil.rmtree(Path(job.source_root), ignore_errors=True)  # where a checkout used to be kept
    os.killpg(builder.pid, signal.SIGCONT)
    general(bot, "c")
    passed = api.wait_for(lambda a: completed(a, sha), timeout=300)
    done: Job | None = bot.store.get(job.id)
    assert done is not None
    assert passed["conclusion"] == "success", ([(s.name, s.state, s.error) for s in done.stages], passed["output"])
    assert ran_in(bot, "worker-0.log", job.id, "build") and ran_in(bot, "worker-2.log", job.id, "test")
    text = passed["output"]["text"]
    for case in ("adds the configured response header", "a request with x-deny gets a local 403",
                 "another plugin configuration is applied on reconfigure"):
        assert case in text, text


def test_both_stores_keep_outputs_until_their_time_or_their_job_goes(store: JobStore) -> None:
    """The job store's side, on Redis and on the embedded SQLite file alike."""
    job = Job(requester="t", origin="t", text="", source_root="", command={"name": "test", "source": "x"},
              stages=[Stage(name="test")])
    store.create(job)
    data = bytes(range(256)) * 64  # bytes, not text
    store.put_artifact(job.id, "filter.wasm", data, ttl=60)
    store.put_artifact("other", "abi-test.json", b"{}", ttl=-1)  # already past its time
    assert store.get_artifact(job.id, "filter.wasm") == data
    assert store.get_artifact(job.id, "abi-test.json") is None and store.get_artifact("other", "abi-test.json") is None

    store.add_scratch("oci:a", 100.0)
    store.add_scratch("oci:b", 200.0)
    assert store.due_scratch(150.0) == ["oci:a"] and store.due_scratch(250.0) == ["oci:a", "oci:b"]
    store.drop_scratch("oci:a")
    assert store.due_scratch(250.0) == ["oci:b"]

    store.update(job.id, lambda j: j.stop(State.FAILED, "done"))
    assert store.prune(time.time() + 1).jobs == [job.id]
    assert store.get_artifact(job.id, "filter.wasm") is None  # gone with its job
