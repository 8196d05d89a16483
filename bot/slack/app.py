"""The Slack app: a slack-bolt ``AsyncApp`` mounted in wasmbot's aiohttp application.

``POST /slack/events`` takes slash commands, interactivity and events (one Request URL, as the
app manifest sets); each request's signature and timestamp are verified on the raw body, and
the body parsed and checked, before bolt sees it (bot/slack/deliveries.py); bolt checks again.
``/wasm`` is acknowledged at once (help and errors in the acknowledgement, visible only to the
caller); the work happens after the acknowledgement.  Each accepted job gets one
channel message that ``Reporter`` keeps up to date.  Buttons re-check permissions.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.oauth.installation_store import FileInstallationStore
from slack_sdk.oauth.state_store import FileOAuthStateStore
from slack_sdk.web.async_client import AsyncWebClient

from bot import permissions
from bot.slack import blocks, deliveries
from bot.slack.reporter import Reporter
from bot.web import read_body
from workers import commands
from workers.config import Settings
from workers.jobs import Job
from workers.logsetup import job_context
from workers.metrics import count_delivery
from workers.store import JobStore, open_store

log = logging.getLogger(__name__)

# The bot token scopes the app manifest asks for (deploy/slack-app-manifest.yaml says why).
SCOPES = ["commands", "chat:write", "chat:write.public", "usergroups:read", "app_mentions:read"]
GROUP_CACHE_SECONDS = 300.0


def configured(settings: Settings) -> bool:
    """Slack is served only with a signing secret: never accept unverifiable requests."""
    return settings.slack_signing_secret is not None and (
        settings.slack_bot_token is not None or settings.slack_client_id is not None
    )


def workspace(enterprise: str | None, team: str | None) -> str:
    """One key for a workspace: ``ENTERPRISE/TEAM`` (either part may be empty)."""
    return f"{enterprise or ''}/{team or ''}"


class SlackFrontEnd:
    def __init__(self, settings: Settings, store: JobStore | None = None) -> None:
        assert settings.slack_signing_secret is not None
        self.settings = settings
        self.store = store or open_store(settings)
        retry: list[AsyncRetryHandler] = [AsyncRateLimitErrorRetryHandler(max_retry_count=3)]
        token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
        self.client = AsyncWebClient(token=token, base_url=settings.slack_api_url, retry_handlers=retry)
        oauth = None
        if settings.slack_client_id and settings.slack_client_secret:
            folder = settings.data_dir / "slack"
            oauth = AsyncOAuthSettings(
                client_id=settings.slack_client_id,
                client_secret=settings.slack_client_secret.get_secret_value(),
                scopes=SCOPES,
                installation_store=FileInstallationStore(base_dir=str(folder / "installations")),
                state_store=FileOAuthStateStore(expiration_seconds=600, base_dir=str(folder / "states")),
                install_path="/slack/install",
                redirect_uri_path="/slack/oauth_redirect",
            )
            self.client.token = None  # each team's own installation token is used instead
        self.app = AsyncApp(
            signing_secret=settings.slack_signing_secret.get_secret_value(),
            client=self.client,
            oauth_settings=oauth,
        )
        self.signing_secret = settings.slack_signing_secret.get_secret_value()
        self.reporter = Reporter(settings, self.store, self.client_for)
        self._groups: dict[tuple[str, str], tuple[float, set[str]]] = {}
        self.socket: Any = None
        self.app.command("/wasm")(self.on_command)
        self.app.action(blocks.RETRY)(self.on_retry)
        self.app.action(blocks.CANCEL)(self.on_cancel)
        self.app.action(blocks.APPROVE)(self.on_approve)
        self.app.action(blocks.DENY)(self.on_deny)
        self.app.action(blocks.DEPLOY)(self.on_deploy)
        self.app.event("app_mention")(self.on_mention)
        self.app.event("message")(self.ignore)  # the app sees channel messages; it acts on none

    # -- wiring ----------------------------------------------------------------------------

    def mount(self, web_app: web.Application) -> None:
        web_app.router.add_post("/slack/events", self.handle)
        flow = self.app.oauth_flow
        if flow is not None:
            web_app.router.add_get(flow.install_path, self.handle_install)
            web_app.router.add_get(flow.redirect_uri_path, self.handle_callback)
        web_app.on_startup.append(self._resume)
        if self.settings.slack_app_token is not None:
            web_app.on_startup.append(self._connect_socket)
        web_app.on_cleanup.append(self._stop)

    async def handle(self, request: web.Request) -> web.Response:
        """Verify the raw body, then parse and check it, and only then hand it to bolt."""
        try:
            body = await read_body(request, self.settings.web_slack_max_body, self.settings.web_body_timeout)
            bolt_request = deliveries.bolt_request(self.signing_secret, body, request.headers,
                                                   request.query_string)
        except web.HTTPException as exc:  # too large, too slow, unreadable
            await asyncio.to_thread(count_delivery, self.store, "slack", "invalid")
            return web.Response(status=exc.status, text=exc.text)
        except deliveries.Refused as refused:
            await asyncio.to_thread(count_delivery, self.store, "slack", refused.outcome)
            return web.Response(status=refused.status, text=f"{refused.reason}\n")
        outcome = await deliveries.outcome(self.store, bolt_request)
        await asyncio.to_thread(count_delivery, self.store, "slack", outcome)
        return await to_aiohttp_response(await self.app.async_dispatch(bolt_request))

    async def handle_install(self, request: web.Request) -> web.Response:
        assert self.app.oauth_flow is not None
        return await to_aiohttp_response(
            await self.app.oauth_flow.handle_installation(await to_bolt_request(request))
        )

    async def handle_callback(self, request: web.Request) -> web.Response:
        assert self.app.oauth_flow is not None
        return await to_aiohttp_response(
            await self.app.oauth_flow.handle_callback(await to_bolt_request(request))
        )

    async def _resume(self, _app: web.Application) -> None:
        """Pick up the messages of jobs still running when the process last stopped."""
        for job in await asyncio.to_thread(self.store.active):
            if "slack" in job.reports:
                self.reporter.follow(job.id)

    async def _connect_socket(self, _app: web.Application) -> None:
        """Socket Mode, for workspaces that cannot reach wasmbot over HTTPS: the same listeners,
        fed over a websocket wasmbot opens to Slack with the app-level token."""
        from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

        assert self.settings.slack_app_token is not None
        self.socket = AsyncSocketModeHandler(
            self.app, self.settings.slack_app_token.get_secret_value(), web_client=self.client
        )
        await self.socket.connect_async()

    async def _stop(self, _app: web.Application) -> None:
        if self.socket is not None:
            await self.socket.close_async()
        await self.reporter.close()

    async def client_for(self, workspace: str | None) -> AsyncWebClient:
        """The Web API client for ``workspace`` (``ENTERPRISE/TEAM``): the bot token, or that
        workspace's installation when installed through OAuth (several workspaces)."""
        store = self.app.installation_store
        if self.app.oauth_flow is None or store is None:
            return self.client
        enterprise, _, team = (workspace or "/").partition("/")
        bot = await store.async_find_bot(enterprise_id=enterprise or None, team_id=team or None)
        if bot is None and enterprise:  # an org-wide installation serves every team of the org
            bot = await store.async_find_bot(
                enterprise_id=enterprise, team_id=None, is_enterprise_install=True
            )
        if bot is None or not bot.bot_token:
            raise LookupError(f"wasmbot is not installed in Slack workspace {workspace}")
        return AsyncWebClient(
            token=bot.bot_token,
            base_url=self.settings.slack_api_url,
            retry_handlers=self.client.retry_handlers,
        )

    # -- permissions -----------------------------------------------------------------------

    async def allowed(
        self, action: str, user: str, channel: str | None, team: str | None, requester: str | None = None
    ) -> str | None:
        async def members(group: str) -> set[str]:
            key = (team or "", group)
            cached = self._groups.get(key)
            if cached and cached[0] > time.monotonic():
                return cached[1]
            client = await self.client_for(team)
            answer = await client.usergroups_users_list(usergroup=group)
            users = set(answer.get("users") or [])
            self._groups[key] = (time.monotonic() + GROUP_CACHE_SECONDS, users)
            return users

        try:
            return await permissions.check(
                self.settings.permissions,
                action,
                permissions.Principal(user, channel),
                requester=requester,
                members=members,
            )
        except SlackApiError as exc:  # fail closed, and say why
            log.warning("permission check for %s failed: %s", action, exc.response.get("error"))
            return (
                f"wasmbot could not check who may {action} (Slack answered "
                f"{exc.response.get('error') or exc.response.status_code}); ask an admin"
            )

    # -- listeners -------------------------------------------------------------------------

    async def on_command(self, ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond) -> None:
        text = command.get("text", "")
        try:
            parsed = commands.parse(text)
        except commands.CommandError as exc:
            await ack(response_type="ephemeral", text=f":warning: {exc.message}\nusage: `{exc.usage}`")
            return
        if isinstance(parsed, commands.HelpCommand):
            await ack(
                response_type="ephemeral",
                text=commands.help_text(parsed.topic),
                blocks=blocks.help_blocks(commands.help_text(parsed.topic)),
            )
            return
        if isinstance(parsed, commands.PullRequestCommand):
            await ack(response_type="ephemeral",
                      text=f"`/wasm {parsed.name}` works in a pull request comment on GitHub")
            return
        user, channel = command["user_id"], command.get("channel_id")
        team = workspace(command.get("enterprise_id"), command.get("team_id"))
        env = getattr(parsed, "env", None)
        action = f"deploy:{env}" if parsed.name in commands.ENVIRONMENT_COMMANDS else parsed.name
        reason = await self.allowed(action, user, channel, team)
        if reason:
            await ack(response_type="ephemeral", text=f":lock: {reason}")
            return
        await ack()  # within Slack's 3 seconds; what follows may take longer
        try:
            if isinstance(parsed, commands.SearchCommand):
                await respond(response_type="ephemeral", text=await self._search(parsed))
            elif isinstance(parsed, commands.CancelCommand):
                answer = await self._cancel(parsed.job, user, channel, team)
                await respond(response_type="ephemeral", text=answer)
            elif isinstance(parsed, commands.ListCommand):
                from bot.answers import list_text

                text_ = await asyncio.to_thread(list_text, self.settings, parsed)
                await respond(response_type="ephemeral", text=f"```{text_}```")
            elif isinstance(parsed, commands.ApproveCommand):
                await respond(response_type="ephemeral", text=await self._decide(parsed, user, channel, team))
            else:
                await self._submit(
                    parsed, f"/wasm {text}", user, channel, team, command.get("trigger_id"), respond
                )
        except Exception as exc:  # tell the caller; never leave them in silence
            log.exception("/wasm %s failed", parsed.name)
            await respond(response_type="ephemeral", text=f":x: wasmbot could not do that: {exc}")

    async def on_mention(self, event: dict[str, Any], say: Any, body: dict[str, Any]) -> None:
        """``@wasmbot help`` in a channel: the same help, as a thread reply."""
        await say(text=commands.help_text(), thread_ts=event.get("ts"))

    async def ignore(self) -> None:
        """Acknowledge and drop: an unanswered event would be sent again by Slack."""

    async def on_retry(self, ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        await self._button(body, respond, "retry")

    async def on_cancel(self, ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        await self._button(body, respond, "cancel")

    async def on_approve(self, ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        await self._button(body, respond, "approve")

    async def on_deny(self, ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        await self._button(body, respond, "deny")

    async def on_deploy(self, ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        """*Deploy to ENV* on a pushed job: a deploy job of its own, asked for by whoever clicked."""
        await ack()
        job_id, _, env = body["actions"][0]["value"].partition(":")
        user = body["user"]["id"]
        channel = (body.get("channel") or {}).get("id")
        organisation = body.get("enterprise") or {}
        team = workspace(
            (body.get("team") or {}).get("enterprise_id") or organisation.get("id"),
            (body.get("team") or {}).get("id") or body["user"].get("team_id"),
        )
        reason = await self.allowed(f"deploy:{env}", user, channel, team)
        if reason:
            await respond(response_type="ephemeral", replace_original=False, text=f":lock: {reason}")
            return
        command = commands.DeployCommand(target=job_id, env=env)
        try:
            await self._submit(
                command,
                f"/wasm deploy {job_id} --env {env}",
                user,
                channel,
                team,
                body.get("trigger_id"),
                respond,
            )
        except ValueError as exc:
            await respond(response_type="ephemeral", replace_original=False, text=f":warning: {exc}")

    # -- work ------------------------------------------------------------------------------

    async def _button(self, body: dict[str, Any], respond: AsyncRespond, action: str) -> None:
        from workers import pipeline

        job_id = body["actions"][0]["value"]
        user = body["user"]["id"]
        channel = (body.get("channel") or {}).get("id")
        organisation = body.get("enterprise") or {}
        team = workspace(
            (body.get("team") or {}).get("enterprise_id") or organisation.get("id"),
            (body.get("team") or {}).get("id") or body["user"].get("team_id"),
        )
        job = await asyncio.to_thread(self.store.get, job_id)
        if job is None:
            await respond(response_type="ephemeral", replace_original=False, text=f"no job {job_id}")
            return
        requester = job.requester.removeprefix("slack:")
        # Approving and denying act on an environment: "approve:ENV", checked like any other action.
        checked = (
            job.approval.get("action", "").replace("deploy:", "approve:")
            if action in ("approve", "deny")
            else action
        )
        reason = await self.allowed(
            checked, user, channel, team, requester=requester if action != "approve" else None
        )
        if reason:
            await respond(response_type="ephemeral", replace_original=False, text=f":lock: {reason}")
            return
        try:
            if action == "retry":
                await asyncio.to_thread(pipeline.retry, job_id)
            elif action == "approve":
                await asyncio.to_thread(pipeline.approve, job_id, f"slack:{user}")
            else:
                await asyncio.to_thread(pipeline.cancel, job_id, f"<@{user}>")
        except (KeyError, ValueError) as exc:
            await respond(response_type="ephemeral", replace_original=False, text=f":warning: {exc}")
            self.reporter.follow(job_id)  # an expired request changed the job: show it
            return
        self.reporter.follow(job_id)

    async def _cancel(self, job_id: str, user: str, channel: str | None, team: str | None) -> str:
        from workers import pipeline

        job = await asyncio.to_thread(self.store.get, job_id)
        if job is None:
            return f"no job {job_id}"
        requester = job.requester.removeprefix("slack:")
        reason = await self.allowed("cancel", user, channel, team, requester=requester)
        if reason:
            return f":lock: {reason}"
        try:
            await asyncio.to_thread(pipeline.cancel, job_id, f"<@{user}>")
        except ValueError as exc:
            return f":warning: {exc}"
        self.reporter.follow(job_id)
        return f"job `{job_id}` cancelled"

    async def _decide(
        self, command: commands.ApproveCommand, user: str, channel: str | None, team: str | None
    ) -> str:
        """``/wasm approve|deny JOB``: the same checks as the buttons."""
        from workers import pipeline

        job = await asyncio.to_thread(self.store.get, command.job)
        if job is None or not job.approval:
            return f"job {command.job} is not waiting for an approval"
        reason = await self.allowed(
            job.approval["action"].replace("deploy:", "approve:"),
            user,
            channel,
            team,
            requester=None if command.name == "approve" else job.requester.removeprefix("slack:"),
        )
        if reason:
            return f":lock: {reason}"
        try:
            if command.name == "approve":
                await asyncio.to_thread(pipeline.approve, command.job, f"slack:{user}")
            else:
                await asyncio.to_thread(pipeline.cancel, command.job, f"<@{user}>")
        except (KeyError, ValueError) as exc:
            return f":warning: {exc}"
        finally:
            self.reporter.follow(command.job)
        return f"job `{command.job}` {'approved' if command.name == 'approve' else 'turned down'}"

    async def _search(self, command: commands.SearchCommand) -> str:
        from bot.answers import search_text
        from workers.oci.registry import RegistryError

        try:
            return await asyncio.to_thread(search_text, self.settings, command)
        except RegistryError as exc:
            return f":warning: {exc}"

    async def _submit(
        self,
        command: commands.Command,
        text: str,
        user: str,
        channel: str | None,
        team: str | None,
        trigger: str | None,
        respond: AsyncRespond,
    ) -> None:
        from workers.pipeline import submit_once

        root = self.settings.chat_source_root
        Path(root).mkdir(parents=True, exist_ok=True)
        job, new = await asyncio.to_thread(
            submit_once,
            command,
            requester=f"slack:{user}",
            origin=f"slack:{team}:{channel}",
            text=text,
            source_root=str(root),
            dedupe_key=f"slack:{team}:{trigger}" if trigger else None,
        )
        if not new:
            return  # Slack sent this request again; the first delivery reports on the job
        with job_context(job.id):  # its lines, the library's included, name the job
            await self._post_job(job, channel, user, team, respond)

    async def _post_job(self, job: Job, channel: str | None, user: str, team: str | None,
                        respond: AsyncRespond) -> None:
        """The job's message, which the reporter then keeps up to date."""
        client = await self.client_for(team)
        try:
            posted = await client.chat_postMessage(
                channel=channel or user,
                text=blocks.summary(job),
                blocks=blocks.job_message(job, self.reporter.log_url(job)),
            )
        except Exception as exc:
            await respond(
                response_type="ephemeral",
                text=f"job `{job.id}` queued, but its message could not be posted here ({exc}); "
                "invite wasmbot to this channel to see its progress",
            )
            return
        where = {"team": team or "", "channel": str(posted["channel"]), "ts": str(posted["ts"])}

        def record(stored: Job) -> None:
            stored.reports["slack"] = where

        await asyncio.to_thread(self.store.update, job.id, record)
        self.reporter.follow(job.id)
