"""The GitHub front end: signed webhooks posted to the running app with the real payloads in
tests/testdata/github/, against a stand-in of GitHub's REST API driven by PyGithub."""

from __future__ import annotations

import collections
import copy
import json
import re
import subprocess
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import ROOT, TESTDATA, Wasmbot, registry_host
from githubapi import TOKEN, WEBHOOK_SECRET, Call, GitHubStandIn, webhook_headers
from kubeserver import KubeServer

from bot.github.answering import COMMENT_WORK
from bot.github.render import MARKER
from bot.localservices import Service, free_port
from workers import artifacts
from workers.jobs import Job, State

PAYLOADS = TESTDATA / "github"
SECRET = WEBHOOK_SECRET
REPO = "Codertocat/Hello-World"
FILTER = {name: (ROOT / "tests" / "filters" / "c" / name).read_bytes() for name in ("filter.c", "wasm-tests.yaml")}
BROKEN = {"filter.c": FILTER["filter.c"] + b"\nint broken(void) { return undefined_thing; }\n",
          "wasm-tests.yaml": FILTER["wasm-tests.yaml"]}
LONG = "this warning is long on purpose, " * 16  # 528 characters: more than a cut message keeps
NOISY = {"filter.c": FILTER["filter.c"]
         + b"".join(f'#warning "check {n}: {LONG}"\n'.encode() for n in range(60))
         + b"int broken(void) { return undefined_thing; }\n",
         "wasm-tests.yaml": FILTER["wasm-tests.yaml"]}


def payload(path: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((PAYLOADS / path).read_text())
    return data


@dataclass
class GitHubBot:
    url: str
    api: GitHubStandIn
    bot: Wasmbot
    process: subprocess.Popen[bytes]

    def post(self, event: str, body: dict[str, Any] | bytes, *, delivery: str | None = None,
             secret: str = SECRET, signed: bool = True, timeout: float = 30) -> requests.Response:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = webhook_headers(event, raw, delivery=delivery or str(uuid.uuid4()),
                                  secret=secret if signed else None)
        return requests.post(f"{self.url}/github/webhook", data=raw, headers=headers, timeout=timeout)

    def comment(self, event: dict[str, Any], **post: Any) -> requests.Response:
        """Deliver an ``issue_comment`` and wait until wasmbot has answered every comment it took."""
        answer = self.post("issue_comment", event, **post)
        self.settle()
        return answer

    def settle(self) -> None:
        """Wait until no comment wasmbot took is left unanswered (its work is kept in the store)."""
        self.api.wait_for(lambda _: not self.bot.store.open_work(COMMENT_WORK), recheck=0.05)

    def jobs(self) -> list[Job]:
        return [j for j in self.bot.store.recent(100) if "github" in j.reports]


def start_githubbot(bot: Wasmbot, api: GitHubStandIn, tmp_path: Path, **env: str) -> GitHubBot:
    port = free_port()
    bot.env = bot.env | {  # the workers it starts reach GitHub too
        "GITHUB_WEBHOOK_SECRET": SECRET, "GITHUB_TOKEN": TOKEN, "GITHUB_API_URL": api.url,
        "WASMBOT_GITHUB_WRITE_INTERVAL": "0", "WASMBOT_GITHUB_BACKOFF": "0.05", "WASMBOT_GITHUB_SECONDARY_WAIT": "1",
        "WASMBOT_GITHUB_UPDATE_INTERVAL": "0.2", "WASMBOT_PUBLIC_URL": f"http://127.0.0.1:{port}"} | env
    return GitHubBot(f"http://127.0.0.1:{port}", api, bot, bot.serve(port, {}))


@pytest.fixture
def githubbot(wasmbot: Wasmbot, github_api: GitHubStandIn, tmp_path: Path) -> Iterator[GitHubBot]:
    bot = start_githubbot(wasmbot, github_api, tmp_path)
    yield bot
    bot.process.terminate()
    bot.process.wait(30)


def pull_request(api: GitHubStandIn, action: str, sha: str, *, fork: str | None = None,
                 association: str = "MEMBER") -> dict[str, Any]:
    event = payload(f"pull_request/{'opened' if action == 'opened' else action}.json")
    pr = event["pull_request"]
    pr["head"]["sha"], pr["author_association"] = sha, association
    pr["head"]["repo"] = copy.deepcopy(pr["base"]["repo"])
    if fork:
        pr["head"]["repo"]["full_name"] = fork
    event["action"] = action
    api.add_pull(event)
    return event


def open_pull_request(api: GitHubStandIn) -> dict[str, Any]:
    """REPO holding FILTER, with its pull request opened on a commit of it (the comment tests'
    start); the ``pull_request.opened`` delivery, not yet delivered."""
    api.add_repo(REPO, FILTER)
    return pull_request(api, "opened", api.add_commit(REPO, FILTER))


def comment_event(api: GitHubStandIn, body: str, association: str, login: str, *,
                  edited_from: str | None = None) -> dict[str, Any]:
    """An ``issue_comment`` delivery (the published payload) for a comment on pull request 2."""
    data = payload(f"issue_comment/{'edited' if edited_from is not None else 'created'}.json")
    data["issue"]["number"] = 2
    data["issue"]["pull_request"] = {"url": f"{api.url}/repos/{REPO}/pulls/2"}
    stored = api.add_comment(REPO, 2, body, login)
    data["comment"].update(body=body, author_association=association, id=stored["id"])
    data["comment"]["user"].update(login=login, type="User")
    data["sender"].update(login=login, type="User")
    if edited_from is not None:
        data["changes"] = {"body": {"from": edited_from}}
    return data


def check_runs_for(api: GitHubStandIn, sha: str) -> list[dict[str, Any]]:
    return [r for r in api.check_runs.values() if r["head_sha"] == sha]


def completed(api: GitHubStandIn, sha: str) -> dict[str, Any] | None:
    return next((r for r in check_runs_for(api, sha) if r.get("status") == "completed"), None)


def annotations_of(api: GitHubStandIn, run: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """The annotations each request (create or edit) added to a check run: GitHub appends them."""
    return [e["output"]["annotations"] for e in api.check_edits[run["id"]] if e.get("output", {}).get("annotations")]


# -- the endpoint ---------------------------------------------------------------------------------

@pytest.mark.parametrize("wasmbot", ["sqlite", "redis"], indirect=True)  # redis: claims on the event loop
def test_signatures_redeliveries_and_every_published_payload(githubbot: GitHubBot) -> None:
    githubbot.api.add_repo(REPO, FILTER)
    body = payload("ping/payload.json")
    assert githubbot.post("ping", body, signed=False).status_code == 401
    forged = githubbot.post("ping", body, secret="not-the-secret")
    assert forged.status_code == 401 and "does not match" in forged.json()["message"]
    no_event = requests.post(f"{githubbot.url}/github/webhook", data=b"{}", timeout=10)
    assert no_event.status_code == 400
    pong = githubbot.post("ping", body)
    assert pong.status_code == 200 and pong.json()["message"] == "pong"

    answers = {}
    for path in sorted(PAYLOADS.glob("*/*.json")):
        if path.parent.name == "schemas":
            continue
        answer = githubbot.post(path.parent.name, json.loads(path.read_text()))
        answers[f"{path.parent.name}/{path.name}"] = (answer.status_code, answer.json()["message"])
    assert all(status in (200, 202) for status, _ in answers.values()), answers
    assert answers["installation/created.json"] == (202, "installation.created is ignored")
    assert answers["pull_request/opened.json"] == (200, "handled")
    # The payloads' pull requests were built as trusted (OWNER, same repository): one job each head.
    shas = {j.reports["github"]["sha"] for j in githubbot.jobs()}
    assert "ec26c3e57ca3a959ca5aad62de7213c562f8c821" in shas

    # A redelivery (same X-GitHub-Delivery) never starts a second job.
    event = pull_request(githubbot.api, "synchronize", githubbot.api.add_commit(REPO, FILTER))
    before = len(githubbot.jobs())
    first = githubbot.post("pull_request", event, delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958")
    again = githubbot.post("pull_request", event, delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958")
    assert first.json()["message"] == "handled"
    assert again.status_code == 200 and "was handled already" in again.json()["message"]
    assert len(githubbot.jobs()) == before + 1


# -- pull requests ---------------------------------------------------------------------------------

@pytest.mark.parametrize("wasmbot", ["sqlite"], indirect=True)
def test_a_push_supersedes_a_run_and_one_comment_is_kept_up_to_date(githubbot: GitHubBot) -> None:
    api = githubbot.api
    api.add_repo(REPO, FILTER)
    first, second = api.add_commit(REPO, FILTER), api.add_commit(REPO, FILTER | {"README.md": b"two"})
    assert githubbot.post("pull_request", pull_request(api, "opened", first)).status_code == 200
    assert githubbot.post("pull_request", pull_request(api, "synchronize", second)).status_code == 200
    githubbot.bot.start_worker()
    cancelled = api.wait_for(lambda a: completed(a, first))
    assert cancelled["conclusion"] == "cancelled" and f"superseded by {second[:7]}" in cancelled["output"]["title"]
    passed = api.wait_for(lambda a: completed(a, second))
    assert passed["conclusion"] == "success", passed["output"]
    statuses = [e.get("status") for e in api.check_edits[passed["id"]]]
    assert statuses[0] == "queued" and "in_progress" in statuses and statuses[-1] == "completed"
    summary = passed["output"]["summary"]
    assert "| build | ✅ succeeded |" in summary and "| test | ✅ succeeded |" in summary
    assert "**Module size:**" in summary and "no build of master to compare with yet" in summary
    assert "add-header" in passed["output"]["text"]  # the ABI report, case by case

    # A compiler error: the run fails and the error is an annotation on the file and line.
    third = api.add_commit(REPO, BROKEN)
    githubbot.post("pull_request", pull_request(api, "synchronize", third))
    failed = api.wait_for(lambda a: completed(a, third))
    assert failed["conclusion"] == "failure" and failed["output"]["title"].startswith("build failed")
    [notes] = annotations_of(api, failed)
    line = FILTER["filter.c"].count(b"\n") + 2
    assert {"path": "filter.c", "start_line": line, "annotation_level": "failure"}.items() <= notes[0].items()
    assert "undefined_thing" in notes[0]["message"]

    def comment_shows_failure(a: GitHubStandIn) -> dict[str, Any] | None:
        found = a.comments_on(REPO, 2)
        return found[0] if len(found) == 1 and f"**❌ failed** for {third[:7]}" in found[0]["body"] else None
    comment = api.wait_for(comment_shows_failure)
    assert len(api.comments_on(REPO, 2)) == 1 and comment["_edits"] >= 3
    assert "Earlier runs" in comment["body"] and second[:7] in comment["body"] and first[:7] in comment["body"]


def endpoint(call: Call, sha: str) -> str:
    """``GET /repos/{owner}/{repo}/check-runs/{id}``: a call as its endpoint, for counting."""
    path = re.sub(r"/\d+(?=/|$)", "/{id}", call.path.replace(REPO, "{owner}/{repo}").replace(sha, "{sha}"))
    return f"{call.method} {path}"


# What one pull request build (opened → checkout, build, test → check run completed and the
# comment updated) may cost: docs/github.md states the same budget.
REQUEST_BUDGET = 14  # measured: 11 (1 check run created, 4 edits, 1 comment read, created and edited 3 times, 1 tarball)
REPO_READS = 0  # GET /repos/{owner}/{repo}: the client is lazy


@pytest.mark.parametrize("wasmbot", ["sqlite"], indirect=True)
def test_one_build_annotates_every_diagnostic_within_a_request_budget(githubbot: GitHubBot) -> None:
    api = githubbot.api
    api.add_repo(REPO, FILTER)
    sha = api.add_commit(REPO, NOISY)
    githubbot.bot.start_worker()
    assert githubbot.post("pull_request", pull_request(api, "opened", sha)).status_code == 200
    failed = api.wait_for(lambda a: completed(a, sha))
    api.wait_for(lambda a: any(f"**❌ failed** for {sha[:7]}" in c["body"] for c in a.comments_on(REPO, 2)))
    batches = api.wait_for(lambda a: (b := annotations_of(a, failed)) and sum(map(len, b)) >= 61 and b)
    settled = len(api.requests)
    with pytest.raises(AssertionError, match="condition not met"):  # the reporter is done
        api.wait_for(lambda a: len(a.requests) > settled, timeout=3)

    # Every diagnostic clang reported is an annotation with its whole message, 50 a request.
    assert [len(b) for b in batches] == [50, 11]
    notes = [n for b in batches for n in b]
    warnings = [n for n in notes if n["annotation_level"] == "warning"]
    [error] = [n for n in notes if n["annotation_level"] == "failure"]
    assert len(warnings) == 60 and all(LONG.strip() in n["message"] for n in warnings)
    assert {n["path"] for n in notes} == {"filter.c"}
    first = FILTER["filter.c"].count(b"\n") + 1
    assert sorted(n["start_line"] for n in warnings) == list(range(first, first + 60))
    assert "undefined_thing" in error["message"] and error["start_line"] == first + 60
    assert "1 error and 60 warnings, each an annotation on its line" in failed["output"]["summary"]
    title = failed["output"]["title"]
    assert title == "build failed: compiler exited with status 1 (1 error and 60 warnings)", title

    # The requests that build cost, per endpoint: within the budget, with GitHub's headers.
    api_calls = [c for c in api.requests if not c.path.startswith("/_archive/")]
    counts = collections.Counter(endpoint(c, sha) for c in api_calls)
    assert counts["GET /repos/{owner}/{repo}"] == REPO_READS, counts
    assert counts["GET /repos/{owner}/{repo}/check-runs/{id}"] == 0, counts  # edits are one PATCH each
    assert len(api_calls) <= REQUEST_BUDGET, counts
    for call in api_calls:
        assert call.headers.get("Accept") == "application/vnd.github+json", (call.method, call.path)
        assert call.headers.get("X-GitHub-Api-Version") == "2022-11-28", (call.method, call.path)
    print("requests for one pull request build:", dict(counts))


@pytest.mark.parametrize("wasmbot", ["sqlite"], indirect=True)
def test_a_fork_waits_for_ok_to_test_from_a_member(githubbot: GitHubBot) -> None:
    api = githubbot.api
    api.add_repo(REPO, FILTER)
    sha = api.add_commit(REPO, FILTER)
    event = pull_request(api, "opened", sha, fork="stranger/Hello-World", association="FIRST_TIME_CONTRIBUTOR")
    release = api.hold(r"/issues/2/comments$")  # GitHub is slow (or rate-limits): the webhook does not wait
    assert githubbot.post("pull_request", event).status_code == 200
    release()
    held = api.wait_for(lambda a: a.comments_on(REPO, 2))
    assert f"{sha[:7]} is not built: it comes from a fork (stranger/Hello-World)" in held[0]["body"]
    assert githubbot.jobs() == []

    def comment(body: str, association: str, login: str) -> dict[str, Any]:
        return comment_event(api, body, association, login)

    stranger = comment("Please build this:\n/wasm ok-to-test", "CONTRIBUTOR", "stranger")
    assert githubbot.comment(stranger).status_code == 200
    assert githubbot.jobs() == []
    refused = [c for c in api.comments_on(REPO, 2) if "you may not ok-to-test" in c["body"]]
    assert len(refused) == 1 and refused[0]["body"].startswith(
        "> /wasm ok-to-test\n\n@stranger you may not ok-to-test: that needs a GitHub author association of "
        "OWNER or MEMBER or COLLABORATOR (GitHub lists you as CONTRIBUTOR)"), refused
    quoted = comment("```\n/wasm ok-to-test\n```", "MEMBER", "octocat")  # a command in a code block is text
    githubbot.comment(quoted)
    assert githubbot.jobs() == []

    member = comment("/wasm ok-to-test", "MEMBER", "octocat")
    assert githubbot.comment(member).status_code == 200
    [job] = githubbot.jobs()
    assert job.reports["github"]["sha"] == sha and job.requester == "github:octocat"
    assert (member["comment"]["id"], "eyes") in api.reactions


@pytest.mark.parametrize("wasmbot", ["sqlite"], indirect=True)
def test_a_push_supersedes_a_running_build_and_re_runs_are_on_request(githubbot: GitHubBot) -> None:
    api = githubbot.api
    api.add_repo(REPO, FILTER)
    first, second = api.add_commit(REPO, FILTER), api.add_commit(REPO, FILTER | {"NOTES": b"2"})
    release_first = api.hold(f"/_archive/.*/{first}")  # the first run stays in its checkout
    githubbot.bot.start_worker()
    githubbot.post("pull_request", pull_request(api, "opened", first))
    running = api.wait_for(lambda a: [j for j in githubbot.jobs() if j.state is State.RUNNING])[0]
    assert running.reports["github"]["sha"] == first and running.stage("fetch").state is State.RUNNING
    githubbot.post("pull_request", pull_request(api, "synchronize", second))
    assert githubbot.bot.store.get(running.id).state is State.CANCELLED  # type: ignore[union-attr]
    release_first()
    cancelled = api.wait_for(lambda a: completed(a, first))
    assert cancelled["conclusion"] == "cancelled" and f"superseded by {second[:7]}" in cancelled["output"]["title"]
    assert githubbot.bot.wait(running.id).stage("build").state is State.CANCELLED  # nothing ran after it
    assert api.wait_for(lambda a: completed(a, second))["conclusion"] == "success"

    # "Re-run" on the current commit's check run runs it again; on the superseded one, nothing.
    runs_before = len(githubbot.jobs())
    rerun = payload("check_run/rerequested.json")
    rerun["check_run"]["external_id"] = running.id
    githubbot.post("check_run", rerun)
    assert len(githubbot.jobs()) == runs_before
    newest = next(j for j in githubbot.jobs() if j.reports["github"]["sha"] == second)
    rerun["check_run"]["external_id"] = newest.id
    githubbot.post("check_run", rerun)
    assert len(githubbot.jobs()) == runs_before + 1
    assert api.wait_for(lambda a: len([r for r in check_runs_for(a, second) if r.get("status") == "completed"]) == 2)

    # An edit that adds a command runs it; an edit that keeps the same commands runs nothing.
    githubbot.comment(comment_event(api, "looks good", "MEMBER", "octocat", edited_from="looks good, typo"))
    assert len(githubbot.jobs()) == runs_before + 1
    githubbot.bot.wait(githubbot.jobs()[0].id)
    githubbot.comment(comment_event(api, "looks good\n/wasm retest", "MEMBER", "octocat",
                                    edited_from="looks good"))
    assert len(githubbot.jobs()) == runs_before + 2
    githubbot.comment(comment_event(api, "looks good!\n/wasm retest", "MEMBER", "octocat",
                                    edited_from="looks good\n/wasm retest"))
    assert len(githubbot.jobs()) == runs_before + 2


@pytest.mark.parametrize("wasmbot", ["sqlite"], indirect=True)
def test_deploy_and_approval_from_pull_request_comments(wasmbot: Wasmbot, github_api: GitHubStandIn,
                                                        registry: Service, kube: KubeServer, tmp_path: Path) -> None:
    environments = {"prod": {"kubeconfig": str(kube.kubeconfig(tmp_path / "kubeconfig")), "namespace": "shop",
                             "selector": {"app": "checkout"}, "protected": True}}
    rules = {"deploy:prod": ["user:github:alice"], "approve:prod": ["user:github:lead", "user:github:alice"]}
    bot = start_githubbot(wasmbot, github_api, tmp_path, WASMBOT_DEFAULT_REGISTRY=registry_host(registry),
                          WASMBOT_ENVIRONMENTS=json.dumps(environments), WASMBOT_PERMISSIONS=json.dumps(rules))
    api = bot.api
    api.add_repo(REPO, FILTER)
    sha = api.add_commit(REPO, FILTER)
    bot.bot.start_worker()

    def said(login: str, body: str) -> str:
        before = len(api.comments_on(REPO, 2))
        bot.comment(comment_event(api, body, "MEMBER", login))
        return next(c["body"] for c in api.comments_on(REPO, 2)[before:] if c["body"].startswith(f"> {body}"))

    assert "no pushed image to deploy yet" in said("alice", "/wasm deploy prod")
    bot.post("pull_request", pull_request(api, "opened", sha))
    built = api.wait_for(lambda a: completed(a, sha))
    assert built["conclusion"] == "success", built["output"]
    [pushed] = bot.jobs()
    assert pushed.artifacts["image"] == f"{registry_host(registry)}/codertocat/hello-world:pr-2"

    assert "you may not deploy:prod: that needs @alice" in said("bob", "/wasm deploy prod")
    asked = said("alice", "/wasm deploy prod")
    job_id = re.search(r"job `([0-9a-f]{12})` waits for an approval", asked)[1]  # type: ignore[index]
    assert "```diff" in asked and re.search(r"^\+ *url: oci://", asked, re.M), asked
    assert "you asked for this change" in said("alice", f"/wasm approve {job_id}")
    assert "you may not approve:prod" in said("bob", f"/wasm approve {job_id}")
    assert f"job `{job_id}` approved: it runs now" in said("lead", f"/wasm approve {job_id}")
    job = bot.bot.wait(job_id)
    assert job.state is State.SUCCEEDED and job.approval["approved_by"] == "github:lead"
    [plugin] = [o for (kind, _, _), o in kube.objects.items() if kind == "wasmplugins"]
    assert plugin["spec"]["sha256"] == pushed.artifacts["digest"].removeprefix("sha256:")
    bot.process.terminate()
    bot.process.wait(30)


# -- comment commands ------------------------------------------------------------------------------

GITHUB_TIMEOUT = 10  # seconds GitHub waits for a webhook's answer before it counts a failed delivery
FIVE = ["/wasm help", "/wasm help build", "/wasm jobs", "/wasm status", "/wasm frobnicate now"]


def replies(api: GitHubStandIn) -> list[str]:
    """wasmbot's answers on pull request 2 (not its status comment)."""
    return [c["body"] for c in api.comments_on(REPO, 2)
            if c["user"]["type"] == "Bot" and not c["body"].startswith(MARKER)]


@pytest.mark.parametrize("wasmbot", ["sqlite"], indirect=True)
def test_comment_commands_are_acknowledged_before_any_github_call_and_answered_in_one_reply(
        githubbot: GitHubBot) -> None:
    api = githubbot.api
    api.add_repo(REPO, FILTER)
    pull_request(api, "opened", api.add_commit(REPO, FILTER))  # pull request 2 exists; not delivered
    release = api.hold(r"^/repos/")  # every GitHub call waits, reads and writes alike
    event = comment_event(api, "Some questions:\n" + "\n".join(FIVE), "MEMBER", "octocat")
    acked = githubbot.post("issue_comment", event, timeout=GITHUB_TIMEOUT)
    assert acked.status_code == 200 and acked.json()["message"] == "handled", acked.text
    assert replies(api) == [] and api.reactions == []
    release()
    githubbot.settle()
    [reply] = replies(api)
    assert [line for line in reply.splitlines() if line.startswith("> ")] == [f"> {line}" for line in FIVE]
    assert reply.startswith("> /wasm help\n\n@octocat wasmbot commands in pull requests:")
    assert reply.count("@octocat") == 1 and "usage: /wasm build SOURCE" in reply
    assert "unknown command 'frobnicate'" in reply
    assert api.reactions == [(event["comment"]["id"], "eyes")]


@pytest.mark.parametrize("wasmbot", ["sqlite"], indirect=True)
def test_a_comment_delivered_twice_is_answered_once_and_an_edit_answers_what_it_added(
        githubbot: GitHubBot) -> None:
    api = githubbot.api
    open_pull_request(api)
    release = api.hold(r"^/repos/")  # so the copies arrive while the first is still being answered
    event = comment_event(api, "/wasm help build", "MEMBER", "octocat")
    delivery = str(uuid.uuid4())
    assert githubbot.post("issue_comment", event, delivery=delivery).json()["message"] == "handled"
    again = githubbot.post("issue_comment", event, delivery=delivery)  # GitHub's "Redeliver"
    assert again.status_code == 200 and "was handled already" in again.json()["message"]
    assert githubbot.post("issue_comment", event).status_code == 200  # the same comment, another delivery id
    release()
    githubbot.settle()
    assert len(replies(api)) == 1

    # Editing the comment (same id, newer updated_at) to add a command answers that command alone.
    edited = comment_event(api, "/wasm help build\n/wasm help jobs", "MEMBER", "octocat",
                           edited_from="/wasm help build")
    edited["comment"].update(id=event["comment"]["id"], updated_at="2031-01-01T00:00:00Z")
    githubbot.comment(edited)
    githubbot.comment(edited)  # delivered again under another id: still answered once
    answers = replies(api)
    assert len(answers) == 2 and answers[1].startswith("> /wasm help jobs\n\n@octocat usage: /wasm jobs")
    assert "/wasm help build" not in answers[1]


@pytest.mark.parametrize("wasmbot", ["sqlite"], indirect=True)
def test_a_comment_taken_before_a_crash_is_answered_after_the_restart(githubbot: GitHubBot) -> None:
    api = githubbot.api
    open_pull_request(api)
    release = api.hold(r"^/repos/")
    event = comment_event(api, "/wasm help build\n/wasm help jobs", "MEMBER", "octocat")
    assert githubbot.post("issue_comment", event).status_code == 200
    api.wait_for(lambda a: any(path.startswith(f"/repos/{REPO}") for _, path in a.calls))  # at work
    githubbot.process.kill()  # between the acknowledgement and the reply
    githubbot.process.wait(30)
    release()
    githubbot.process = githubbot.bot.serve(int(githubbot.url.rpartition(":")[2]), {})
    githubbot.settle()
    [reply] = replies(api)
    assert "> /wasm help build\n\n@octocat usage: /wasm build" in reply and "> /wasm help jobs" in reply


@pytest.mark.parametrize("wasmbot", ["sqlite"], indirect=True)
def test_a_server_started_beside_leaves_a_comment_to_the_server_answering_it(githubbot: GitHubBot) -> None:
    api = githubbot.api
    open_pull_request(api)
    release = api.hold(r"^/repos/")
    assert githubbot.post("issue_comment", comment_event(api, "/wasm help build", "MEMBER", "octocat")).ok
    api.wait_for(lambda a: any(path.startswith(f"/repos/{REPO}") for _, path in a.calls))  # at work
    beside = githubbot.bot.serve(free_port(), {})  # a rolling update: the new server shares the store
    release()
    githubbot.settle()
    beside.terminate()
    assert beside.wait(30) == 0
    assert len(replies(api)) == 1


@pytest.mark.parametrize("wasmbot", ["sqlite"], indirect=True)
def test_a_secondary_rate_limit_on_the_reply_is_waited_out_and_the_reply_lands_once(
        githubbot: GitHubBot) -> None:
    api = githubbot.api
    open_pull_request(api)
    api.fail("POST", r"/issues/2/comments$", 403, times=1, **{"Retry-After": "1"})
    assert githubbot.comment(comment_event(api, "/wasm help", "MEMBER", "octocat")).status_code == 200
    assert len(replies(api)) == 1
    posts = [c for c in api.calls if c == ("POST", f"/repos/{REPO}/issues/2/comments")]
    assert len(posts) == 2 and api.faults[0].times == 0  # refused once, then sent again


def test_replies_and_the_status_comment_stay_under_githubs_size_limit() -> None:
    from bot.github import render
    from bot.github.answering import reply

    listing = "```\n" + "job-0123456789 succeeded\n" * 5000 + "```"
    body = reply("octocat", [("/wasm jobs", listing), ("/wasm help build", "usage: /wasm build SOURCE")])
    assert len(body) < 65536 and render.TRUNCATED in body
    assert body.count("```") % 2 == 0  # the code block that was cut is closed
    assert body.endswith("> /wasm help build\n\nusage: /wasm build SOURCE")  # every command keeps its answer
    assert reply("octocat", [("/wasm help", "short")]) == "> /wasm help\n\n@octocat short"

    job = Job(requester="github:octocat", origin=f"github:{REPO}#2", command={"name": "build", "source": "."},
              text="/wasm retest", source_root="", stages=[], reports={"github": {"sha": "a" * 40}})
    status = render.pr_comment([job], held="x" * 100_000)
    assert len(status) < 65536 and status.startswith(render.MARKER) and render.TRUNCATED in status


# -- stages against the stand-in -------------------------------------------------------------------

def stage_settings(api: GitHubStandIn, tmp: Path, **extra: Any) -> Any:
    from workers.config import Settings

    return Settings(data_dir=tmp / "data", github_token=TOKEN, github_api_url=api.url,  # type: ignore[arg-type]
                    github_write_interval=0, github_backoff=0.01, github_secondary_wait=1, **extra)


def test_github_5xx_and_rate_limits_are_retried_then_reported_clearly(github_api: GitHubStandIn,
                                                                      tmp_path: Path) -> None:
    from workers.jobs import Stage
    from workers.stages import StageContext, StageError
    from workers.stages.github import fetch

    sha = github_api.add_repo(REPO, FILTER)
    settings = stage_settings(github_api, tmp_path, github_retries=3)

    def ctx(name: str) -> StageContext:
        job = Job(requester="t", origin="t", command={"name": "test", "source": "."}, text="",
                  source_root=str(tmp_path / name), stages=[Stage(name="fetch")],
                  reports={"github": {"repo": REPO, "sha": sha, "installation": ""}})
        return StageContext(job=job, settings=settings, workdir=tmp_path, log=lambda _: None)

    github_api.fail("GET", "/tarball/", 502, times=2)
    github_api.fail("GET", "/tarball/", 403, times=1, **{"Retry-After": "1"})  # a secondary rate limit
    first = ctx("a")
    # the build is routed by its language; the checkout travels to the build's worker as an archive
    assert fetch(first) == {"commit": sha, "lang": "c", "checkout": f"store:{first.job.id}/source.tar.gz"}
    assert (tmp_path / "a" / "filter.c").read_bytes() == FILTER["filter.c"]
    github_api.fail("GET", "/tarball/", 503, times=10)
    with pytest.raises(StageError, match=rf"cannot download {REPO}@{sha[:12]}: GitHub answered 503"):
        fetch(ctx("b"))


def test_init_creates_a_repository_with_the_scaffold_as_its_first_commit(github_api: GitHubStandIn,
                                                                          tmp_path: Path) -> None:
    from workers.jobs import Stage
    from workers.scaffold import render
    from workers.stages import StageContext, StageError
    from workers.stages.github import create_repository

    github_api.add_repo("acme/taken", {"README.md": b"x"})
    settings = stage_settings(github_api, tmp_path, github_repo_owner="acme")
    files = render("add-header", "rust", "istio")
    for name, content in files.items():
        (tmp_path / "src" / "add-header" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "src" / "add-header" / name).write_bytes(content)

    def ctx(name: str) -> StageContext:
        job = Job(requester="t", origin="t", text="", source_root=str(tmp_path / "src"), stages=[Stage(name="repository")],
                  command={"name": "init", "filter": name, "lang": "rust", "source": "add-header"})
        return StageContext(job=job, settings=settings, workdir=tmp_path, log=lambda _: None)

    with pytest.raises(StageError, match="acme/taken already exists on GitHub: choose another NAME"):
        create_repository(ctx("taken"))
    result = create_repository(ctx("add-header"))
    assert result["repository_url"] == "https://github.example/acme/add-header"
    head = github_api.refs["acme/add-header"]["heads/main"]
    assert head == result["repository_commit"] and github_api.objects[head]["parents"] == []
    assert github_api.files["acme/add-header"][head] == files  # exactly the template, nothing else
    assert github_api.topics["acme/add-header"] == ["envoy-wasm", "proxy-wasm", "rust"]


def test_app_installation_tokens_are_minted_once_and_reused(github_api: GitHubStandIn, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from workers.config import Settings
    from workers.github_client import client, installation_for

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    github_api.app_id, github_api.installations = 4242, {"Codertocat": 31}
    github_api.app_public_key = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    github_api.add_repo(REPO, FILTER)
    settings = Settings(data_dir=tmp_path, github_app_id=4242, github_app_private_key=pem,  # type: ignore[arg-type]
                        github_api_url=github_api.url, github_write_interval=0)
    installation = installation_for(settings, REPO, None)  # a release payload carries no installation
    assert installation == 31
    for _ in range(3):
        assert client(settings, installation).get_repo(REPO).default_branch == "main"
    assert github_api.tokens_minted == 1


@pytest.mark.parametrize("wasmbot", ["sqlite"], indirect=True)
def test_a_published_release_is_pushed_attached_and_announced(wasmbot: Wasmbot, github_api: GitHubStandIn,
                                                              registry: Service, tmp_path: Path) -> None:
    from slackapi import BOT_TOKEN, SIGNING_SECRET, SlackStandIn

    slack = SlackStandIn()
    slack.start()
    try:
        bot = start_githubbot(wasmbot, github_api, tmp_path, SLACK_SIGNING_SECRET=SIGNING_SECRET,
                              SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_API_URL=slack.api_url,
                              WASMBOT_DEFAULT_REGISTRY=registry_host(registry))
        github_api.add_repo(REPO, FILTER)
        event = payload("release/published.json")
        github_api.add_release(REPO, event["release"])
        assert bot.post("release", event).status_code == 200
        bot.bot.start_worker()
        posted = slack.wait_for(lambda s: s.called("chat.postMessage"))
        [job] = bot.jobs()
        job = bot.bot.wait(job.id)
        assert job.state is State.SUCCEEDED, [s.error for s in job.stages]
        image = f"{registry_host(registry)}/codertocat/hello-world:0.0.1"
        assert job.artifacts["image"] == image
        announced = posted[0].args
        assert announced["channel"] == "#wasm" and job.artifacts["digest"] in announced["text"]
        [asset] = github_api.releases[event["release"]["id"]]["assets"]
        module = artifacts.in_store(bot.bot.store, job.stage("build").result["module"])
        assert asset["name"] == "Hello-World-0.0.1.wasm" and github_api.assets[asset["id"]]["_data"] == module
        assert job.artifacts["release_asset"] == asset["browser_download_url"]
        assert ("GET", f"/repos/{REPO}") not in github_api.calls  # lazy: 11 such reads before
        bot.process.terminate()
        bot.process.wait(30)
    finally:
        slack.stop()


def _reads_as(view: Any, expected: Any, where: str = "") -> None:
    """``view`` answers every read a handler makes (``[]``, ``get``, ``in``, ``len``, iteration)
    as ``expected``, the same JSON loaded by json.loads, does."""
    if isinstance(expected, dict):
        assert isinstance(view, Mapping) and len(view) == len(expected) and list(view) == list(expected), where
        assert view.get("not a key") is None and all(key in view for key in expected), where
        for key, value in expected.items():
            _reads_as(view[key], value, f"{where}.{key}")
            _reads_as(view.get(key), value, f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(view, Sequence) and len(view) == len(expected), where
        for n, (item, value) in enumerate(zip(view, expected, strict=True)):
            _reads_as(item, value, f"{where}[{n}]")
    else:
        assert type(view) is type(expected) and view == expected, where


def test_a_delivery_reads_as_json_loads_reads_it() -> None:
    """A delivery is read lazily (bot/github/payload.py): every published payload answers every
    read as json.loads's dict does and turns plain for storage; what simdjson refuses is
    orjson's, then json.loads's, to accept or refuse."""
    from bot.github.payload import parse, plain

    published = sorted(p for p in PAYLOADS.glob("*/*.json"))
    assert len(published) >= 20
    for path in published:
        raw = path.read_bytes()
        view = parse(raw)
        _reads_as(view, json.loads(raw), path.name)
        assert type(plain(view)) is dict and plain(view) == json.loads(raw)
    # A view kept past its delivery (a handler's background work) reads its own body while later
    # bodies are read, each right too.
    first, second = (json.dumps({"comment": {"body": text, "n": [n]}}).encode() for n, text in enumerate("ab"))
    kept = parse(first)["comment"]
    later = [plain(parse(body)) for body in (second, first, second)]
    assert kept["body"] == "a" and plain(kept) == {"body": "a", "n": [0]}
    assert later == [json.loads(second), json.loads(first), json.loads(second)]
    beyond_simdjson = b'{"big": 123456789012345678901234567890, "nan": NaN, "s": "\\ud800", "f": 1e400}'
    assert repr(plain(parse(beyond_simdjson))) == repr(json.loads(beyond_simdjson))
    deep = b"[" * 100_000 + b"]" * 100_000  # orjson 3.8 crashed the process here
    with pytest.raises(RecursionError):
        parse(deep)
    with pytest.raises(ValueError):
        parse(b"{not json")
