"""Server replicas (issue 22, acceptance 3 and 4): two `wasmbot serve` processes on one Redis,
each with its own data directory (as on two hosts), fed the same deliveries.  One job per
delivery, one Slack message, one pull request comment and one check run per job; the reporter
runs under a lease in the store, and another replica takes it over when its holder is killed.
A worker killed mid-stage still ends its job exactly once.  Real Redis, real processes."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import ROOT, Wasmbot
from githubapi import TOKEN, WEBHOOK_SECRET, GitHubStandIn, webhook_headers
from slackapi import BOT_TOKEN, SIGNING_SECRET, SlackStandIn, signed_headers, slash_command
from test_github import FILTER, REPO, completed, open_pull_request, pull_request

from bot import loglinks
from bot.follow import Follower, follow
from bot.localservices import Service, _wait_until, free_port, healthy
from workers.config import Settings
from workers.jobs import Job, Stage, State
from workers.pipeline import claim
from workers.store import JobStore, SqliteStore

KEY = "replicas-share-this-key-0123456789abcdef"


@dataclass
class Replica:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)


@dataclass
class Replicas:
    bot: Wasmbot
    github: GitHubStandIn
    slack: SlackStandIn
    servers: list[Replica]

    def deliver(self, replica: Replica, event: str, body: dict[str, Any], delivery: str) -> requests.Response:
        raw = json.dumps(body).encode()
        return requests.post(f"{replica.url}/github/webhook", data=raw, timeout=30,
                             headers=webhook_headers(event, raw, delivery=delivery))

    def command(self, replica: Replica, body: str, retry: bool = False) -> requests.Response:
        headers = signed_headers(body, "application/x-www-form-urlencoded")
        if retry:
            headers |= {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
        return requests.post(f"{replica.url}/slack/events", data=body.encode(), headers=headers, timeout=30)

    def slack_command_body(self, text: str, trigger: str) -> str:
        return slash_command(text, self.slack.response_url(f"commands/{uuid.uuid4().hex}"), trigger=trigger)

    def jobs(self) -> list[Job]:
        return self.bot.store.recent(100)


def start_replica(bot: Wasmbot, env: dict[str, str], name: str) -> Replica:
    """``wasmbot serve`` with its own data directory (another host), once it answers /healthz."""
    port = free_port()
    log = bot.workdir / f"serve-{name}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "serve", "--port", str(port)],
        env=bot.env | env | {"WASMBOT_DATA_DIR": str(bot.workdir / f"data-{name}")},
        cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    _wait_until(healthy(url), Service(f"wasmbot serve {name}", process, url, log), timeout=30)
    return Replica(url, process, log)


@pytest.fixture
def replicas(wasmbot: Wasmbot, github_api: GitHubStandIn, slack_api: SlackStandIn) -> Iterator[Replicas]:
    public = f"http://127.0.0.1:{free_port()}"  # the one address both stand behind
    env = {
        "SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_API_URL": slack_api.api_url,
        "WASMBOT_SLACK_UPDATE_INTERVAL": "0.2", "WASMBOT_SOURCE_ROOT": str(ROOT),
        "GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET, "GITHUB_TOKEN": TOKEN, "GITHUB_API_URL": github_api.url,
        "WASMBOT_GITHUB_WRITE_INTERVAL": "0", "WASMBOT_GITHUB_BACKOFF": "0.05",
        "WASMBOT_GITHUB_UPDATE_INTERVAL": "0.2", "WASMBOT_PUBLIC_URL": public, "WASMBOT_LOG_LINK_KEY": KEY,
    }
    wasmbot.env = wasmbot.env | env  # workers reach GitHub too
    servers = [start_replica(wasmbot, {}, name) for name in ("a", "b")]
    yield Replicas(wasmbot, github_api, slack_api, servers)
    for server in servers:
        if server.process.poll() is None:
            server.process.terminate()
            server.process.wait(30)


def both(work: Callable[[Replica], requests.Response], servers: list[Replica]) -> list[requests.Response]:
    """``work`` against every replica at once (a delivery both are fed)."""
    answers: dict[int, requests.Response] = {}
    start = threading.Barrier(len(servers))

    def run(i: int) -> None:
        start.wait()
        answers[i] = work(servers[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(servers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [answers[i] for i in range(len(servers))]


def slack_edits(api: SlackStandIn) -> list[dict[str, Any]]:
    return [c.args for c in api.called("chat.update")]


def slack_shows(api: SlackStandIn, state: str) -> dict[str, Any] | None:
    return next((u for u in reversed(slack_edits(api)) if f"*{state}*" in json.dumps(u["blocks"])), None)


def finished_events(store: JobStore, job_id: str) -> list[str]:
    return [e.state.value for e in store.events(job_id) if e.kind == "job" and e.state and e.state.finished]


def link_in(blocks: list[dict[str, Any]]) -> str:
    """The signed log link's path (the footer shows the hub's job page first)."""
    found = re.search(r"/jobs/[0-9a-f]{12}/log\?[^|>\"]+", json.dumps(blocks))
    assert found, blocks
    return found.group(0)


# -- fed the same deliveries -------------------------------------------------------------------

@pytest.mark.parametrize("wasmbot", ["redis"], indirect=True)
def test_two_replicas_fed_the_same_deliveries_make_one_job_and_one_report_each(replicas: Replicas) -> None:
    api, a, b = replicas.github, *replicas.servers
    opened = open_pull_request(api)
    sha = opened["pull_request"]["head"]["sha"]
    delivery = str(uuid.uuid4())
    answers = both(lambda r: replicas.deliver(r, "pull_request", opened, delivery), replicas.servers)
    assert sorted(x.json()["message"] == "handled" for x in answers) == [False, True], [x.text for x in answers]
    body = replicas.slack_command_body("build examples/hello-c", trigger="4711.replicas")
    answers = both(lambda r: replicas.command(r, body, retry=r is b), replicas.servers)
    assert [x.status_code for x in answers] == [200, 200]
    # A second push to the same pull request, to the other replica: two jobs, one PR comment.
    pushed = pull_request(api, "synchronize", api.add_commit(REPO, FILTER | {"README.md": b"two"}))
    assert replicas.deliver(b, "pull_request", pushed, str(uuid.uuid4())).json()["message"] == "handled"
    second = pushed["pull_request"]["head"]["sha"]

    replicas.bot.start_worker()
    assert api.wait_for(lambda a_: completed(a_, second))["conclusion"] == "success"
    assert api.wait_for(lambda a_: completed(a_, sha))["conclusion"] == "cancelled"  # superseded
    final = replicas.slack.wait_for(lambda s: slack_shows(s, "succeeded"))

    jobs = replicas.jobs()
    assert len([j for j in jobs if "github" in j.reports]) == 2
    assert len([j for j in jobs if j.origin.startswith("slack:")]) == 1
    for head in (sha, second):
        assert len([r for r in api.check_runs.values() if r["head_sha"] == head]) == 1
    comments = api.wait_for(lambda a_: [c for c in a_.comments_on(REPO, 2) if "✅" in c["body"]])
    assert len(api.comments_on(REPO, 2)) == 1, comments
    assert len(replicas.slack.called("chat.postMessage")) == 1
    assert len({(u["channel"], u["ts"]) for u in slack_edits(replicas.slack)}) == 1  # one message edited
    for job in jobs:
        assert len(finished_events(replicas.bot.store, job.id)) == 1

    # The log link verifies on every replica (one shared key), and a forged one on none.
    path = link_in(final["blocks"])
    for server in (a, b):
        assert requests.get(f"{server.url}{path}", timeout=10).status_code == 200
        assert requests.get(f"{server.url}{path.replace('sig=', 'sig=0')}", timeout=10).status_code == 403


# -- failures ------------------------------------------------------------------------------------

@pytest.mark.parametrize("wasmbot", ["redis"], indirect=True)
def test_a_worker_killed_mid_stage_still_ends_the_job_exactly_once(replicas: Replicas) -> None:
    a = replicas.servers[0]
    assert replicas.command(a, replicas.slack_command_body("build examples/hello-c", "kill.worker")).status_code == 200
    replicas.slack.wait_for(lambda s: s.called("chat.postMessage"))
    [job] = replicas.jobs()
    first = replicas.bot.start_worker()
    replicas.bot.wait(job.id, until="running", stage="build")
    os.killpg(first.pid, signal.SIGKILL)  # the worker and its pool, mid-build
    first.wait(30)
    replicas.bot.start_worker()
    done = replicas.bot.wait(job.id)
    assert done.state is State.SUCCEEDED, [e.text for e in replicas.bot.store.events(job.id) if e.kind == "log"][-20:]
    assert done.stage("build").attempts >= 2  # it ran again, on the other worker
    assert finished_events(replicas.bot.store, job.id) == ["succeeded"]
    replicas.slack.wait_for(lambda s: slack_shows(s, "succeeded"))
    assert len(replicas.slack.called("chat.postMessage")) == 1
    assert len({u["ts"] for u in slack_edits(replicas.slack)}) == 1


@pytest.mark.parametrize("wasmbot", ["redis"], indirect=True)
def test_a_replica_killed_mid_report_is_taken_over_by_the_other(replicas: Replicas) -> None:
    api, a, b = replicas.github, *replicas.servers
    opened = open_pull_request(api)
    sha = opened["pull_request"]["head"]["sha"]
    assert replicas.deliver(a, "pull_request", opened, str(uuid.uuid4())).json()["message"] == "handled"
    assert replicas.command(a, replicas.slack_command_body("build examples/hello-c", "kill.replica")).status_code == 200
    run = api.wait_for(lambda a_: next(iter(r for r in a_.check_runs.values() if r["head_sha"] == sha), None))
    replicas.slack.wait_for(lambda s: s.called("chat.postMessage"))
    replicas.bot.start_worker()
    # A reports the builds running (check run and Slack message), and dies mid-report.
    api.wait_for(lambda a_: any(e.get("status") == "in_progress" for e in a_.check_edits[run["id"]]))
    replicas.slack.wait_for(lambda s: slack_shows(s, "running"))
    a.kill()

    assert api.wait_for(lambda a_: completed(a_, sha))["conclusion"] == "success"
    final = replicas.slack.wait_for(lambda s: slack_shows(s, "succeeded"))
    assert [r["id"] for r in api.check_runs.values() if r["head_sha"] == sha] == [run["id"]]
    comment = api.wait_for(lambda a_: [c for c in a_.comments_on(REPO, 2) if "✅" in c["body"]])
    assert len(api.comments_on(REPO, 2)) == 1, comment
    assert len(replicas.slack.called("chat.postMessage")) == 1
    assert len({u["ts"] for u in slack_edits(replicas.slack)}) == 1  # B edits A's message
    for job in replicas.jobs():
        assert job.state is State.SUCCEEDED and len(finished_events(replicas.bot.store, job.id)) == 1
    assert requests.get(f"{b.url}{link_in(final['blocks'])}", timeout=10).status_code == 200


@pytest.mark.parametrize("wasmbot", ["redis"], indirect=True)
def test_a_replica_killed_while_creating_the_check_run_leaves_one_check_run(replicas: Replicas) -> None:
    """Killed after sending the check run but before noting its id: the next holder finds it."""
    api, a = replicas.github, replicas.servers[0]
    opened = open_pull_request(api)
    sha = opened["pull_request"]["head"]["sha"]
    release = api.hold(r"/check-runs$")
    assert replicas.deliver(a, "pull_request", opened, str(uuid.uuid4())).json()["message"] == "handled"
    api.wait_for(lambda a_: ("POST", f"/repos/{REPO}/check-runs") in a_.calls)
    a.kill()
    release()  # GitHub makes the check run A asked for; A never hears of it
    api.wait_for(lambda a_: [r for r in a_.check_runs.values() if r["head_sha"] == sha])
    replicas.bot.start_worker()
    assert api.wait_for(lambda a_: completed(a_, sha))["conclusion"] == "success"
    assert len([r for r in api.check_runs.values() if r["head_sha"] == sha]) == 1
    assert len(api.comments_on(REPO, 2)) == 1


@pytest.mark.parametrize("wasmbot", ["redis"], indirect=True)
def test_a_slack_install_begun_on_one_replica_ends_on_the_other_and_serves_both(
        wasmbot: Wasmbot, slack_api: SlackStandIn) -> None:
    """Installed through OAuth, a workspace's token is in the store, not one replica's data
    directory: the install page on one replica, the redirect on the other, and both answer that
    workspace's commands with its token; a state is good once, on either replica."""
    env = {"SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_BOT_TOKEN": "", "SLACK_API_URL": slack_api.api_url,
           "SLACK_CLIENT_ID": slack_api.client_id, "SLACK_CLIENT_SECRET": slack_api.client_secret,
           "WASMBOT_SOURCE_ROOT": str(ROOT), "WASMBOT_LOG_LINK_KEY": KEY,
           "WASMBOT_PUBLIC_URL": f"http://127.0.0.1:{free_port()}"}
    first, second = (start_replica(wasmbot, env, name) for name in ("a", "b"))
    try:
        page = requests.get(f"{first.url}/slack/install", timeout=10)
        assert page.status_code == 200
        state = re.search(r"state=([^&\"]+)", page.text).group(1)  # type: ignore[union-attr]
        cookie = {"Cookie": page.headers["Set-Cookie"].split(";")[0]}  # as the browser sends it back
        done = requests.get(f"{second.url}/slack/oauth_redirect", params={"code": "c0de", "state": state},
                            headers=cookie, timeout=10)
        assert done.status_code == 200, done.text
        again = requests.get(f"{first.url}/slack/oauth_redirect", params={"code": "c0de", "state": state},
                             headers=cookie, timeout=10)
        assert again.status_code != 200 and len(slack_api.called("oauth.v2.access")) == 1

        for n, replica in enumerate((first, second), start=1):  # each posts its job's message
            body = slash_command("build examples/hello-c", slack_api.response_url(f"commands/{uuid.uuid4().hex}"))
            answer = requests.post(f"{replica.url}/slack/events", data=body.encode(), timeout=30,
                                   headers=signed_headers(body, "application/x-www-form-urlencoded"))
            assert answer.status_code == 200 and answer.text == "", answer.text
            posted = slack_api.wait_for(lambda api, n=n: api.called("chat.postMessage")[n - 1:n], timeout=30)
            assert posted[0].token == "xoxb-installed-c0de"  # the installation's token, on either replica
        assert list((wasmbot.workdir / "data-b").glob("slack/**/bot-*")) == []  # nothing kept locally
    finally:
        for replica in (first, second):
            replica.process.terminate()
            replica.process.wait(30)


# -- the rules underneath ------------------------------------------------------------------------

def test_a_lease_is_held_renewed_taken_over_once_lapsed_and_dropped(store: JobStore) -> None:
    assert store.take_lease("report", "job1", "a", ttl=60)
    assert store.take_lease("report", "job1", "a", ttl=60)  # renewed by its holder
    assert not store.take_lease("report", "job1", "b", ttl=60)
    assert store.lapsed_leases("report") == []
    assert store.take_lease("report", "job2", "a", ttl=0.05)
    deadline = time.monotonic() + 10
    while not store.lapsed_leases("report"):  # the store's clock runs it out
        assert time.monotonic() < deadline
    assert store.lapsed_leases("report") == ["job2"]
    assert store.take_lease("report", "job2", "b", ttl=60)  # taken over
    assert not store.take_lease("report", "job2", "a", ttl=60)
    store.drop_lease("report", "job2", "a")  # not a's to drop any more
    assert not store.take_lease("report", "job2", "a", ttl=60)
    store.drop_lease("report", "job2", "b")
    assert store.lapsed_leases("report") == [] and store.take_lease("report", "job2", "a", ttl=60)
    assert store.lapsed_leases("other") == []


def test_a_replica_whose_lease_was_taken_over_sends_nothing_more(tmp_path: Path) -> None:
    """A replica that stalled past its lease finds it taken at its next update, and stops."""
    store = SqliteStore(tmp_path / "jobs.sqlite")
    job = Job(requester="ana", origin="cli", command={"name": "build", "source": "x"}, text="/wasm build x",
              source_root="/tmp", stages=[Stage(name="build")])
    store.create(job)
    sent: list[State] = []

    class Recorder(Follower):
        async def _follow(self, job_id: str) -> None:
            await follow(self.store, job_id, self.threads, 0, self.fenced(self.record))

        async def record(self, seen: Job) -> None:
            sent.append(seen.state)
            first.set()

    async def run() -> None:
        recorder = Recorder(store, "test-report", threads=2, lease_ttl=60)
        recorder.follow(job.id)
        await first.wait()
        store.drop_lease("test-report", job.id, recorder.owner)  # as if it lapsed while stalled,
        assert store.take_lease("test-report", job.id, "another-replica", 60)  # and was taken over
        store.update(job.id, lambda j: claim(j, "build", "w:1", time.time(), 60))  # a change to report
        await recorder.wait(job.id)
        await recorder.close()

    first = asyncio.Event()
    asyncio.run(run())
    assert sent == [State.QUEUED]
    assert not store.take_lease("test-report", job.id, "a-third", 60)  # still the new holder's


def test_log_links_share_a_configured_key_and_expire(tmp_path: Path) -> None:
    one = Settings(data_dir=tmp_path / "a", public_url="http://wasmbot", log_link_key=KEY,
                   redis_url="redis://127.0.0.1:1/0")
    other = Settings(data_dir=tmp_path / "b", public_url="http://wasmbot", log_link_key=KEY,
                     redis_url="redis://127.0.0.1:1/0", log_link_ttl=60)
    url = loglinks.log_url(one, "abc123", now=1000.0)
    assert url is not None
    query = dict(part.split("=") for part in url.split("?")[1].split("&"))
    assert loglinks.verify(other, "abc123", query["sig"], query["exp"], now=1000.0)
    assert not loglinks.verify(other, "abc124", query["sig"], query["exp"], now=1000.0)
    assert not loglinks.verify(other, "abc123", query["sig"], str(int(query["exp"]) + 1), now=1000.0)
    assert not loglinks.verify(other, "abc123", query["sig"], query["exp"], now=float(query["exp"]) + 1)
    assert not loglinks.verify(other, "abc123", query["sig"], "soon", now=1000.0)
    assert 1000 + one.log_link_ttl <= int(query["exp"]) <= 1000 + 1.1 * one.log_link_ttl
    assert loglinks.log_url(one, "abc123", now=1001.0) == url  # the same from one edit to the next

    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    from_file = Settings(data_dir=tmp_path / "c", log_link_key_file=key_file, redis_url="redis://127.0.0.1:1/0")
    assert loglinks.verify(from_file, "abc123", query["sig"], query["exp"], now=1000.0)

    # Local mode (no Redis) keeps a key of its data directory; with Redis the key must be shared.
    local = Settings(data_dir=tmp_path / "d", public_url="http://wasmbot")
    assert loglinks.log_url(local, "abc123") is not None and (tmp_path / "d" / "log-link.key").exists()
    shared = Settings(data_dir=tmp_path / "e", public_url="http://wasmbot", redis_url="redis://127.0.0.1:1/0")
    with pytest.raises(loglinks.NoKey, match="WASMBOT_LOG_LINK_KEY"):
        loglinks.key(shared)
    assert loglinks.log_url(shared, "abc123") is None
    assert not loglinks.verify(shared, "abc123", query["sig"], query["exp"], now=1000.0)
    assert KEY not in repr(one) and KEY not in str(one.model_dump())

