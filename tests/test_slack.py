"""The Slack front end, driven over HTTP like Slack drives it: `wasmbot serve` in its own process,
requests signed with slack_sdk's signature code from the real payload shapes in tests/testdata,
and a stand-in of Slack's Web API that the real slack_sdk client talks to."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import ROOT, TESTDATA, Wasmbot, registry_host
from kubeserver import KubeServer
from slackapi import BOT_TOKEN, SIGNING_SECRET, SlackStandIn, signed_headers, slash_command

from bot.localservices import Service, free_port
from workers.jobs import State
from workers.store import JobStore

PAYLOADS = TESTDATA / "slack"


@dataclass
class SlackBot:
    url: str
    api: SlackStandIn
    bot: Wasmbot
    process: subprocess.Popen[bytes]

    def post(self, body: str, content_type: str, **signing: Any) -> requests.Response:
        headers = signed_headers(body, content_type, **signing)
        return requests.post(f"{self.url}/slack/events", data=body.encode(), headers=headers, timeout=10)

    def command(self, text: str, *, user: str = "W111", trigger: str | None = None,
                extra_headers: dict[str, str] | None = None) -> requests.Response:
        body = slash_command(text, self.api.response_url(f"commands/{uuid.uuid4().hex}"), user=user,
                             trigger=trigger)
        headers = signed_headers(body, "application/x-www-form-urlencoded") | (extra_headers or {})
        return requests.post(f"{self.url}/slack/events", data=body.encode(), headers=headers, timeout=10)

    def click(self, action: str, job_id: str, *, user: str = "W111") -> tuple[requests.Response, str]:
        payload = json.loads((PAYLOADS / "block_actions.json").read_text())
        name = f"actions/{uuid.uuid4().hex}"
        payload["user"]["id"] = user
        payload["response_url"] = self.api.response_url(name)
        payload["actions"][0].update(action_id=action, value=job_id)
        body = "payload=" + urllib.parse.quote(json.dumps(payload))
        return self.post(body, "application/x-www-form-urlencoded"), name


def start_slackbot(bot: Wasmbot, api: SlackStandIn, tmp_path: Path, **env: str) -> SlackBot:
    port = free_port()
    process = bot.serve(port, {
        "SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_API_URL": api.api_url,
        "WASMBOT_SOURCE_ROOT": str(ROOT), "WASMBOT_SLACK_UPDATE_INTERVAL": "0.2",
        "WASMBOT_PUBLIC_URL": f"http://127.0.0.1:{port}"} | env)
    return SlackBot(f"http://127.0.0.1:{port}", api, bot, process)


@pytest.fixture
def slackbot(wasmbot: Wasmbot, slack_api: SlackStandIn, tmp_path: Path) -> Iterator[SlackBot]:
    bot = start_slackbot(wasmbot, slack_api, tmp_path)
    yield bot
    bot.process.terminate()
    bot.process.wait(30)


def final_message(api: SlackStandIn, state: str) -> dict[str, Any]:
    """Wait for the job message to show ``state`` and return the edit that showed it."""
    def done(stand_in: SlackStandIn) -> dict[str, Any] | None:
        updates = [c.args for c in stand_in.calls if c.method == "chat.update"]
        return next((u for u in reversed(updates) if f"*{state}*" in json.dumps(u["blocks"])), None)
    result: dict[str, Any] = api.wait_for(done)
    return result


def text_of(blocks: list[dict[str, Any]]) -> str:
    return json.dumps(blocks)


# -- signatures ------------------------------------------------------------------------------

@pytest.mark.parametrize("wasmbot", ["sqlite"], indirect=True)
def test_bad_signature_and_stale_timestamp_are_refused(slackbot: SlackBot) -> None:
    body = urllib.parse.urlencode(json.loads((PAYLOADS / "slash_command.json").read_text())
                                  | {"command": "/wasm", "text": "help"})
    forged = slackbot.post(body, "application/x-www-form-urlencoded", secret="not-the-signing-secret")
    assert forged.status_code == 401
    stale = slackbot.post(body, "application/x-www-form-urlencoded", timestamp=int(time.time()) - 6 * 60)
    assert stale.status_code == 401
    unsigned = requests.post(f"{slackbot.url}/slack/events", data=body,
                             headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=10)
    assert unsigned.status_code == 401
    ok = slackbot.post(body, "application/x-www-form-urlencoded")
    assert ok.status_code == 200 and "wasmbot commands" in ok.json()["text"]
    assert slackbot.bot.store.recent() == []


@pytest.mark.parametrize("wasmbot", ["sqlite"], indirect=True)
def test_url_verification_and_events_from_the_real_payloads(slackbot: SlackBot) -> None:
    challenge = (PAYLOADS / "url_verification.json").read_text()
    answer = slackbot.post(challenge, "application/json")
    assert answer.status_code == 200
    assert answer.json()["challenge"] == json.loads(challenge)["challenge"]
    mention = (PAYLOADS / "event_callback_app_mention.json").read_text()
    assert slackbot.post(mention, "application/json").status_code == 200
    reply = slackbot.api.wait_for(lambda api: api.called("chat.postMessage"), timeout=30)[0].args
    assert reply["thread_ts"] == "1595926230.009600" and "wasmbot commands" in reply["text"]
    message = (PAYLOADS / "event_callback_message.json").read_text()
    assert slackbot.post(message, "application/json").status_code == 200  # ignored, without error


# -- commands --------------------------------------------------------------------------------

@pytest.mark.parametrize("wasmbot", ["sqlite"], indirect=True)
def test_help_and_errors_are_ephemeral_to_the_caller(slackbot: SlackBot) -> None:
    helped = slackbot.command("help build")
    assert helped.status_code == 200
    assert helped.json()["response_type"] == "ephemeral" and "usage: /wasm build SOURCE" in helped.json()["text"]
    wrong = slackbot.command("build ../../etc --tag 'x;rm'")
    assert wrong.json()["response_type"] == "ephemeral"
    assert ":warning: invalid --tag: invalid reference 'x;rm'" in wrong.json()["text"]
    assert "usage: `/wasm build SOURCE" in wrong.json()["text"]
    assert slackbot.api.called("chat.postMessage") == [] and slackbot.bot.store.recent() == []


@pytest.mark.parametrize("wasmbot", ["sqlite"], indirect=True)
def test_user_text_is_escaped_and_people_are_mentioned_properly(wasmbot: Wasmbot, slack_api: SlackStandIn,
                                                                 tmp_path: Path) -> None:
    """Command text that looks like Slack markup is shown, not acted on (the stand-in also refuses
    any message that breaks Slack's rules, tests/blockkit.py)."""
    bot = start_slackbot(wasmbot, slack_api, tmp_path, WASMBOT_PERMISSIONS=json.dumps({"deploy:dev": ["*"]}))
    try:
        hostile = "deploy 127.0.0.1:1/f:v1 --env dev --config '{\"a\":\"<!channel> & <@U0BOSS>\"}'"
        assert bot.command(hostile).text == ""
        posted = slack_api.wait_for(lambda api: api.called("chat.postMessage"), timeout=30)[0].args
        shown = text_of(posted["blocks"])
        assert "&lt;!channel&gt; &amp; &lt;@U0BOSS&gt;" in shown and "<!channel>" not in shown + posted["text"]
        assert "asked by <@W111>" in shown
        wrong = bot.command("build examples/hello-c --tag 'a<b>&c'")
        assert "invalid reference 'a&lt;b&gt;&amp;c'" in wrong.json()["text"]
        assert slack_api.called("chat.postMessage:invalid_blocks") == []
        # auth.test is bolt's own, once per process, made by slack_sdk's auth_test() as it is.
        [auth] = slack_api.called("auth.test")
        assert auth.args == {} and auth.token == BOT_TOKEN
    finally:
        bot.process.terminate()
        bot.process.wait(30)


@pytest.mark.parametrize("wasmbot", ["redis"], indirect=True)
def test_one_message_edited_in_place_through_a_whole_pipeline(slackbot: SlackBot, registry: Service) -> None:
    slackbot.bot.start_worker()
    ref = f"{registry_host(registry)}/slack/hello:v1"
    acked = slackbot.command(f"build examples/hello-c --tag {ref}")
    assert acked.status_code == 200 and acked.text == ""
    final = final_message(slackbot.api, "succeeded")
    posted = slackbot.api.called("chat.postMessage")
    assert len(posted) == 1 and posted[0].args["channel"] == "C111"
    updates = slackbot.api.called("chat.update")
    ts = {(u.args["channel"], u.args["ts"]) for u in updates}
    assert len(ts) == 1  # every edit is of the one message
    job = slackbot.bot.store.recent()[0]
    assert job.state is State.SUCCEEDED and job.reports["slack"]["ts"] in {t for _, t in ts}
    assert len(updates) <= 2 * len(job.stages) + 2  # state changes only, throttled: no log-line edits
    shown = text_of(final["blocks"])
    for stage in ("build", "test", "push"):
        assert f"*{stage}* succeeded" in shown
    assert job.artifacts["digest"] in shown and ref in shown
    assert "/jobs/" + job.id + "/log?exp=" in shown
    footer = next(b for b in final["blocks"] if "full log" in json.dumps(b))["elements"][0]["text"]
    assert f"/hub/jobs/{job.id}|job page>" in footer  # the hub's job page comes first (issue 23)
    log_url = footer.rpartition("<")[2].split("|")[0]
    assert requests.get(log_url, timeout=10).status_code == 200
    assert requests.get(log_url.split("?")[0] + "?sig=0000", timeout=10).status_code == 403


@pytest.mark.parametrize("wasmbot", ["sqlite"], indirect=True)
def test_a_retried_slash_command_makes_one_job(slackbot: SlackBot, source_dir: Path) -> None:
    (source_dir / "filter.c").write_text("int main(void) { return 0; }\n")
    text = f"build tests/.sources/{source_dir.name}"
    first = slackbot.command(text, trigger="4711.42.retried")
    again = slackbot.command(text, trigger="4711.42.retried", extra_headers={"X-Slack-Retry-Num": "1",
                                                                             "X-Slack-Retry-Reason": "http_timeout"})
    assert first.status_code == again.status_code == 200
    slackbot.api.wait_for(lambda api: api.called("chat.postMessage"), timeout=30)
    assert len(slackbot.bot.store.recent()) == 1
    assert len(slackbot.api.called("chat.postMessage")) == 1


@pytest.mark.parametrize("wasmbot", ["sqlite"], indirect=True)
def test_buttons_recheck_permissions_and_the_requester_may_cancel(slackbot: SlackBot, source_dir: Path) -> None:
    (source_dir / "filter.c").write_text("int main(void) { return 0; }\n")
    slackbot.command(f"build tests/.sources/{source_dir.name}")  # no worker: it stays queued
    slackbot.api.wait_for(lambda api: api.called("chat.postMessage"), timeout=30)
    job = slackbot.bot.store.recent()[0]
    blocks = slackbot.api.called("chat.postMessage")[0].args["blocks"]
    assert any(e.get("action_id") == "wasmbot_cancel" for b in blocks for e in b.get("elements", []))

    pressed, name = slackbot.click("wasmbot_cancel", job.id, user="W222")
    assert pressed.status_code == 200
    denial = slackbot.api.wait_for(lambda api: [a for n, a in api.responses if n == name], timeout=30)[0]
    assert denial["text"] == ":lock: you may not cancel: that needs being the job's requester"
    assert slackbot.bot.store.get(job.id).state is State.QUEUED  # type: ignore[union-attr]

    slackbot.click("wasmbot_cancel", job.id, user="W111")
    final = final_message(slackbot.api, "cancelled")
    assert slackbot.bot.store.get(job.id).state is State.CANCELLED  # type: ignore[union-attr]
    assert any(e.get("action_id") == "wasmbot_retry" for b in final["blocks"] for e in b.get("elements", []))
    assert "cancelled by <@W111>" in text_of(final["blocks"])


@pytest.mark.parametrize("wasmbot", ["sqlite"], indirect=True)
def test_group_permissions_and_denials_that_say_what_is_missing(wasmbot: Wasmbot, slack_api: SlackStandIn,
                                                                 tmp_path: Path) -> None:
    slack_api.groups["S0BUILDERS"] = ["W111"]
    bot = start_slackbot(wasmbot, slack_api, tmp_path,
                         WASMBOT_PERMISSIONS=json.dumps({"build": ["group:S0BUILDERS"], "search": ["user:W999"]}))
    try:
        denied = bot.command("build examples/hello-c", user="W222")
        assert denied.json() == {"response_type": "ephemeral",
                                 "text": ":lock: you may not build: that needs membership of <!subteam^S0BUILDERS>"}
        assert bot.command("build examples/hello-c", user="W111").text == ""
        bot.api.wait_for(lambda api: api.called("chat.postMessage"), timeout=30)
        assert [c.args["usergroup"] for c in bot.api.called("usergroups.users.list")] == ["S0BUILDERS"]
        refused = bot.command("search add-header", user="W111")
        assert refused.json()["text"] == ":lock: you may not search: that needs <@W999>"
    finally:
        bot.process.terminate()
        bot.process.wait(30)


@pytest.mark.parametrize("wasmbot", ["redis"], indirect=True)
def test_rate_limited_edits_are_retried_and_a_release_is_announced(slackbot: SlackBot, registry: Service) -> None:
    slackbot.api.ratelimit["chat.update"] = 1
    slackbot.bot.start_worker()
    ref = f"{registry_host(registry)}/slack/release:1.4.0"
    slackbot.command(f"build examples/hello-c --tag {ref} --release")
    final_message(slackbot.api, "succeeded")
    limited = slackbot.api.called("chat.update:ratelimited")
    assert len(limited) == 1
    after = [c for c in slackbot.api.called("chat.update") if c.at > limited[0].at]
    assert after and after[0].at - limited[0].at >= 0.9  # waited Retry-After (1 s) before the retry
    announced = slackbot.api.wait_for(
        lambda api: [c.args for c in api.called("chat.postMessage") if c.args["channel"] == "#wasm"], timeout=60)[0]
    job = slackbot.bot.store.recent()[0]
    shown = text_of(announced["blocks"])
    assert "hello-c v1" not in shown and "hello-c 1.4.0 released" in shown
    assert f"`{ref}`" in shown and f"`{job.artifacts['digest']}`" in shown
    assert "*ABI versions*\\n0.2.0" in shown and "*Root ids*\\nhello-c" in shown
    assert f"*Size*\\n{int(job.artifacts['module_size']):,} bytes (" in shown  # the module's own size
    assert "bytes to pull, compat layout)" in shown


@pytest.mark.parametrize("wasmbot", ["sqlite"], indirect=True)
def test_oauth_install_then_commands_use_that_workspaces_token(wasmbot: Wasmbot, slack_api: SlackStandIn,
                                                               tmp_path: Path) -> None:
    bot = start_slackbot(wasmbot, slack_api, tmp_path, SLACK_BOT_TOKEN="", SLACK_CLIENT_ID=slack_api.client_id,
                         SLACK_CLIENT_SECRET=slack_api.client_secret)
    try:
        session = requests.Session()
        page = session.get(f"{bot.url}/slack/install", timeout=10)
        assert page.status_code == 200
        state = re.search(r"state=([^&\"]+)", page.text).group(1)  # type: ignore[union-attr]
        assert "scope=commands%2Cchat%3Awrite" in page.text.replace(",", "%2C").replace(":", "%3A")
        # The state cookie is Secure (a browser sends it back over https); send it as the browser would.
        cookie = page.headers["Set-Cookie"].split(";")[0]
        done = session.get(f"{bot.url}/slack/oauth_redirect", params={"code": "c0de", "state": state},
                           headers={"Cookie": cookie}, timeout=10)
        assert done.status_code == 200, done.text
        assert slack_api.called("oauth.v2.access")[0].args["code"] == "c0de"
        forged = requests.get(f"{bot.url}/slack/oauth_redirect", params={"code": "x", "state": "forged"}, timeout=10)
        assert forged.status_code != 200 and len(slack_api.called("oauth.v2.access")) == 1

        assert bot.command("build examples/hello-c").text == ""
        posted = slack_api.wait_for(lambda api: api.called("chat.postMessage"), timeout=30)[0]
        assert posted.token == "xoxb-installed-c0de"  # the installation's token, not a global one
    finally:
        bot.process.terminate()
        bot.process.wait(30)


def test_installations_are_kept_in_the_store_and_an_earlier_versions_are_moved_in(
        store: JobStore, tmp_path: Path) -> None:
    """Installations follow slack_sdk's file store's rules (latest bot, latest installer, each
    user's; a user's installation carries the latest bot token; org-wide installs by org), and
    those an earlier version wrote with slack_sdk's own file store are moved in once."""
    from slack_sdk.oauth.installation_store import FileInstallationStore
    from slack_sdk.oauth.installation_store.models.installation import Installation

    from bot.slack.installations import StoredInstallations, import_files

    def installed(team: str | None, user: str, token: str, *, org: bool = False) -> Installation:
        return Installation(app_id="A1", enterprise_id="E1" if org else None, team_id=team, user_id=user,
                            bot_token=token, bot_id="B1", bot_user_id="U0BOT", bot_scopes="commands",
                            is_enterprise_install=org)

    legacy = tmp_path / "slack" / "installations"
    files = FileInstallationStore(base_dir=str(legacy))
    files.save(installed("T1", "U1", "xoxb-first"))
    files.save(installed("T1", "U2", "xoxb-second"))  # a later install by another user: the latest bot
    files.save(installed(None, "U3", "xoxb-org", org=True))
    assert import_files(legacy, store) == 2 and not legacy.exists()
    assert import_files(legacy, store) == 0  # once

    stored = StoredInstallations(store)

    async def read() -> list[Any]:
        return [await stored.async_find_bot(enterprise_id=None, team_id="T1"),
                await stored.async_find_installation(enterprise_id=None, team_id="T1", user_id="U1"),
                await stored.async_find_installation(enterprise_id=None, team_id="T1"),
                await stored.async_find_bot(enterprise_id="E1", team_id="T9", is_enterprise_install=True),
                await stored.async_find_bot(enterprise_id=None, team_id="T2")]

    bot, first_user, latest, org, elsewhere = asyncio.run(read())
    assert bot.bot_token == "xoxb-second" and first_user.user_id == "U1"
    assert first_user.bot_token == "xoxb-second"  # a user's installation carries the latest bot token
    assert latest.user_id == "U2" and org.bot_token == "xoxb-org" and elsewhere is None

    async def uninstall() -> tuple[Any, Any]:
        await stored.async_delete_bot(enterprise_id=None, team_id="T1")
        await stored.async_delete_installation(enterprise_id=None, team_id="T1")
        return (await stored.async_find_bot(enterprise_id=None, team_id="T1"),
                await stored.async_find_installation(enterprise_id=None, team_id="T1", user_id="U1"))

    assert asyncio.run(uninstall()) == (None, None)
    assert store.view("slack-installations:/T1") is None  # nothing left of the workspace


@pytest.mark.parametrize("wasmbot", ["sqlite"], indirect=True)
def test_socket_mode_takes_the_same_commands(wasmbot: Wasmbot, slack_api: SlackStandIn, tmp_path: Path) -> None:
    bot = start_slackbot(wasmbot, slack_api, tmp_path, SLACK_APP_TOKEN=slack_api.app_token)
    try:
        fields = json.loads((PAYLOADS / "slash_command.json").read_text()) | {"command": "/wasm", "text": "help"}
        envelope = slack_api.send_envelope("slash_commands", fields)
        ack = slack_api.wait_for(lambda api: [a for a in api.socket_acks if a.get("envelope_id") == envelope],
                                 timeout=30)[0]
        assert "wasmbot commands" in ack["payload"]["text"]
    finally:
        bot.process.terminate()
        bot.process.wait(30)


def test_the_app_manifest_matches_what_wasmbot_serves() -> None:
    import yaml

    from bot.slack.workspaces import SCOPES

    manifest = yaml.safe_load((ROOT / "deploy" / "slack-app-manifest.yaml").read_text())
    assert manifest["oauth_config"]["scopes"]["bot"] == SCOPES
    command = manifest["features"]["slash_commands"][0]
    assert command["command"] == "/wasm"
    urls = {command["url"], manifest["settings"]["event_subscriptions"]["request_url"],
            manifest["settings"]["interactivity"]["request_url"]}
    assert urls == {"https://wasmbot.example.com/slack/events"}
    assert manifest["oauth_config"]["redirect_urls"] == ["https://wasmbot.example.com/slack/oauth_redirect"]
    assert manifest["settings"]["event_subscriptions"]["bot_events"] == ["app_mention"]


@pytest.mark.parametrize("wasmbot", ["sqlite"], indirect=True)
def test_a_protected_deploy_needs_someone_else_allowed_to_approve(
        wasmbot: Wasmbot, slack_api: SlackStandIn, registry: Service, kube: KubeServer, tmp_path: Path) -> None:
    from ocihelp import built, client, host_of

    from workers.oci import reference
    from workers.oci.push import push

    ref = push(client(registry, tmp_path), reference.parse(f"{host_of(registry)}/slack/guarded:v1"), built()).pinned
    environments = {"prod": {"kubeconfig": str(kube.kubeconfig(tmp_path / "kubeconfig")), "protected": True}}
    wasmbot.env["WASMBOT_ENVIRONMENTS"] = json.dumps(environments)  # the worker deploys, so it needs them too
    wasmbot.start_worker()
    policy = {"deploy:prod": ["*"], "approve:prod": ["user:W111", "user:W222"]}
    bot = start_slackbot(wasmbot, slack_api, tmp_path, WASMBOT_PERMISSIONS=json.dumps(policy))
    try:
        assert bot.command(f"deploy {ref} --env prod", user="W111").text == ""
        posted = slack_api.wait_for(lambda api: api.called("chat.postMessage"), timeout=30)[0].args
        shown = text_of(posted["blocks"])
        assert "waiting for approval* to deploy:prod" in shown and ref in shown
        job = wasmbot.store.recent()[0]
        assert job.state is State.PENDING

        def answer(name: str) -> dict[str, Any]:
            found: dict[str, Any] = slack_api.wait_for(
                lambda api: [a for n, a in api.responses if n == name], timeout=30)[0]
            return found

        _, name = bot.click("wasmbot_approve", job.id, user="W111")  # the requester
        assert answer(name)["text"] == ":warning: you asked for this change: someone else who may approve must " \
                                       "approve it"
        _, name = bot.click("wasmbot_approve", job.id, user="W333")  # not an approver
        assert answer(name)["text"] == ":lock: you may not approve:prod: that needs <@W111>, <@W222>"
        assert wasmbot.store.get(job.id).state is State.PENDING  # type: ignore[union-attr]
        assert kube.objects == {}
        assert "--- in the cluster now" in shown and "+++ after this deploy" in shown

        bot.click("wasmbot_approve", job.id, user="W222")
        done = wasmbot.wait(job.id)
        assert done.state is State.SUCCEEDED, done.stage("deploy").error
        final = final_message(slack_api, "succeeded")
        assert "approved by <@W222>" in text_of(final["blocks"])
        assert kube.objects[("wasmplugins", "default", "guarded")]["spec"]["sha256"] == ref.split("@sha256:")[1]
    finally:
        bot.process.terminate()
        bot.process.wait(30)


@pytest.mark.parametrize("wasmbot", ["sqlite"], indirect=True)
def test_deploy_button_on_a_pushed_job(wasmbot: Wasmbot, slack_api: SlackStandIn, registry: Service,
                                       kube: KubeServer, tmp_path: Path) -> None:
    environments = {"dev": {"kubeconfig": str(kube.kubeconfig(tmp_path / "kubeconfig")), "namespace": "dev"}}
    wasmbot.env["WASMBOT_ENVIRONMENTS"] = json.dumps(environments)
    wasmbot.start_worker()
    bot = start_slackbot(wasmbot, slack_api, tmp_path,
                         WASMBOT_PERMISSIONS=json.dumps({"deploy:dev": ["user:W222"]}))
    try:
        bot.command(f"build examples/hello-c --tag {registry_host(registry)}/slack/button:v1")
        final = final_message(slack_api, "succeeded")
        build = wasmbot.store.recent()[0]
        deploy_buttons = [e for b in final["blocks"] for e in b.get("elements", [])
                          if e.get("action_id") == "wasmbot_deploy"]
        assert [(b["text"]["text"], b["value"]) for b in deploy_buttons] == [("Deploy to dev", f"{build.id}:dev")]

        _, name = bot.click("wasmbot_deploy", f"{build.id}:dev", user="W111")
        denied = slack_api.wait_for(lambda api: [a for n, a in api.responses if n == name], timeout=30)[0]
        assert denied["text"] == ":lock: you may not deploy:dev: that needs <@W222>"

        bot.click("wasmbot_deploy", f"{build.id}:dev", user="W222")
        slack_api.wait_for(lambda api: len(api.called("chat.postMessage")) == 2, timeout=30)
        deploy = wasmbot.wait(wasmbot.store.recent()[0].id)
        assert deploy.state is State.SUCCEEDED and deploy.requester == "slack:W222", deploy.stage("deploy").error
        assert kube.objects[("wasmplugins", "dev", "button")]["spec"]["sha256"] == \
            build.artifacts["digest"].removeprefix("sha256:")
        status = bot.command("status dev")
        assert status.status_code == 200
        answer = slack_api.wait_for(lambda api: [a for n, a in api.responses if "dev: button at" in a["text"]],
                                    timeout=30)[0]
        assert build.artifacts["digest"] in answer["text"]
    finally:
        bot.process.terminate()
        bot.process.wait(30)
