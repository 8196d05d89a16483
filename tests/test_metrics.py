"""``GET /metrics`` after real jobs and real webhook deliveries, on both stores.

The jobs run in `wasmbot worker` processes, are submitted from Slack and from the CLI (other
processes again), and the deliveries go to `wasmbot serve`: the scrape shows figures that no
single process saw.  The unit tests below check that counting follows the atomic job update,
so a redelivered stage counts nothing.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import ROOT, TESTDATA, Wasmbot, front_ends
from githubapi import WEBHOOK_SECRET, webhook_headers
from prometheus_client.parser import text_string_to_metric_families
from slackapi import SlackStandIn, signed_headers

from workers import metrics
from workers.jobs import Job, Stage, State
from workers.pipeline import _finish, claim
from workers.store import JobStore

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def sample(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def labelled(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: value for (n, labels), value in samples.items() if n == name}


@dataclass
class Server:
    url: str
    slack: SlackStandIn
    process: subprocess.Popen[bytes]

    def scrape(self) -> Samples:
        response = requests.get(f"{self.url}/metrics", timeout=10)
        assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/plain")
        return parse(response.text)

    def slack_post(self, body: str, content_type: str, extra: dict[str, str] | None = None,
                   **signing: Any) -> requests.Response:
        headers = signed_headers(body, content_type, **signing) | (extra or {})
        return requests.post(f"{self.url}/slack/events", data=body.encode(), headers=headers, timeout=10)

    def slash(self, text: str, trigger: str, extra: dict[str, str] | None = None) -> requests.Response:
        fields = json.loads((TESTDATA / "slack" / "slash_command.json").read_text())
        fields.update(command="/wasm", text=text, trigger_id=trigger,
                      response_url=self.slack.response_url(f"commands/{uuid.uuid4().hex}"))
        return self.slack_post(urllib.parse.urlencode(fields), "application/x-www-form-urlencoded", extra)

    def github_post(self, event: str, raw: bytes, delivery: str, secret: str | None = WEBHOOK_SECRET,
                    payload: bool = True) -> requests.Response:
        return requests.post(f"{self.url}/github/webhook", data=raw, timeout=10,
                             headers=webhook_headers(event, raw, delivery=delivery, secret=secret, payload=payload))


@pytest.fixture
def server(wasmbot: Wasmbot) -> Iterator[Server]:
    """`wasmbot serve` with both front ends, against stand-ins of Slack's and GitHub's APIs."""
    with front_ends(wasmbot, {"WASMBOT_SOURCE_ROOT": str(ROOT),
                              "WASMBOT_SLACK_UPDATE_INTERVAL": "0.2"}) as (url, slack, process):
        yield Server(url, slack, process)


def test_a_scrape_counts_what_every_process_did(wasmbot: Wasmbot, server: Server, source_dir: Path) -> None:
    idle = server.scrape()
    assert sample(idle, "wasmbot_queue_depth") == 0
    assert labelled(idle, "wasmbot_jobs_total") == {}

    # A job submitted from Slack with no worker running waits in the queue.
    assert server.slash("build examples/hello-c", trigger="1.first-build").status_code == 200
    server.slack.wait_for(lambda api: api.called("chat.postMessage"), timeout=30)
    assert sample(server.scrape(), "wasmbot_queue_depth") == 1
    wasmbot.start_worker()
    first = wasmbot.wait(wasmbot.store.recent()[0].id)
    assert first.state is State.SUCCEEDED, first.failed_stage()
    # The same source again (from the CLI) is a build cache hit; a broken source fails `/wasm test`.
    cached = wasmbot.wait(wasmbot.submit("/wasm build examples/hello-c"))
    assert cached.state is State.SUCCEEDED and cached.stage("build").result["build_cache"] == "hit"
    (source_dir / "broken.c").write_text("int main( { return 0; }\n")
    broken = wasmbot.wait(wasmbot.submit(f"/wasm test tests/.sources/{source_dir.name}"))
    assert broken.state is State.FAILED and broken.stage("build").state is State.FAILED

    # Slack: a retried command, a forgery, an unsigned request, a replay, two malformed bodies.
    help_body = urllib.parse.urlencode(json.loads((TESTDATA / "slack" / "slash_command.json").read_text())
                                       | {"command": "/wasm", "text": "help"})
    form = "application/x-www-form-urlencoded"
    assert server.slash("help", trigger="2.retried").status_code == 200
    again = server.slash("help", trigger="2.retried", extra={"X-Slack-Retry-Num": "1",
                                                             "X-Slack-Retry-Reason": "http_timeout"})
    assert again.status_code == 200 and "wasmbot commands" in again.json()["text"]  # bolt still answers
    assert server.slack_post(help_body, form, secret="not-the-signing-secret").status_code == 401
    unsigned = requests.post(f"{server.url}/slack/events", data=help_body, headers={"Content-Type": form},
                             timeout=10)
    assert unsigned.status_code == 401
    assert server.slack_post(help_body, form, timestamp=int(time.time()) - 6 * 60).status_code == 401
    malformed = server.slack_post('{"type": "event_callback", ', "application/json")
    assert malformed.status_code == 400 and "the body is not valid JSON" in malformed.text
    assert server.slack_post("nothing=here", form).status_code == 404  # bolt: no listener for it
    challenge = (TESTDATA / "slack" / "url_verification.json").read_text()
    assert server.slack_post(challenge, "application/json").status_code == 200

    # GitHub: a ping, a delivery and its redelivery, unsigned and forged ones, missing headers, bad JSON.
    ping = (TESTDATA / "github" / "ping" / "payload.json").read_bytes()
    closed = (TESTDATA / "github" / "pull_request" / "closed.json").read_bytes()
    assert server.github_post("ping", ping, str(uuid.uuid4())).status_code == 200
    assert server.github_post("pull_request", closed, "d-1").status_code == 202  # ignored, but accepted
    assert server.github_post("pull_request", closed, "d-1").json()["message"] == "delivery d-1 was handled already"
    assert server.github_post("pull_request", closed, "d-2", secret=None).status_code == 401
    assert server.github_post("pull_request", closed, "d-3", secret="not-the-secret").status_code == 401
    assert requests.post(f"{server.url}/github/webhook", data=closed, timeout=10).status_code == 400
    assert server.github_post("pull_request", b"{not json", "d-4", payload=False).status_code == 400

    wasmbot.stop_workers()  # nothing more can change while the figures are read
    samples = server.scrape()
    assert sample(samples, "wasmbot_queue_depth") == 0
    assert labelled(samples, "wasmbot_jobs_total") == {
        frozenset({("command", "build"), ("state", "succeeded")}): 2,
        frozenset({("command", "test"), ("state", "failed")}): 1}
    stage_runs = {dict(labels)["stage"]: value
                  for labels, value in labelled(samples, "wasmbot_stage_duration_seconds_count").items()}
    assert stage_runs == {"build": 3, "test": 2, "push": 2}  # push ran, and skipped: no --tag
    for stage in stage_runs:
        inf = sample(samples, "wasmbot_stage_duration_seconds_bucket", stage=stage, le="+Inf")
        assert inf == stage_runs[stage] and sample(samples, "wasmbot_stage_duration_seconds_sum", stage=stage) > 0
    assert sample(samples, "wasmbot_build_cache_hits_total") == 1
    assert sample(samples, "wasmbot_build_cache_misses_total") == 1  # the failed build is neither
    deliveries = {(dict(k)["source"], dict(k)["outcome"]): v
                  for k, v in labelled(samples, "wasmbot_webhook_deliveries_total").items()}
    assert deliveries == {
        ("slack", "accepted"): 3, ("slack", "duplicate"): 1, ("slack", "bad_signature"): 2,
        ("slack", "replayed"): 1, ("slack", "invalid"): 2,
        ("github", "accepted"): 2, ("github", "duplicate"): 1, ("github", "bad_signature"): 2,
        ("github", "replayed"): 0, ("github", "invalid"): 2}
    assert sample(samples, "wasmbot_server_process_resident_memory_bytes") > 0


# -- counting follows the atomic job update ----------------------------------------------------

def two_stage_job() -> Job:
    return Job(requester="ana", origin="cli", command={"name": "test", "source": "x"}, text="/wasm test x",
               source_root="/tmp", stages=[Stage(name="build"), Stage(name="test")])


def deliver(store: JobStore, job_id: str, stage: str, owner: str, *, started: float | None = None,
            state: State = State.SUCCEEDED, result: dict[str, str] | None = None) -> str:
    """One delivery of a stage task, as run_stage makes it: claim, then (if it runs) finish."""
    claimed = store.update(job_id, lambda j: claim(j, stage, owner, started or time.time(), 60))
    if claimed == "run":
        store.update(job_id, lambda j: _finish(j, stage, owner, state, result or {}, None))
    return claimed


def figures(store: JobStore) -> Samples:
    from prometheus_client import generate_latest

    return parse(generate_latest(metrics.registry(store)).decode())


def test_a_redelivered_stage_counts_nothing(store: JobStore) -> None:
    job = two_stage_job()
    store.create(job)
    assert deliver(store, job.id, "build", "worker-a:1", started=time.time() - 200,
                   result={"build_cache": "miss"}) == "run"
    assert sample(figures(store), "wasmbot_queue_depth") == 1  # test is queued now
    assert deliver(store, job.id, "build", "worker-b:1") == "done"  # the same message, redelivered
    assert deliver(store, job.id, "test", "worker-a:1") == "run"
    before = store.counts()
    assert deliver(store, job.id, "test", "worker-b:1") == "done"
    assert not store.update(job.id, lambda j: _finish(j, "test", "worker-a:1", State.FAILED, {}, "late"))
    assert store.counts() == before

    samples = figures(store)
    assert labelled(samples, "wasmbot_jobs_total") == {frozenset({("command", "test"), ("state", "succeeded")}): 1}
    assert sample(samples, "wasmbot_stage_duration_seconds_count", stage="build") == 1
    assert sample(samples, "wasmbot_stage_duration_seconds_count", stage="test") == 1
    # The build took 200 s (claimed 200 s ago): it is in the 300 s bucket and not the 120 s one.
    assert sample(samples, "wasmbot_stage_duration_seconds_bucket", stage="build", le="120.0") == 0
    assert sample(samples, "wasmbot_stage_duration_seconds_bucket", stage="build", le="300.0") == 1
    assert sample(samples, "wasmbot_build_cache_misses_total") == 1
    assert sample(samples, "wasmbot_queue_depth") == 0


def test_a_stage_taken_over_counts_once_and_a_retried_job_counts_each_finish(store: JobStore) -> None:
    job = two_stage_job()
    store.create(job)
    store.update(job.id, lambda j: claim(j, "build", "lost:1", time.time() - 120, 60))  # lease expired
    assert deliver(store, job.id, "build", "worker-b:1", state=State.FAILED) == "run"
    assert not store.update(job.id, lambda j: _finish(j, "build", "lost:1", State.SUCCEEDED, {}, None))
    samples = figures(store)
    assert labelled(samples, "wasmbot_jobs_total") == {frozenset({("command", "test"), ("state", "failed")}): 1}
    assert sample(samples, "wasmbot_stage_duration_seconds_count", stage="build") == 1

    store.update(job.id, lambda j: _reset(j))  # what retry() does, without queueing a Celery task
    assert deliver(store, job.id, "build", "worker-b:1") == "run"
    assert deliver(store, job.id, "test", "worker-b:1") == "run"
    samples = figures(store)
    assert labelled(samples, "wasmbot_jobs_total") == {
        frozenset({("command", "test"), ("state", "failed")}): 1,
        frozenset({("command", "test"), ("state", "succeeded")}): 1}
    assert sample(samples, "wasmbot_stage_duration_seconds_count", stage="build") == 2


def _reset(job: Job) -> None:
    for stage in job.stages:
        stage.state, stage.error = State.PENDING, None
    job.state = State.QUEUED


def test_concurrent_counts_are_not_lost(store: JobStore) -> None:
    """Many writers at once (threads, each on its own connection, as replicas would be) add up."""
    def count() -> None:
        for _ in range(25):
            metrics.count_delivery(store, "github", "bad_signature")

    threads = [threading.Thread(target=count) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sample(figures(store), "wasmbot_webhook_deliveries_total", source="github",
                  outcome="bad_signature") == 200
