"""Toolchain routing (workers/routing.py, issue 22): a build goes only to a worker that declared
its toolchain, and a build no live worker can run is refused when it is asked for.

The end-to-end tests run real ``wasmbot worker`` processes with different ``--toolchains`` on
one Redis (and on the embedded SQLite broker) and submit through the ``wasmbot`` CLI, as a user
would.  Slack and pull requests get the same refusal through the shared dispatch: see
tests/test_golden_replies.py."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from pathlib import Path

import pytest
from conftest import ROOT, Wasmbot
from test_github import FILTER, REPO, GitHubBot, completed, githubbot, pull_request  # noqa: F401 (a fixture)

from workers import routing
from workers.jobs import State
from workers.store import JobStore, SqliteStore

HELLO = "examples/hello-c"


def test_toolchains_flag_names_known_toolchains_or_none() -> None:
    assert routing.parse(None) == routing.TOOLCHAINS
    assert routing.parse("c, rust,c") == ("c", "rust")
    assert routing.parse("none") == ()
    with pytest.raises(ValueError, match="unknown toolchain golang; choose from assemblyscript, c, cpp, go"):
        routing.parse("c,golang")
    assert routing.queues(["c", "go"]) == ["wasmbot", "wasmbot.c", "wasmbot.go"]
    assert routing.served(["wasmbot", "wasmbot.go", "celery"]) == ["go"]


def test_only_the_build_needs_a_toolchain() -> None:
    assert routing.stage_queue("build", "go") == "wasmbot.go"
    assert routing.stage_queue("build", "cpp") == "wasmbot.cpp"
    assert routing.stage_queue("build", "wasm") == "wasmbot"  # a precompiled module: nothing to compile
    assert routing.stage_queue("build", None) == "wasmbot"  # unknown: the build says why, anywhere
    for stage in ("scaffold", "fetch", "test", "push", "deploy", "undeploy", "attach", "repository"):
        assert routing.stage_queue(stage, "go") == "wasmbot"


def test_a_build_nobody_serves_is_refused_naming_its_toolchain() -> None:
    live = {"host-a:1": ["c", "rust"], "host-b:2": ["c"]}
    routing.check("c", live)
    routing.check("wasm", live)
    routing.check("go", {})  # no worker at all: the job waits for one, as any job does
    with pytest.raises(routing.Unserved) as refused:
        routing.check("go", live)
    assert str(refused.value) == (
        "no live worker has the go toolchain this go build needs (the 2 live worker(s) serve c, rust); "
        "start one where go builds can run: wasmbot worker --toolchains go")


def test_heartbeats_carry_toolchains(store: JobStore) -> None:
    store.heartbeat("w1", ttl=60, toolchains=["go", "c"])
    store.heartbeat("w2", ttl=60)
    assert store.worker_toolchains() == {"w1": ["c", "go"], "w2": []}
    store.heartbeat("w1", ttl=60, toolchains=["rust"])
    store.retire("w2")
    store.heartbeat("lapsed", ttl=-1, toolchains=["go"])  # its heartbeat has expired: not live
    assert store.worker_toolchains() == {"w1": ["rust"]}
    assert store.live_workers() == ["w1"]


def test_a_store_file_from_before_routing_gains_the_column(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE workers (name TEXT PRIMARY KEY, expires REAL NOT NULL)")
        db.execute("INSERT INTO workers VALUES ('old', 9e99)")
    store = SqliteStore(path)
    assert store.worker_toolchains() == {"old": []}
    store.heartbeat("new", ttl=60, toolchains=["c"])
    assert store.worker_toolchains() == {"new": ["c"], "old": []}


def wait_registered(bot: Wasmbot, expected: dict[str, list[str]]) -> dict[str, str]:
    """Wait until the live workers serve exactly ``expected``'s toolchains (by log file name);
    return each log's worker id."""
    from bot.localservices import Service, _wait_until

    def registered() -> bool:
        return sorted(bot.store.worker_toolchains().values()) == sorted(expected.values())
    _wait_until(registered, Service("wasmbot worker", bot.workers[-1], "", bot.workdir / "worker-0.log"),
                timeout=90)
    by_toolchains = {tuple(v): k for k, v in bot.store.worker_toolchains().items()}
    return {log: by_toolchains[tuple(ts)] for log, ts in expected.items()}


def ran(bot: Wasmbot, log: str, job_id: str, stage: str) -> bool:
    return f"job {job_id}: stage {stage} running" in (bot.workdir / log).read_text()


@pytest.mark.parametrize("wasmbot", ["redis", "sqlite"], indirect=True)
def test_a_go_build_goes_only_to_the_worker_with_go(wasmbot: Wasmbot, source_dir: Path) -> None:
    """Worker 0 serves c, worker 1 serves go.  While the go worker is gone (killed, its heartbeat
    still live), the idle c worker scaffolds the go filter (a stage that needs no toolchain) and
    runs a C job start to end, yet leaves the go build queued; a new go worker (worker 2) builds
    it.  Killed, not frozen: a frozen worker's blocking read on the general queue can still be
    handed the scaffold by Redis, which then waits for it to thaw."""
    wasmbot.env["WASMBOT_LEASE_TTL"] = "60"  # the killed worker stays registered meanwhile
    wasmbot.start_worker("--toolchains", "c")
    go_worker = wasmbot.start_worker("--toolchains", "go")
    wait_registered(wasmbot, {"worker-0.log": ["c"], "worker-1.log": ["go"]})
    os.killpg(go_worker.pid, signal.SIGKILL)
    go_worker.wait()
    go_job = wasmbot.cli("run", "--detach", "/wasm init go-filter --lang go", cwd=source_dir)
    assert go_job.returncode == 0, go_job.stderr
    go_id = go_job.stdout.split()[1]
    c_id = wasmbot.submit(f"/wasm test {HELLO}")
    assert wasmbot.wait(c_id).state is State.SUCCEEDED
    assert wasmbot.wait(go_id, until="succeeded", stage="scaffold").stage("build").state is State.QUEUED
    assert wasmbot.store.get(go_id).stage("build").state is State.QUEUED  # type: ignore[union-attr]
    wasmbot.start_worker("--toolchains", "go")
    done = wasmbot.wait(go_id, timeout=600)
    assert done.state is State.SUCCEEDED, [(s.name, s.state, s.error) for s in done.stages]
    assert done.artifacts["lang"] == "go"
    assert ran(wasmbot, "worker-0.log", go_id, "scaffold") and ran(wasmbot, "worker-0.log", c_id, "build")
    assert ran(wasmbot, "worker-2.log", go_id, "build") and not ran(wasmbot, "worker-0.log", go_id, "build")


@pytest.mark.parametrize("wasmbot", ["redis"], indirect=True)
def test_a_build_no_live_worker_serves_is_refused_at_submit(wasmbot: Wasmbot, source_dir: Path) -> None:
    wasmbot.start_worker("--toolchains", "c")
    wasmbot.start_worker("--toolchains", "go")
    wait_registered(wasmbot, {"worker-0.log": ["c"], "worker-1.log": ["go"]})
    message = ("no live worker has the rust toolchain this rust build needs (the 2 live worker(s) serve c, go); "
               "start one where rust builds can run: wasmbot worker --toolchains rust")
    for text in (f"/wasm test {HELLO} --lang rust", f"/wasm build {HELLO} --lang rust --tag 127.0.0.1:1/x:v1",
                 "/wasm init rusty --lang rust"):
        refused = wasmbot.cli("run", text, cwd=ROOT if "init" not in text else source_dir)
        assert refused.returncode == 1 and refused.stderr.splitlines()[-1] == f"wasmbot: {message}", refused.stderr
    (source_dir / "crate").mkdir()
    (source_dir / "crate" / "Cargo.toml").write_text('[package]\nname = "x"\n')  # detected, as the build would
    refused = wasmbot.cli("run", "--detach", "/wasm test crate", cwd=source_dir)
    assert refused.returncode == 1 and refused.stderr.splitlines()[-1] == f"wasmbot: {message}"
    assert wasmbot.store.recent() == []  # nothing recorded, nothing queued
    assert not (source_dir / "rusty").exists()



@pytest.mark.parametrize("wasmbot", ["redis"], indirect=True)
def test_a_pull_request_nobody_can_build_fails_at_its_build_saying_why(githubbot: GitHubBot) -> None:  # noqa: F811
    """A pull request's language is known once its fetch has checked it out: a C filter with
    only a Go worker live fails at the build, with the submit's message, on the check run."""
    api = githubbot.api
    api.add_repo(REPO, FILTER)
    sha = api.add_commit(REPO, FILTER)
    githubbot.bot.start_worker("--toolchains", "go")
    wait_registered(githubbot.bot, {"worker-0.log": ["go"]})
    assert githubbot.post("pull_request", pull_request(api, "opened", sha)).status_code == 200
    failed = api.wait_for(lambda a: completed(a, sha))
    message = ("no live worker has the c toolchain this c build needs (the 1 live worker(s) serve go); "
               "start one where c builds can run: wasmbot worker --toolchains c")
    assert failed["conclusion"] == "failure" and message in json.dumps(failed["output"]), failed["output"]
    [job] = githubbot.bot.store.recent()
    assert [(s.name, s.state) for s in job.stages] == [
        ("fetch", State.SUCCEEDED), ("build", State.FAILED), ("test", State.SKIPPED)]
    assert job.stage("build").error == message and job.artifacts["lang"] == "c"
    assert not ran(githubbot.bot, "worker-0.log", job.id, "build")

    # A retry looks at the live workers again: refused while none has C, run once one does.
    again = githubbot.bot.cli("retry", job.id)
    assert again.returncode == 1 and again.stderr.splitlines()[-1] == f"wasmbot: {message}"
    githubbot.bot.start_worker("--toolchains", "c")
    wait_registered(githubbot.bot, {"worker-0.log": ["go"], "worker-1.log": ["c"]})
    again = githubbot.bot.cli("retry", job.id)
    assert again.returncode == 0, again.stdout + again.stderr
    assert githubbot.bot.wait(job.id).state is State.SUCCEEDED
    assert ran(githubbot.bot, "worker-1.log", job.id, "build")
