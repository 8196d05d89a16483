"""Log caps (issue 16, point 3): long lines are cut, each job keeps a bounded log, and a build
printing one 400 MB line leaves the worker, Redis and the followers unharmed."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import redis
import requests
from conftest import Wasmbot, log_link
from slackapi import SlackStandIn
from test_slack import final_message, start_slackbot

from bot.follow import follow
from bot.localservices import Service, _wait_until
from workers import logcap, sandbox
from workers.jobs import Event, Job, Stage, State
from workers.store import JobStore, RedisStore, SqliteStore

HUGE = 400_000_000
LOUD_CLANG = f"""#!/bin/sh
# A toolchain that floods its log: 6000 ordinary lines, then one line of {HUGE} bytes.
seq -f "line %06g $(printf '%0200d' 0)" 1 6000
head -c {HUGE} /dev/zero | tr '\\0' x
echo
echo "error: the end"
exit 1
"""


def new_job() -> Job:
    return Job(requester="t", origin="cli", command={"name": "build", "source": "x"}, text="/wasm build x",
               source_root="/", stages=[Stage(name="build")])


@pytest.fixture(params=["sqlite", "redis"])
def capped(request: pytest.FixtureRequest, tmp_path: Path) -> JobStore:
    """A store of each kind with small caps: 100-byte lines, 64 KiB per job."""
    caps = {"line_max": 100, "job_log_max": 64 * 1024}
    if request.param == "redis":
        service: Service = request.getfixturevalue("redis_service")
        redis.Redis.from_url(service.url).flushdb()
        return RedisStore(service.url, **caps)
    return SqliteStore(tmp_path / "jobs.sqlite", **caps)


def test_the_reader_cuts_long_lines_with_a_marker(tmp_path: Path) -> None:
    script = "printf 'short\\n'; head -c 100000 /dev/zero | tr '\\0' y; printf '\\n\\nééééé\\nno newline'"
    proc = subprocess.Popen(["sh", "-c", script], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    lines: list[str] = []
    logcap.pump(proc.stdout, 9, lines.append)
    assert proc.wait() == 0
    # 9 bytes of "ééééé" end inside the fifth é: that partial character is left out, not mangled
    assert lines == ["short", "yyyyyyyyy … [97.6 KiB cut]", "", "éééé … [1 bytes cut]", "no newlin … [1 bytes cut]"]


def test_a_job_keeps_its_head_and_tail_and_every_state_change(capped: JobStore) -> None:
    job = new_job()
    capped.create(job)
    capped.log(job.id, "build", "z" * 5000)  # cut at 100 bytes
    for i in range(2000):
        capped.log(job.id, "build", f"line {i:04d} " + "." * 40)
        if i == 1000:  # a state change amid the lines that will be dropped
            capped.update(job.id, lambda j: setattr(j.stages[0], "state", State.RUNNING))
    capped.update(job.id, lambda j: setattr(j, "state", State.FAILED))
    events = capped.events(job.id)
    seqs = [e.seq for e in events]
    assert seqs == sorted(set(seqs))
    logs = [e.text for e in events if e.kind == "log"]
    assert logs[0] == "z" * 100 + " … [4.8 KiB cut]"
    assert logs[1].startswith("line 0000 ") and logs[-1].startswith("line 1999 ")
    markers = [t for t in logs if "dropped" in t]
    assert len(markers) == 1
    dropped = int(markers[0].split()[1])
    kept = [t for t in logs if t.startswith("line ")]
    assert len(kept) + dropped == 2000
    numbers = [int(t.split()[1]) for t in kept]
    head = numbers[:logs.index(markers[0]) - 1]
    assert head == list(range(len(head))) and numbers[len(head):] == list(range(2000 - len(numbers[len(head):]), 2000))
    stored = sum(len(e.model_copy(update={"seq": 0}).model_dump_json()) for e in events if e.kind == "log")
    assert stored <= 64 * 1024 + 200  # the budget, and the marker
    states = [(e.kind, e.stage, e.state) for e in events if e.kind != "log"]
    assert ("stage", "build", State.RUNNING) in states and states[-1] == ("job", None, State.FAILED)
    # a follower that has read up to the marker's place sees the rest in order
    after = [e.seq for e in capped.events(job.id, after=seqs[len(head)])]
    assert after == seqs[len(head) + 1:]


@pytest.fixture(scope="session")
def loud_toolchain(toolchain_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The C toolchain image with a ``clang`` that prints a 400 MB line (a hostile build)."""
    context = tmp_path_factory.mktemp("loud")
    (context / "clang").write_text(LOUD_CLANG)
    (context / "clang").chmod(0o755)
    (context / "Containerfile").write_text(f"FROM {toolchain_image}\nCOPY clang /usr/local/bin/clang\n")
    tag = "localhost/wasmbot-test/loud-c:latest"
    built = sandbox.podman("build", "-t", tag, str(context), timeout=300)
    assert built.returncode == 0, built.stderr
    yield tag
    sandbox.podman("rmi", "--force", tag)


class Peaks:
    """The largest RSS of the worker's processes, and Redis's used_memory, while a job runs."""

    def __init__(self, worker: int, redis_url: str | None) -> None:
        self.worker = psutil.Process(worker)
        self.redis = redis.Redis.from_url(redis_url) if redis_url else None
        self.rss = self.used_memory = 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while not self.done.wait(0.05):
            for proc in [self.worker, *self.worker.children(recursive=True)]:
                try:
                    if "python" in proc.name():
                        self.rss = max(self.rss, proc.memory_info().rss)
                except psutil.NoSuchProcess:
                    continue
            if self.redis is not None:
                self.used_memory = max(self.used_memory, int(self.redis.info("memory")["used_memory"]))

    def stop(self) -> None:
        self.done.set()
        self.thread.join()


def test_a_400_mb_line_leaves_worker_redis_and_follower_unharmed(
        wasmbot: Wasmbot, loud_toolchain: str, source_dir: Path) -> None:
    (source_dir / "filter.c").write_text("int x;\n")
    wasmbot.env |= {"WASMBOT_TOOLCHAIN_IMAGES": f'{{"c": "{loud_toolchain}"}}', "WASMBOT_JOB_LOG_MAX_MB": "1"}
    worker = wasmbot.start_worker()
    log = wasmbot.workdir / f"worker-{len(wasmbot.workers) - 1}.log"
    _wait_until(lambda: bool(wasmbot.store.live_workers()), Service("wasmbot worker", worker, "", log), timeout=60)
    peaks = Peaks(worker.pid, wasmbot.env.get("REDIS_URL"))
    try:
        # the CLI follows the job as it runs (it starts no worker of its own: ours is live)
        proc = wasmbot.cli("run", f"/wasm build tests/.sources/{source_dir.name}", timeout=600)
    finally:
        peaks.stop()
    assert peaks.rss < 300 * 2**20, f"worker RSS {peaks.rss >> 20} MiB"
    if peaks.redis is not None:
        assert peaks.used_memory < 50 * 2**20, f"Redis used_memory {peaks.used_memory >> 20} MiB"

    assert proc.returncode == 1, proc.stderr[-2000:]
    printed = proc.stdout.splitlines()
    assert "[build] line 000001 " + "0" * 200 in printed
    cut = "[build] " + "x" * 8192 + f" … [{logcap.human(HUGE - 8192)} cut]"
    assert cut in printed and "[build] error: the end" in printed
    assert any(line.startswith("[build] failed in ") for line in printed)
    assert len(proc.stdout) < 4 * 2**20

    job = wasmbot.store.recent()[0]
    assert job.state is State.FAILED
    error = job.stage("build").error or ""
    assert "error: the end" in error and len(error) < 6 * 8300
    events = wasmbot.store.events(job.id)
    logs = [e.text for e in events if e.kind == "log"]
    assert sum(len(t.encode()) for t in logs) < 2**20
    marker = next(t for t in logs if t.startswith("… ") and "dropped" in t)
    assert logs.index(marker) < logs.index(cut.removeprefix("[build] "))
    assert logs[-1] == "error: the end"
    assert [e.state for e in events if e.kind == "job"][-1] is State.FAILED
    assert any(e.kind == "stage" and e.state is State.FAILED for e in events)


@pytest.mark.parametrize("wasmbot", ["redis"], indirect=True)
def test_the_slack_reporter_follows_a_400_mb_line_within_slacks_limits(
        wasmbot: Wasmbot, loud_toolchain: str, source_dir: Path, tmp_path: Path) -> None:
    (source_dir / "filter.c").write_text("int x;\n")
    wasmbot.env |= {"WASMBOT_TOOLCHAIN_IMAGES": f'{{"c": "{loud_toolchain}"}}'}
    api = SlackStandIn()
    api.start()
    wasmbot.start_worker()
    slackbot = start_slackbot(wasmbot, api, tmp_path)
    try:
        assert slackbot.command(f"build tests/.sources/{source_dir.name}").ok
        final = final_message(api, "failed")
        assert slackbot.process.poll() is None  # the server and its reporter are still up
        job = wasmbot.store.recent(1)[0]
        page = requests.get(log_link(wasmbot, slackbot.url, job.id),
                            timeout=30)
    finally:
        slackbot.process.terminate()
        slackbot.process.wait(30)
        api.stop()
    for update in api.called("chat.update"):
        assert len(update.args["text"]) <= 4000
        texts = [b["text"]["text"] for b in update.args["blocks"] if "text" in b]
        texts += [e["text"] for b in update.args["blocks"] for e in b.get("elements", []) if "text" in e]
        assert all(len(t) <= 3000 for t in texts)
    assert "error: the end" in json.dumps(final["blocks"])
    assert page.status_code == 200 and len(page.content) < 5 * 2**20
    assert "x" * 8192 + f" … [{logcap.human(HUGE - 8192)} cut]" in page.text


def test_a_redis_stream_from_an_older_wasmbot_is_renumbered_on_the_next_event(redis_service: Service) -> None:
    client = redis.Redis.from_url(redis_service.url)
    client.flushdb()
    store = RedisStore(redis_service.url)
    job = new_job()
    client.set(f"wasmbot:job:{job.id}", job.model_dump_json())
    for text in ("one", "two"):  # as an older wasmbot wrote them: time-based ids
        client.xadd(f"wasmbot:events:{job.id}", {"e": Event(kind="log", text=text).model_dump_json()})
    assert [(e.seq, e.text) for e in store.events(job.id, after=1)] == [(2, "two")]
    store.log(job.id, None, "three")
    assert [(e.seq, e.text) for e in store.events(job.id)] == [(1, "one"), (2, "two"), (3, "three")]
    assert [e.text for e in store.events(job.id, after=2)] == ["three"]


class FinishedMeanwhile:
    """A real store, and the interleaving a long log makes likely: the job finishes after a
    follower has read its events and before it reads the record."""

    def __init__(self, store: JobStore) -> None:
        self.store, self.gets = store, 0

    def events(self, job_id: str, after: int = 0, timeout: float = 0) -> list[Event]:
        return self.store.events(job_id, after, timeout)

    def get(self, job_id: str) -> Job | None:
        self.gets += 1
        if self.gets == 1:
            self.store.log(job_id, "build", "a line")
        elif self.gets == 2:
            self.store.update(job_id, lambda j: setattr(j, "state", State.FAILED))
        return self.store.get(job_id)


def test_a_follower_sees_the_end_even_when_the_record_is_ahead_of_the_events(store: JobStore) -> None:
    job = new_job()
    store.create(job)
    seen: list[State] = []

    async def update(current: Job) -> None:
        seen.append(current.state)

    async def run() -> Job | None:
        with concurrent.futures.ThreadPoolExecutor(2) as threads:
            return await follow(FinishedMeanwhile(store), job.id, threads, 0, update)  # type: ignore[arg-type]

    final = asyncio.run(run())
    assert final is not None and final.state is State.FAILED
    assert seen[-1] is State.FAILED  # the last edit shows the end
