"""The API contract check itself: the vendored webhook payloads keep to GitHub's schemas, and a
call that breaks the published GitHub or Slack spec is caught, named with its schema path.

The deliberate violations made here are taken off the ledger (``taken``) once asserted, so that
the autouse ``api_contract`` fixture (tests/conftest.py) fails only on calls nobody expected.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import apicontract
import githubcontract
import pytest
import requests
import webhookcontract
from conftest import ROOT, TESTDATA
from githubapi import TOKEN, GitHubStandIn, webhook_headers
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slackapi import BOT_TOKEN, SlackStandIn

FIXTURES = sorted(p for p in (TESTDATA / "github").glob("*/*.json") if p.parent.name != "schemas")
CHECK_RUN_PATCH = "#/paths/~1repos~1{owner}~1{repo}~1check-runs~1{check_run_id}/patch/requestBody"


def taken(before: int) -> list[str]:
    """The violations recorded since ``before``, removed from the ledger."""
    found = apicontract.violations[before:]
    del apicontract.violations[before:]
    return found


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_vendored_webhook_payload_keeps_to_the_octokit_schema(path: Path) -> None:
    assert webhookcontract.check(path.parent.name, json.loads(path.read_text())) == []


def test_a_wrong_webhook_payload_is_named_with_its_schema_path() -> None:
    body = json.loads((TESTDATA / "github" / "pull_request" / "opened.json").read_text())
    body["number"] = "1"
    del body["repository"]
    problems = webhookcontract.check("pull_request", body)
    assert any("payload['number'] = '1'" in p and "is not of type 'integer'" in p
               and "#/definitions/pull_request$opened" in p for p in problems), problems
    assert any("'repository' is a required property" in p for p in problems), problems
    assert webhookcontract.check("pull_request", {"action": "teleported"}) == [
        f"no schema for pull_request with action 'teleported' (#/definitions/pull_request$teleported "
        f"in @octokit/webhooks-schemas {webhookcontract.version()})"]

    before = len(apicontract.violations)
    webhook_headers("pull_request", json.dumps(body).encode(), delivery="d-wrong")
    assert any(v.startswith("webhook delivery pull_request d-wrong: payload['number']") for v in taken(before))


def test_wrong_github_calls_are_caught_with_the_call_and_the_schema_path(github_api: GitHubStandIn) -> None:
    auth = {"Authorization": f"token {TOKEN}"}
    github_api.add_repo("o/r", {"README.md": b"hi"})
    before = len(apicontract.violations)
    requests.get(f"{github_api.url}/repos/o/r/no-such-thing", headers=auth, timeout=10)
    requests.patch(f"{github_api.url}/repos/o/r/check-runs/5", json={"status": 7}, headers=auth, timeout=10)
    requests.post(f"{github_api.url}/repos/o/r/check-runs", json={"name": "build"}, headers=auth, timeout=10)
    requests.get(f"{github_api.url}/repos/o/r/check-runs/five?colour=red", headers=auth, timeout=10)
    found = taken(before)
    assert len(found) == 5, found  # one line a problem: the last call has two
    assert found[0] == ("GitHub GET /repos/o/r/no-such-thing: no operation GET /repos/o/r/no-such-thing on "
                        "https://api.github.com in @octokit/openapi " + githubcontract.spec().version + " (#/paths)")
    assert found[1].startswith("GitHub PATCH /repos/o/r/check-runs/5: body['status'] = 7: 7 is not of type 'string' "
                               f"(schema {CHECK_RUN_PATCH}/content/application~1json/schema/properties/status/type)")
    assert found[2] == ("GitHub POST /repos/o/r/check-runs: body = {'name': 'build'}: 'head_sha' is a required "
                        "property (schema #/paths/~1repos~1{owner}~1{repo}~1check-runs/post/requestBody/content/"
                        "application~1json/schema/required)")
    assert found[3].startswith("GitHub GET /repos/o/r/check-runs/five?colour=red: unknown query parameter 'colour'")
    assert found[4] == ("GitHub GET /repos/o/r/check-runs/five?colour=red: path parameter 'check_run_id' = 'five': "
                        "'five' is not of type 'integer' (schema #/components/parameters/check-run-id/schema/type)")

    # What the spec allows passes: a multi-segment ref, the upload host, the archive redirect.
    requests.patch(f"{github_api.url}/repos/o/r/check-runs/5", headers=auth, timeout=10,
                   json={"status": "completed", "conclusion": "success", "output": {"title": "t", "summary": "s"}})
    requests.get(f"{github_api.url}/repos/o/r/git/ref/heads/main", headers=auth, timeout=10)
    requests.get(f"{github_api.url}/repos/o/r/tarball/main", headers=auth, timeout=10)
    requests.post(f"{github_api.url}/_uploads/repos/o/r/releases/1/assets?name=a.tar", data=b"x", headers=auth | {
        "Content-Type": "application/wasm"}, timeout=10)  # ANY_MEDIA_TYPE
    assert taken(before) == []


def test_wrong_slack_calls_are_caught_with_the_call_and_the_schema_path(slack_api: SlackStandIn) -> None:
    client = WebClient(token=BOT_TOKEN, base_url=slack_api.api_url)
    slack_api.groups["S1"] = ["W111"]
    before = len(apicontract.violations)
    for method, body in (("chat.frobnicate", {}), ("chat.postMessage", {"text": "no channel"}),
                         ("chat.postMessage", {"channel": 7, "text": "wrong type"})):
        with pytest.raises(SlackApiError):  # the stand-in answers them too, as Slack would not
            client.api_call(method, json=body)
    client.usergroups_users_list(usergroup="S1", include_disabled="yes")  # a query string or a form
    found = [v.removeprefix("Slack GET ").removeprefix("Slack POST ") for v in taken(before)]
    assert found == [
        "/api/chat.frobnicate: unknown Web API method 'chat.frobnicate' (no #/paths/~1chat.frobnicate "
        "in slack-api-specs bc08db4 web-api/slack_web_openapi_v2_without_examples.json)",
        "/api/chat.postMessage: missing required argument 'channel' "
        "(#/paths/~1chat.postMessage/post/parameters/4)",
        "/api/chat.postMessage: argument 'channel' = 7: 7 is not of type 'string' "
        "(schema #/paths/~1chat.postMessage/post/parameters/4/type)",
        "/api/usergroups.users.list: argument 'include_disabled' = 'yes': 'yes' is not of type 'boolean' "
        "(schema #/paths/~1usergroups.users.list/get/parameters/1/type)",
    ], found

    # Slack's documented deviations pass (bearer token, JSON blocks, apps.connections.open), and
    # a response_url post is not a Web API call.
    client.chat_postMessage(channel="C1", text="hi", blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}])
    WebClient(token=slack_api.app_token, base_url=slack_api.api_url).apps_connections_open(app_token=slack_api.app_token)
    requests.post(slack_api.response_url("x"), json={"text": "answer"}, timeout=10)
    assert taken(before) == []
    assert apicontract.checked["slack"] >= 6


def test_a_spec_that_was_not_fetched_fails_loudly(github_api: GitHubStandIn, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(apicontract.SpecMissing, match=r"@octokit/openapi@\S+ is not in .*api-specs.sh"):
        apicontract.pinned("@octokit/openapi")

    githubcontract.spec.cache_clear()
    before = len(apicontract.violations)
    try:
        requests.get(f"{github_api.url}/user", headers={"Authorization": f"token {TOKEN}"}, timeout=10)
    finally:
        githubcontract.spec.cache_clear()  # loaded again from the real cache by the next call
    found = taken(before)
    assert len(found) == 1 and found[0].startswith("github GET /user: not checked: SpecMissing: @octokit/openapi@"), found


def test_a_test_that_makes_a_wrong_call_fails_the_run(source_dir: Path) -> None:
    """The autouse fixture turns a recorded violation into a failed run, naming the call."""
    (source_dir / "test_wrong_call.py").write_text(textwrap.dedent("""
        from slack_sdk import WebClient
        from slackapi import BOT_TOKEN, SlackStandIn

        def test_posts_a_wrong_type() -> None:
            api = SlackStandIn()
            api.start()
            try:
                WebClient(token=BOT_TOKEN, base_url=api.api_url).api_call(
                    "chat.postMessage", data={"channel": "C1", "text": "hi", "unfurl_links": "maybe"})
            finally:
                api.stop()
        """))
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(source_dir)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "1 passed, 1 error" in run.stdout and "ERROR at teardown of test_posts_a_wrong_type" in run.stdout
    assert ("Slack POST /api/chat.postMessage: argument 'unfurl_links' = 'maybe': 'maybe' is not of type 'boolean' "
            "(schema #/paths/~1chat.postMessage/post/parameters/13/type)") in run.stdout
    assert "1 Slack Web API calls against slack-api-specs" in run.stdout and "1 violation(s)" in run.stdout
