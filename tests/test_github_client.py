"""The GitHub client against the stand-in: lazy objects, GitHub's recommended headers, conditional
reads, and writes paced per installation (one at a time; Retry-After and x-ratelimit-reset)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from githubapi import TOKEN, Call, Fault, GitHubStandIn

REPO = "Codertocat/Hello-World"


@pytest.fixture
def github_api() -> Iterator[GitHubStandIn]:
    stand_in = GitHubStandIn()
    stand_in.start()
    stand_in.add_repo(REPO, {"filter.c": b"int x;\n"})
    yield stand_in
    stand_in.stop()


def settings(api: GitHubStandIn, tmp: Path, **extra: Any) -> Any:
    from workers.config import Settings

    return Settings(data_dir=tmp / "data", github_token=TOKEN, github_api_url=api.url,  # type: ignore[arg-type]
                    github_write_interval=0, github_backoff=0.01, **{"github_secondary_wait": 1} | extra)


def fresh_client(api: GitHubStandIn, tmp: Path, **extra: Any) -> Any:
    """A client of its own (clients are kept per process and API URL)."""
    from workers import github_client

    github_client._clients.clear()
    return github_client.client(settings(api, tmp, **extra))


def held(api: GitHubStandIn, tmp: Path) -> bool:
    """Whether the client's pacer holds requests back (after the rate-limited answer is read)."""
    from workers import github_client

    pacer = github_client.pacer(settings(api, tmp))
    return pacer is not None and pacer.wait_held(30)


def in_thread(work: Callable[[], Any]) -> threading.Thread:
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def test_lazy_objects_github_headers_and_conditional_reads(github_api: GitHubStandIn, tmp_path: Path) -> None:
    gh = fresh_client(github_api, tmp_path)
    repo = gh.get_repo(REPO)
    run = repo.create_check_run("wasmbot", "a" * 40, status="queued")
    repo.get_check_run(run.id).edit(status="in_progress")
    issue = repo.get_issue(2)
    comment = issue.create_comment("first")
    bodies = [[c.body for c in issue.get_comments()] for _ in range(3)]
    issue.get_comment(comment.id).edit("second")
    after_edit = [c.body for c in issue.get_comments()]
    issue.get_comment(comment.id).create_reaction("eyes")  # PyGithub asks for a preview media type

    calls = [(c.method, c.path, c.status) for c in github_api.requests]
    assert calls == [
        ("POST", f"/repos/{REPO}/check-runs", 201),
        ("PATCH", f"/repos/{REPO}/check-runs/{run.id}", 200),  # no GET of the repository or the run
        ("POST", f"/repos/{REPO}/issues/2/comments", 201),
        ("GET", f"/repos/{REPO}/issues/2/comments", 200),
        ("GET", f"/repos/{REPO}/issues/2/comments", 304),  # revalidated: not counted by GitHub
        ("GET", f"/repos/{REPO}/issues/2/comments", 304),
        ("PATCH", f"/repos/{REPO}/issues/comments/{comment.id}", 200),
        ("GET", f"/repos/{REPO}/issues/2/comments", 200),  # changed: the new body, never a stale one
        ("POST", f"/repos/{REPO}/issues/comments/{comment.id}/reactions", 201),
    ], calls
    assert bodies == [["first"]] * 3 and after_edit == ["second"]
    for call in github_api.requests:
        assert call.headers.get("Accept") == "application/vnd.github+json", (call.method, call.path)
        assert call.headers.get("X-GitHub-Api-Version") == "2022-11-28", (call.method, call.path)
    assert "If-None-Match" not in github_api.requests[3].headers and github_api.requests[4].headers["If-None-Match"]

    # Where existence is the question, the object is read.
    from github import UnknownObjectException
    with pytest.raises(UnknownObjectException):
        gh.get_repo("Codertocat/absent").complete()


def test_writes_of_an_installation_take_turns(github_api: GitHubStandIn, tmp_path: Path) -> None:
    gh = fresh_client(github_api, tmp_path)
    repo = gh.get_repo(REPO)
    run = repo.create_check_run("wasmbot", "a" * 40, status="queued")
    release = github_api.hold(r"/check-runs/\d+$")
    first = in_thread(lambda: repo.get_check_run(run.id).edit(status="in_progress"))
    github_api.wait_for(lambda a: any(c.method == "PATCH" for c in a.requests))
    second = in_thread(lambda: repo.get_issue(2).create_comment("while the edit is under way"))
    read = in_thread(lambda: repo.get_issue(2).get_comments().totalCount)  # reads do not wait for writes
    github_api.wait_for(lambda a: any(c.method == "GET" for c in a.requests), timeout=10)
    with pytest.raises(AssertionError, match="condition not met"):
        github_api.wait_for(lambda a: any(c.path.endswith("/comments") and c.method == "POST" for c in a.requests),
                            timeout=1)
    released_at = time.time()
    release()
    for thread in (first, second, read):
        thread.join(30)
    posted = next(c for c in github_api.requests if c.method == "POST" and c.path.endswith("/comments"))
    assert posted.at >= released_at


def arrivals(api: GitHubStandIn, method: str, suffix: str) -> list[Call]:
    return [c for c in api.requests if c.method == method and c.path.endswith(suffix)]


def test_retry_after_holds_back_every_request_of_the_installation(github_api: GitHubStandIn,
                                                                  tmp_path: Path) -> None:
    gh = fresh_client(github_api, tmp_path)
    repo = gh.get_repo(REPO)
    run = repo.create_check_run("wasmbot", "a" * 40, status="queued")
    github_api.fail("PATCH", r"/check-runs/\d+$", 429, times=1, **{"Retry-After": "2"})
    edit = in_thread(lambda: repo.get_check_run(run.id).edit(status="in_progress"))
    limited = github_api.wait_for(lambda a: [c for c in a.requests if c.status == 429])[0]
    assert held(github_api, tmp_path)
    repo.get_issue(2).create_comment("another write")  # waits out the same Retry-After
    edit.join(30)
    [comment] = arrivals(github_api, "POST", "/issues/2/comments")
    retried = arrivals(github_api, "PATCH", f"/check-runs/{run.id}")[-1]
    assert retried.status == 200 and retried.at - limited.at >= 1.9
    assert comment.at - limited.at >= 1.9


def test_a_spent_rate_limit_waits_for_its_reset(github_api: GitHubStandIn, tmp_path: Path) -> None:
    gh = fresh_client(github_api, tmp_path, github_secondary_wait=30)
    reset = int(time.time()) + 2
    spent = {"x-ratelimit-remaining": "0", "x-ratelimit-limit": "5000", "x-ratelimit-reset": str(reset)}
    github_api.faults.append(Fault("GET", re.compile(r"/pulls/2$"), 403, 1, spent,
                                   {"message": "API rate limit exceeded for installation ID 31."}))
    github_api.pulls[(REPO, 2)] = {"number": 2, "url": f"{github_api.url}/repos/{REPO}/pulls/2",
                                   "head": {"sha": "a" * 40}}
    pull = in_thread(lambda: gh.get_repo(REPO).get_pull(2).complete())
    github_api.wait_for(lambda a: [c for c in a.requests if c.status == 403])
    assert held(github_api, tmp_path)
    gh.get_repo(REPO).get_issue(2).create_comment("after the reset")
    pull.join(30)
    [comment] = arrivals(github_api, "POST", "/issues/2/comments")
    retried = arrivals(github_api, "GET", "/pulls/2")[-1]
    assert retried.status == 200 and retried.at >= reset - 0.01 and comment.at >= reset - 0.01
    assert retried.at < reset + 10  # the reset, not the 30 s of a secondary limit


def test_annotations_are_sent_once_even_when_an_edit_fails(github_api: GitHubStandIn, tmp_path: Path) -> None:
    """120 diagnostics: 50 a request; a batch that fails is sent by the next update, none twice."""
    from bot.github.reporter import Reporter
    from workers.jobs import Job, Stage, State
    from workers.store import SqliteStore

    store = SqliteStore(tmp_path / "jobs.db")
    job = Job(requester="github:octocat", origin=f"github:{REPO}#2", text="", source_root="",
              command={"name": "test", "source": "."},
              stages=[Stage(name="fetch", state=State.SUCCEEDED),
                      Stage(name="build", state=State.FAILED, error="compiler exited with status 1:\n  …"),
                      Stage(name="test", state=State.SKIPPED)],
              reports={"github": {"repo": REPO, "sha": "a" * 40, "installation": ""}})
    job.state = State.FAILED
    store.create(job)
    for n in range(120):
        store.log(job.id, "build", f"./filter.c:{n + 1}:5: warning: unused variable 'v{n}' [-Wunused-variable]")
    fresh_client(github_api, tmp_path, github_retries=1)
    reporter = Reporter(settings(github_api, tmp_path, github_retries=1), store)
    github_api.fail("PATCH", r"/check-runs/\d+$", 502, times=2)  # the second batch is lost, retried too
    with pytest.raises(Exception, match="502"):
        reporter.check_run(reporter.repo(job), store.get(job.id))  # type: ignore[arg-type]
    reporter.check_run(reporter.repo(job), store.get(job.id))  # type: ignore[arg-type]
    reporter.check_run(reporter.repo(job), store.get(job.id))  # nothing new: nothing sent
    [run] = github_api.check_runs.values()
    sent = [e["output"]["annotations"] for e in github_api.check_edits[run["id"]] if "annotations" in e["output"]]
    assert [len(b) for b in sent] == [50, 50, 20]
    assert sorted(n["start_line"] for b in sent for n in b) == list(range(1, 121))
    assert run["output"]["summary"].endswith("**Compiler diagnostics:** 120 warnings, each an annotation on its line")
    assert len(github_api.check_edits[run["id"]]) == 3 and store.get(job.id).reports["github"][  # type: ignore[union-attr]
        "annotations_sent"] == "120"
