"""What a job reports, through the real front ends (issue 19, points 5 and 7): the stages after a
failed one show as skipped in Slack and on GitHub, errors name files relative to the source, a
missing source is refused before anything is queued, and a GitHub release is named and sized
after its filter, not after the directory it was checked out into."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import ROOT, Wasmbot, registry_host
from githubapi import GitHubStandIn
from slackapi import BOT_TOKEN, SIGNING_SECRET, SlackStandIn
from test_github import FILTER, REPO, completed, payload, pull_request, start_githubbot
from test_slack import final_message, start_slackbot

from bot.localservices import Service
from workers.jobs import State
from workers.oci.image import MANIFEST_MEDIA_TYPE
from workers.stages import relative_paths

# The header is found through -I/src, so clang names it by the build container's path.
BROKEN_HEADER = {"filter.c": b"#include <broken.h>\n",
                 "broken.h": b"int broken(void) { return undefined_thing; }\n"}


@pytest.mark.parametrize("wasmbot", ["sqlite"], indirect=True)
def test_slack_refuses_a_missing_source_and_shows_skipped_stages_and_source_paths(
        wasmbot: Wasmbot, tmp_path: Path, source_dir: Path) -> None:
    api = SlackStandIn()
    api.start()
    bot = start_slackbot(wasmbot, api, tmp_path)
    try:
        for text, answer in [
            ("build nosuch", ":warning: source 'nosuch' is not a directory under the source root"),
            ("init examples --lang rust",
             ":warning: examples already exists; wasmbot never overwrites a destination: choose another NAME"),
        ]:
            before = len(api.responses)
            assert bot.command(text).status_code == 200
            [(_, reply)] = api.wait_for(lambda a, n=before: a.responses[n:])
            assert (reply["response_type"], reply["text"]) == ("ephemeral", answer)
        assert wasmbot.store.recent() == [] and api.called("chat.postMessage") == []

        for name, content in BROKEN_HEADER.items():
            (source_dir / name).write_bytes(content)
        wasmbot.start_worker()
        bot.command(f"build tests/.sources/{source_dir.name}")
        shown = json.dumps(final_message(api, "failed")["blocks"])
        assert ":fast_forward: *test* skipped" in shown, shown
        assert "broken.h:1:" in shown and "undefined_thing" in shown
        for server_path in ("/src/", str(ROOT), wasmbot.env["WASMBOT_DATA_DIR"]):
            assert server_path not in shown
    finally:
        bot.process.terminate()
        bot.process.wait(30)
        api.stop()


@pytest.mark.parametrize("wasmbot", ["sqlite"], indirect=True)
def test_a_cancelled_job_skips_its_later_stages_and_a_retry_makes_them_pending(
        wasmbot: Wasmbot, tmp_path: Path) -> None:
    api = SlackStandIn()
    api.start()
    bot = start_slackbot(wasmbot, api, tmp_path)
    try:
        bot.command("build examples/hello-c")  # no worker: it stays queued
        api.wait_for(lambda a: a.called("chat.postMessage"))
        [job] = wasmbot.store.recent()
        bot.click("wasmbot_cancel", job.id)
        shown = json.dumps(final_message(api, "cancelled")["blocks"])
        assert ":no_entry_sign: *build* cancelled" in shown and "cancelled by <@W111>" in shown
        assert ":fast_forward: *test* skipped" in shown and ":fast_forward: *push* skipped" in shown
        cancelled = wasmbot.store.get(job.id)
        assert cancelled is not None
        assert [s.state for s in cancelled.stages] == [State.CANCELLED, State.SKIPPED, State.SKIPPED]

        bot.click("wasmbot_retry", job.id)
        api.wait_for(lambda a: wasmbot.store.get(job.id).state is State.QUEUED)  # type: ignore[union-attr]
        retried = wasmbot.store.get(job.id)
        assert retried is not None
        assert [s.state for s in retried.stages] == [State.QUEUED, State.PENDING, State.PENDING]
    finally:
        bot.process.terminate()
        bot.process.wait(30)
        api.stop()


@pytest.mark.parametrize("wasmbot", ["sqlite"], indirect=True)
def test_a_failed_pull_request_build_shows_the_later_stages_skipped(wasmbot: Wasmbot, github_api: GitHubStandIn,
                                                                    tmp_path: Path) -> None:
    bot = start_githubbot(wasmbot, github_api, tmp_path)
    try:
        github_api.add_repo(REPO, FILTER)
        sha = github_api.add_commit(REPO, BROKEN_HEADER)
        bot.bot.start_worker()
        bot.post("pull_request", pull_request(github_api, "opened", sha))
        failed = github_api.wait_for(lambda a: completed(a, sha))
        assert failed["conclusion"] == "failure"
        assert "| build | ❌ failed |" in failed["output"]["summary"]
        assert "| test | ⏭ skipped |" in failed["output"]["summary"], failed["output"]["summary"]
        assert "broken.h:1:" in failed["output"]["text"]
        for server_path in ("/src/", wasmbot.env["WASMBOT_DATA_DIR"]):
            assert server_path not in json.dumps(failed["output"])

        def comment(a: GitHubStandIn) -> dict[str, Any] | None:
            found = a.comments_on(REPO, 2)
            return found[0] if found and "**❌ failed**" in found[0]["body"] else None
        assert "| test | ⏭ skipped |" in github_api.wait_for(comment)["body"]
    finally:
        bot.process.terminate()
        bot.process.wait(30)


@pytest.mark.parametrize("wasmbot", ["sqlite"], indirect=True)
def test_a_release_is_named_after_its_repository_and_announced_with_the_module_size(
        wasmbot: Wasmbot, github_api: GitHubStandIn, registry: Service, tmp_path: Path) -> None:
    slack = SlackStandIn()
    slack.start()
    bot = start_githubbot(wasmbot, github_api, tmp_path, SLACK_SIGNING_SECRET=SIGNING_SECRET,
                          SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_API_URL=slack.api_url,
                          WASMBOT_DEFAULT_REGISTRY=registry_host(registry))
    try:
        github_api.add_repo(REPO, FILTER)  # no .wasmbot.yaml; its test cases declare root_id add-header
        event = payload("release/published.json")
        github_api.add_release(REPO, event["release"])
        assert bot.post("release", event).status_code == 200
        bot.bot.start_worker()
        [posted] = slack.wait_for(lambda s: s.called("chat.postMessage"))
        [job] = bot.jobs()
        job = bot.bot.wait(job.id)
        assert job.state is State.SUCCEEDED, [s.error for s in job.stages]
        assert (job.artifacts["name"], job.artifacts["root_ids"]) == ("Hello-World", "add-header")

        repository, tag = job.artifacts["image"].split("/", 1)[1].split(":")
        manifest = requests.get(f"{registry.url}/v2/{repository}/manifests/{tag}",
                                headers={"Accept": MANIFEST_MEDIA_TYPE}, timeout=10).json()
        assert manifest["annotations"]["org.opencontainers.image.title"] == "Hello-World"
        assert manifest["annotations"]["io.wasmbot.root-ids"] == "add-header"
        [layer] = manifest["layers"]
        blob = requests.get(f"{registry.url}/v2/{repository}/blobs/{layer['digest']}", timeout=10).content
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
            extracted = tar.extractfile("plugin.wasm")
            assert extracted is not None
            module_size = len(extracted.read())
        assert str(module_size) == job.artifacts["module_size"] and module_size != layer["size"]
        pulled = manifest["config"]["size"] + layer["size"]

        blocks = posted.args["blocks"]
        assert blocks[0]["text"]["text"] == ":rocket: Hello-World 0.0.1 released"
        fields = {f["text"].split("\n", 1)[0]: f["text"].split("\n", 1)[1] for f in blocks[1]["fields"]}
        assert fields["*Root ids*"] == "add-header"
        assert fields["*Size*"] == f"{module_size:,} bytes ({pulled:,} bytes to pull, compat layout)"
        assert "checkout" not in json.dumps(blocks)
    finally:
        bot.process.terminate()
        bot.process.wait(30)
        slack.stop()


def test_the_filter_names_itself_in_wasmbot_yaml(wasmbot: Wasmbot, source_dir: Path) -> None:
    (source_dir / "filter.c").write_bytes(FILTER["filter.c"])
    (source_dir / ".wasmbot.yaml").write_text("name: edge-auth\n")
    wasmbot.start_worker()
    job = wasmbot.wait(wasmbot.submit(f"/wasm test tests/.sources/{source_dir.name}"))
    assert job.state is State.SUCCEEDED, job.failed_stage()
    # No root id declared anywhere (no runtime-config.json, no test cases): the name is the root id.
    assert (job.artifacts["name"], job.artifacts["root_ids"]) == ("edge-auth", "edge-auth")


def test_server_paths_read_relative_to_the_source() -> None:
    shown = relative_paths([("/data/sources/x", ""), ("/data", "$WASMBOT_DATA_DIR"), ("/src", "")])
    assert shown("/data/sources/x/filter.c:3: error: nope") == "filter.c:3: error: nope"
    assert shown("source /data/sources/x is empty") == "source . is empty"
    assert shown("cannot read '/data/artifacts/1/filter.wasm'") == "cannot read '$WASMBOT_DATA_DIR/artifacts/1/filter.wasm'"
    assert shown("In file included from /src/a.h:1, (/src/b.h)") == "In file included from a.h:1, (b.h)"
    # Only whole paths: another directory that merely contains these names is left alone.
    for text in ("--> /deps/cargo/src/lib.rs:1", "/data/sources/xy/a.c", "/srcs/a.c", "-I/src"):
        assert shown(text) == text.replace("/data/", "$WASMBOT_DATA_DIR/")
