"""The hub's jobs pages, served by a real ``wasmbot serve`` over each job store: the list
(filters, pages), a job's page (stages, timings, module digest, ABI report, PR and Slack links,
the log so far) and its log followed live over server-sent events, in Chromium too."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests
from hubhelp import Hub, browser, fetched_from, make_job, serve_hub, sign_in, sse_events

from bot.localservices import Service
from workers.abitest.expect import Difference
from workers.abitest.report import CaseResult, Report
from workers.jobs import Job, State


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def hub(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    redis_url = None
    if request.param == "redis":
        service: Service = request.getfixturevalue("redis_service")
        redis.Redis.from_url(service.url).flushdb()
        redis_url = service.url
    with serve_hub(tmp_path_factory.mktemp("hub"), redis_url=redis_url) as served:
        yield served


@pytest.fixture(scope="module")
def client(hub: Hub) -> requests.Session:
    """Signed in through GitHub as octocat."""
    session = requests.Session()
    assert session.get(f"{hub.url}/hub/signin/github").url == f"{hub.url}/hub/jobs"
    return session


def job_ids(page: str) -> list[str]:
    return re.findall(r'href="/hub/jobs/([0-9a-f]{12})"', page)


def finish(hub: Hub, job: Job, state: State = State.SUCCEEDED) -> None:
    def end(stored: Job) -> None:
        stored.state = state
        for stage in stored.stages:
            stage.state = state

    hub.store.update(job.id, end)


def test_the_list_filters_and_pages(hub: Hub, client: requests.Session) -> None:
    made = [make_job(hub.store, requester=f"github:{'alice' if i % 3 else 'bob'}",
                     state=State.FAILED if i % 5 == 0 else State.SUCCEEDED,
                     reports={"github": {"repo": f"acme/{'edge' if i % 2 else 'auth'}-filter", "pr": str(i)}},
                     created_at=1_800_000_000 + i)  # after every other test's jobs: the newest
            for i in range(70)]
    newest = [job.id for job in reversed(made)]
    first = client.get(f"{hub.url}/hub/jobs")
    assert job_ids(first.text) == newest[:50] and 'rel="next" href="/hub/jobs?page=2"' in first.text
    second = client.get(f"{hub.url}/hub/jobs", params={"page": 2})
    assert job_ids(second.text)[:20] == newest[50:70] and 'rel="prev"' in second.text

    wanted = {"repo": "acme/edge", "requester": "bob", "state": "failed"}
    expected = [j.id for j in reversed(made) if j.reports["github"]["repo"] == "acme/edge-filter"
                and j.requester == "github:bob" and j.state is State.FAILED]
    assert expected and job_ids(client.get(f"{hub.url}/hub/jobs", params=wanted).text) == expected
    assert client.get(f"{hub.url}/hub/jobs", params={"state": "bogus"}).status_code == 400


def test_a_job_page_shows_stages_digest_report_links_and_log(hub: Hub, client: requests.Session) -> None:
    report = Report(module="filter.wasm", size=40_960, sha256="ab" * 32, abi_version="0.2.1",
                    root_ids=["edge_root"], cases=[
                        CaseResult("adds a header", seconds=0.01),
                        CaseResult("blocks POST", [Difference("status", "403", "200")], seconds=0.02)])
    job = make_job(hub.store, origin="github:acme/edge-filter#7", artifacts={
        "module_sha256": "sha256:" + "cd" * 32, "module_size": "40960"},
        reports={"github": {"repo": "acme/edge-filter", "pr": "7",
                            "check_url": "https://github.example/acme/edge-filter/runs/5"},
                 "slack": {"team": "T1", "channel": "C0WASM", "ts": "1700000000.000100"}})
    # kept where the test stage keeps it, on whichever worker ran it (workers/artifacts.py)
    hub.store.put_artifact(job.id, "abi-test.json", json.dumps(report.to_dict()).encode(), 3600.0)

    def started(stored: Job) -> None:
        stored.artifacts["report"] = f"store:{job.id}/abi-test.json"
        stored.stages[0].state, stored.stages[0].started_at, stored.stages[0].finished_at = \
            State.SUCCEEDED, 1_700_000_000.0, 1_700_000_083.5
        stored.stages[0].attempts = 1

    hub.store.update(job.id, started)
    hub.store.log(job.id, "build", "compiling <filter.c> & linking")
    page = client.get(f"{hub.url}/hub/jobs/{job.id}").text
    assert "1 min 23 s" in page and "2023-11-14 22:13:20 UTC" in page  # the build stage's timing
    assert "sha256:" + "cd" * 32 in page
    assert "ABI 0.2.1, 1/2 cases passed" in page and "edge_root" in page and "status: expected 403, got 200" in page
    assert f'href="{hub.github.url}/acme/edge-filter/pull/7"' in page  # github_web_url: GitHub or GHES
    assert 'href="https://github.example/acme/edge-filter/runs/5"' in page
    assert 'href="https://slack.com/archives/C0WASM/p1700000000000100"' in page
    assert "[build] compiling &lt;filter.c&gt; &amp; linking" in page  # the log so far, escaped
    assert client.get(f"{hub.url}/hub/jobs/0123456789ab").status_code == 404


def test_the_log_streams_as_server_sent_events(hub: Hub, client: requests.Session) -> None:
    job = make_job(hub.store)
    hub.store.log(job.id, "build", "before the page")
    page = client.get(f"{hub.url}/hub/jobs/{job.id}").text
    after = re.search(r'data-after="(\d+)"', page)
    assert after and "[build] before the page" in page
    with client.get(f"{hub.url}/hub/jobs/{job.id}/events", params={"after": after[1]}, stream=True,
                    timeout=30) as stream:
        assert stream.headers["Content-Type"] == "text/event-stream"
        lines = stream.iter_lines(decode_unicode=True)
        hub.store.log(job.id, "build", "line one")
        received = _until(lines, lambda block: "line one" in block)
        assert sse_events(received) == [("log", "[build] line one")]  # nothing from before the page
        hub.store.log(job.id, "build", "line two")
        assert sse_events(_until(lines, lambda block: "line two" in block)) == [("log", "[build] line two")]
        finish(hub, job)
        rest = sse_events(_until(lines, lambda block: "event: end" in block))
        assert ("state", "succeeded") in rest and rest[-1] == ("end", "succeeded")
    # A reconnecting browser sends Last-Event-ID and gets only what it missed.
    seq = hub.store.events(job.id)[-3].seq
    again = client.get(f"{hub.url}/hub/jobs/{job.id}/events", headers={"Last-Event-ID": str(seq)}, timeout=30)
    assert [e for e in sse_events(again.text) if e[0] == "log"] == \
        [("log", f"[{e.stage or 'job'}] {e.text or (e.state.value if e.state else '')}")
         for e in hub.store.events(job.id, after=seq)]


def _until(lines: Iterator[str], done: object) -> str:
    """The stream's lines up to the end of the first event block for which ``done`` holds."""
    block: list[str] = []
    seen: list[str] = []
    for line in lines:
        if line:
            block.append(line)
            continue
        text = "\n".join(block)
        seen.append(text)
        block = []
        if callable(done) and done(text):
            return "\n\n".join(seen) + "\n\n"
    raise AssertionError(f"the stream ended before the event; got {seen}")


def test_a_browser_sees_log_lines_arrive(hub: Hub) -> None:
    from playwright.sync_api import expect

    job = make_job(hub.store)
    hub.store.log(job.id, "build", "already there")
    with browser() as chromium:
        page = chromium.new_page()
        sign_in(page, hub)
        page.goto(f"{hub.url}/hub/jobs/{job.id}")
        log = page.locator("#log")
        expect(log).to_contain_text("[build] already there")
        for n in range(3):  # lines written after the page was made come through its event stream
            hub.store.log(job.id, "build", f"live line {n}")
            expect(log).to_contain_text(f"[build] live line {n}")
        expect(page.locator("#log-note")).to_have_text("Following the log as it is written.")
        finish(hub, job, State.FAILED)
        expect(page.locator("#job-state")).to_have_text("failed")
        expect(page.locator("#log-note")).to_have_text("The job has finished.")
        assert log.inner_text().count("already there") == 1  # the stream starts after the page's lines


def test_without_javascript_the_page_shows_the_log_so_far(hub: Hub, tmp_path: Path) -> None:
    job = make_job(hub.store)
    hub.store.log(job.id, "test", "so far")
    with browser() as chromium:
        page = chromium.new_context(java_script_enabled=False).new_page()
        sign_in(page, hub)  # the sign-in needs no JavaScript either
        page.goto(f"{hub.url}/hub/jobs/{job.id}")
        assert "[test] so far" in page.locator("#log").inner_text()
        assert page.get_by_text("reload the page to see more").is_visible()


def test_the_pages_fit_a_phone_and_follow_the_keyboard(hub: Hub) -> None:
    from playwright.sync_api import expect

    job = make_job(hub.store, text="build examples/a-filter-with-a-rather-long-name --tag registry.example:5000/team/x:v1")
    hub.store.log(job.id, "build", "a log line that is much wider than a phone's screen " * 8)
    with browser() as chromium:
        page = chromium.new_page(viewport={"width": 360, "height": 740}, is_mobile=True, has_touch=True)
        sign_in(page, hub)
        loaded = fetched_from(page)
        for path in ("/hub/jobs", f"/hub/jobs/{job.id}"):
            page.goto(f"{hub.url}{path}")
            overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 0, f"{path} is {overflow}px wider than the phone's screen"
        assert loaded and all(url.startswith(f"{hub.url}/hub/") for url in loaded), loaded  # no CDN
        page.goto(f"{hub.url}/hub/jobs")
        page.keyboard.press("Tab")
        expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
        outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
        assert outline == "solid"  # focus is visible
        page.keyboard.press("Enter")
        expect(page.locator("#main")).to_be_focused()
        page.keyboard.press("Tab")  # the first thing in the page: the repository filter
        expect(page.get_by_label("Repository")).to_be_focused()
        page.keyboard.type("no-such-repository")
        page.keyboard.press("Enter")
        page.wait_for_url(f"{hub.url}/hub/jobs?repo=no-such-repository&requester=&state=")
        expect(page.get_by_text("No jobs match these filters.")).to_be_visible()
