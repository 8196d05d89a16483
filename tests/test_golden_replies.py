"""Golden replies: what every command answers on the CLI, in Slack and on a pull request.

The same script of commands (good, malformed, refused, not offered on that front end, acting on
a job) goes through each front end's real transport — ``wasmbot run`` in a subprocess, a signed
slash command to ``wasmbot serve``, a signed ``issue_comment`` webhook — and every reply is
compared with ``tests/testdata/golden/FRONT_END.txt``.  The files were recorded before the
command core moved (issue 17), so a refactor that changes a reply shows up as a diff here; a
deliberate change rewrites them with ``WASMBOT_GOLDEN_UPDATE=1 python3 -m pytest
tests/test_golden_replies.py`` and the diff goes in the commit.

No worker runs, but one elsewhere is registered as serving the C and Rust toolchains only (so
``run`` starts none): staged commands stay queued, which is what their first reply is about, and a
build for another toolchain is refused (workers/routing.py).
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import ROOT, TESTDATA, Wasmbot, front_ends
from githubapi import GitHubStandIn
from slackapi import SlackStandIn, signed_headers, slash_command
from test_github import FILTER, REPO, comment_event, pull_request, start_githubbot

GOLDEN = TESTDATA / "golden"
MISSING = "0123456789ab"
STATUS = "<!-- wasmbot:pull-request -->"  # the pull request's status comment: test_github's business  # a job id that no job has

#: The script: ``{job}`` is the newest job so far (``MISSING`` before there is one).
SCRIPT = [
    "/wasm help",
    "/wasm help build",
    "/wasm help nosuch",
    "/wasm",
    "/wasm frobnicate now",
    "/wasm build",
    "/wasm build ../../etc --tag 'x;rm'",
    "/wasm build examples/hello-c --lang cobol",
    "/wasm build no-such-dir",
    "/wasm init my-filter",
    "/wasm init my-filter --lang cobol",
    "/wasm push",
    "/wasm search",
    "/wasm deploy",
    "/wasm deploy 127.0.0.1:1/f:v1 --env nowhere",
    "/wasm rollback",
    "/wasm rollback nowhere",
    "/wasm undeploy nowhere",
    "/wasm history",
    "/wasm history nowhere",
    "/wasm status",
    "/wasm jobs",
    "/wasm cancel",
    "/wasm cancel not-a-job",
    f"/wasm cancel {MISSING}",
    f"/wasm retry {MISSING}",
    f"/wasm approve {MISSING}",
    f"/wasm deny {MISSING}",
    "/wasm retest",
    "/wasm ok-to-test",
    "/wasm init my-filter --lang rust --platform istio",
    "/wasm build examples/hello-c",
    "/wasm test examples/hello-c",
    "/wasm test examples/hello-c --lang go",
    "/wasm retry {job}",
    "/wasm approve {job}",
    "/wasm cancel {job}",
    "/wasm cancel {job}",
    "/wasm retry {job}",
    "/wasm jobs",
]


def normalised(text: str, tmp: Path) -> str:
    """The reply without what changes from run to run: ids, shas, ports, paths, times."""
    text = text.replace(str(tmp), "<tmp>").replace(str(ROOT), "<root>")
    text = re.sub(r"\b[0-9a-f]{40}\b", "<sha>", text)
    text = re.sub(r"\b[0-9a-f]{12}\b", "<job>", text)
    text = re.sub(r"127\.0\.0\.1:\d{2,5}", "127.0.0.1:<port>", text)
    text = re.sub(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:?\d\d| UTC)?", "<time>", text)
    text = re.sub(r" *\b\d+(\.\d+)?\s?(ms|s|m|h) ago\b", " <ago>", text)
    return text.rstrip()


def run_script(ask: Callable[[str], str], newest: Callable[[], str | None], tmp: Path) -> str:
    """``$ COMMAND`` then its normalised reply, for every command in the script."""
    out = []
    for line in SCRIPT:
        text = line.format(job=newest() or MISSING)
        out.append(f"$ {line}\n{normalised(ask(text), tmp)}\n")
    return "\n".join(out)


def check(name: str, got: str) -> None:
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("WASMBOT_GOLDEN_UPDATE") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(got)
    want = path.read_text()
    assert got == want, f"{name} replies differ from {path}; a deliberate change: WASMBOT_GOLDEN_UPDATE=1"


def c_worker_elsewhere(bot: Wasmbot) -> None:
    bot.store.heartbeat("worker-elsewhere", 3600, toolchains=["c", "rust"])


def newest_job(bot: Wasmbot) -> Callable[[], str | None]:
    def newest() -> str | None:
        recent = bot.store.recent(1)
        return recent[0].id if recent else None
    return newest


@pytest.mark.parametrize("wasmbot", ["sqlite"], indirect=True)
def test_cli_replies(wasmbot: Wasmbot, tmp_path: Path) -> None:
    c_worker_elsewhere(wasmbot)
    def ask(text: str) -> str:
        proc = wasmbot.cli("run", "--detach", text, env={"LOGNAME": "alice"})
        return f"[exit {proc.returncode}]\n{proc.stdout}{proc.stderr}"
    check("cli", run_script(ask, newest_job(wasmbot), tmp_path))


@pytest.mark.parametrize("wasmbot", ["sqlite"], indirect=True)
def test_slack_replies(wasmbot: Wasmbot, tmp_path: Path) -> None:
    c_worker_elsewhere(wasmbot)
    with front_ends(wasmbot, {"WASMBOT_SOURCE_ROOT": str(ROOT)}) as (url, slack, _):
        def ask(text: str) -> str:
            name = f"commands/{uuid.uuid4().hex}"
            posted = len(slack.called("chat.postMessage"))
            body = slash_command(text.removeprefix("/wasm").strip(), slack.response_url(name))
            acked = requests.post(f"{url}/slack/events", data=body.encode(), timeout=30,
                                  headers=signed_headers(body, "application/x-www-form-urlencoded"))
            if acked.text:
                return f"[ack {acked.status_code}] {shown(acked.json())}"

            def answered(api: SlackStandIn) -> list[str]:
                said = [f"[response] {shown(args)}" for n, args in api.responses if n == name]
                return said + [f"[message] {shown(m.args)}" for m in api.called("chat.postMessage")[posted:]]
            return f"[ack {acked.status_code}, then]\n" + "\n".join(slack.wait_for(answered, timeout=30))
        check("slack", run_script(ask, newest_job(wasmbot), tmp_path))


def shown(args: dict[str, Any]) -> str:
    """A Slack message as its fields: who sees it, its text, and the buttons it offers (their
    action ids), which pin what one can do from it; block layout is other tests' business."""
    blocks = args.get("blocks") or "[]"
    parsed: list[dict[str, Any]] = json.loads(blocks) if isinstance(blocks, str) else blocks
    buttons = [e["action_id"] for b in parsed for e in b.get("elements", []) if "action_id" in e]
    seen = args.get("response_type", "in channel")
    return f"({seen}; {len(parsed)} blocks; buttons {buttons})\n{args.get('text', '')}"


@pytest.mark.parametrize("wasmbot", ["sqlite"], indirect=True)
def test_github_replies(wasmbot: Wasmbot, tmp_path: Path) -> None:
    c_worker_elsewhere(wasmbot)
    api = GitHubStandIn()
    api.start()
    githubbot = start_githubbot(wasmbot, api, tmp_path)
    api.add_repo(REPO, FILTER)
    sha = api.add_commit(REPO, FILTER)
    pull_request(api, "opened", sha)  # pull request 2 exists; its opening is not delivered

    def ask(text: str) -> str:
        before = len(api.comments_on(REPO, 2))
        event = comment_event(api, text, "MEMBER", "octocat")
        answer = githubbot.comment(event)
        said = [c["body"] for c in api.comments_on(REPO, 2)[before:]
                if c["user"]["login"] != "octocat" and not c["body"].startswith(STATUS)]
        reacted = [r for i, r in api.reactions if i == event["comment"]["id"]]
        return f"[{answer.status_code}, reactions {reacted}]\n" + "\n---\n".join(said)
    try:
        got = run_script(ask, newest_job(wasmbot), tmp_path).replace(sha[:7], "<sha7>")
    finally:
        githubbot.process.terminate()
        githubbot.process.wait(30)
        api.stop()
    check("github", got)
