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
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from bot import permissions
from bot.dispatch import Reply, Request, Requester, Status, admit, dispatch, execute
from bot.httpbody import read_body
from bot.hublinks import job_links
from bot.markup import escape_mrkdwn
from bot.slack import blocks, deliveries
from bot.slack.reporter import Reporter
from bot.slack.workspaces import client_for, oauth_settings, workspace
from workers import commands
from workers.config import Settings
from workers.jobs import Job
from workers.logsetup import job_context
from workers.metrics import count_delivery_async
from workers.store import JobStore, open_store

log = logging.getLogger(__name__)
SUBMITTED = {spec.name for spec in commands.COMMANDS if spec.stages}  # commands that make a job
GROUP_CACHE_SECONDS = 300.0


def configured(settings: Settings) -> bool:
    """Slack is served only with a signing secret: never accept unverifiable requests."""
    return settings.slack_signing_secret is not None and (
        settings.slack_bot_token is not None or settings.slack_client_id is not None
    )


class SlackFrontEnd:
    def __init__(self, settings: Settings, store: JobStore | None = None) -> None:
        assert settings.slack_signing_secret is not None
        self.settings = settings
        self.store = store or open_store(settings)
        retry: list[AsyncRetryHandler] = [AsyncRateLimitErrorRetryHandler(max_retry_count=3)]
        token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
        self.client = AsyncWebClient(token=token, base_url=settings.slack_api_url, retry_handlers=retry)
        oauth = oauth_settings(settings, self.store)
        if oauth is not None:
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
        for action_id in (blocks.RETRY, blocks.CANCEL, blocks.APPROVE, blocks.DENY, blocks.DEPLOY):
            self.app.action(action_id)(self.on_button)
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
            await count_delivery_async(self.store, "slack", "invalid")
            return web.Response(status=exc.status, text=exc.text)
        except deliveries.Refused as refused:
            await count_delivery_async(self.store, "slack", refused.outcome)
            return web.Response(status=refused.status, text=f"{refused.reason}\n")
        outcome = await deliveries.outcome(self.store, bolt_request)
        await count_delivery_async(self.store, "slack", outcome)
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
        await self.store.close_async()

    async def client_for(self, key: str | None) -> AsyncWebClient:
        return await client_for(self.app, self.client, self.settings, key)

    # -- requests --------------------------------------------------------------------------

    def _request(self, command: commands.Command, text: str, user: str, channel: str | None,
                 team: str | None, trigger: str | None) -> Request:
        """A request from ``user`` in ``channel``: Slack user groups answer ``group:`` rules."""
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

        root = self.settings.chat_source_root
        Path(root).mkdir(parents=True, exist_ok=True)
        person = f"slack:{user}"
        requester = Requester("slack", person, permissions.Principal(person, channel), members=members)
        return Request(command, text, requester, origin=f"slack:{team}:{channel}", source_root=str(root),
                       dedupe_key=f"slack:{team}:{trigger}" if trigger else None)

    @staticmethod
    async def _checked(step: Awaitable[Reply | None], request: Request) -> Reply | None:
        """Fail closed when Slack cannot say who is in a user group, and say why."""
        try:
            reply: Reply | None = await step
            return reply
        except SlackApiError as exc:
            log.warning("permission check for %s failed: %s", request.command.name, exc.response.get("error"))
            answered = escape_mrkdwn(str(exc.response.get("error") or exc.response.status_code))
            return Reply(f"wasmbot could not check who may {request.command.name} (Slack answered "
                         f"{answered}); ask an admin",
                         Status.REFUSED)

    # -- listeners -------------------------------------------------------------------------

    async def on_command(self, ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        """``/wasm TEXT``: ``body`` is the slash command's payload."""
        text = body.get("text", "")
        try:
            parsed = commands.parse(text)
        except commands.CommandError as exc:
            await ack(response_type="ephemeral",
                      text=f":warning: {escape_mrkdwn(exc.message)}\nusage: `{escape_mrkdwn(exc.usage)}`")
            return
        user, channel = body["user_id"], body.get("channel_id")
        team = workspace(body.get("enterprise_id"), body.get("team_id"))
        request = self._request(parsed, f"/wasm {text}", user, channel, team, body.get("trigger_id"))
        refused = await self._checked(admit(self.settings, request), request)
        if refused:
            await ack(response_type="ephemeral", text=rendered(refused))
            return
        if isinstance(parsed, commands.HelpCommand):  # answered within the acknowledgement
            reply = await execute(self.settings, request)
            await ack(response_type="ephemeral", text=blocks.fallback(reply.text),
                      blocks=blocks.help_blocks(reply.text))
            return
        await ack()  # within Slack's 3 seconds; what follows may take longer
        try:
            answer = await self._checked(execute(self.settings, request), request)
            assert answer is not None
            await self._answer(request, answer, channel, user, team, respond)
        except Exception as exc:  # tell the caller; never leave them in silence
            log.exception("/wasm %s failed", parsed.name)
            await respond(response_type="ephemeral",
                          text=blocks.fallback(f":x: wasmbot could not do that: {escape_mrkdwn(str(exc))}"))

    async def on_mention(self, event: dict[str, Any], say: Any, body: dict[str, Any]) -> None:
        """``@wasmbot help`` in a channel: the same help, as a thread reply."""
        await say(text=escape_mrkdwn(commands.help_text("slack")), thread_ts=event.get("ts"))

    async def ignore(self) -> None:
        """Acknowledge and drop: an unanswered event would be sent again by Slack."""

    async def on_button(self, ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond,
                        action: dict[str, Any]) -> None:
        """Retry, Cancel, Approve, Deny, and *Deploy to ENV* on a pushed job: the same commands as
        typed ones, asked for by whoever clicked."""
        await ack()
        value = str(action.get("value") or "")
        job_id, _, env = value.partition(":")
        verb = str(action["action_id"]).removeprefix("wasmbot_")
        text = f"/wasm deploy {job_id} --env {env}" if verb == "deploy" else f"/wasm {verb} {job_id}"
        try:
            parsed = commands.parse(text)
        except commands.CommandError as exc:
            await respond(response_type="ephemeral", replace_original=False,
                          text=f":warning: {escape_mrkdwn(exc.message)}")
            return
        user = body["user"]["id"]
        channel = (body.get("channel") or {}).get("id")
        organisation = body.get("enterprise") or {}
        team = workspace(
            (body.get("team") or {}).get("enterprise_id") or organisation.get("id"),
            (body.get("team") or {}).get("id") or body["user"].get("team_id"),
        )
        request = self._request(parsed, text, user, channel, team, body.get("trigger_id"))
        reply = await self._checked(dispatch(self.settings, request), request)
        assert reply is not None
        if not reply.ok:
            await respond(response_type="ephemeral", replace_original=False, text=rendered(reply))
        await self._answer(request, reply, channel, user, team, respond, quiet=True)

    # -- replies ---------------------------------------------------------------------------

    async def _answer(self, request: Request, reply: Reply, channel: str | None, user: str,
                      team: str | None, respond: AsyncRespond, *, quiet: bool = False) -> None:
        """A new job gets its channel message (a redelivered request's job has it already); a job
        acted on has its message brought up to date; anything else is told to the caller alone
        (``quiet``: a button's success says nothing, its message changes)."""
        job = reply.job
        if job is not None and reply.ok and reply.new:  # a new job: its message
            with job_context(job.id):  # its lines, the library's included, name the job
                await self._post_job(job, channel, user, team, respond)
            return
        if job is not None and reply.ok and request.command.name in SUBMITTED:
            return
        if job is not None:
            self.reporter.follow(job.id)
        if not quiet:
            await respond(response_type="ephemeral", text=rendered(reply))

    async def _post_job(self, job: Job, channel: str | None, user: str, team: str | None,
                        respond: AsyncRespond) -> None:
        """The job's message, which the reporter then keeps up to date."""
        client = await self.client_for(team)
        try:
            posted = await client.chat_postMessage(
                channel=channel or user,
                text=blocks.summary(job),
                blocks=blocks.job_message(job, self.reporter.log_url(job),
                                          links=job_links(self.settings, job)),
            )
        except Exception as exc:
            await respond(
                response_type="ephemeral",
                text=f"job `{job.id}` queued, but its message could not be posted here "
                f"({escape_mrkdwn(str(exc))}); "
                "invite wasmbot to this channel to see its progress",
            )
            return
        where = {"team": team or "", "channel": str(posted["channel"]), "ts": str(posted["ts"])}

        def record(stored: Job) -> None:
            stored.reports["slack"] = where

        await asyncio.to_thread(self.store.update, job.id, record)
        self.reporter.follow(job.id)


def rendered(reply: Reply) -> str:
    """A reply as Slack shows it: a mark for refusals and failures, lists as code blocks (their
    text escaped: a reply's own text is escaped where dispatch writes user text into it), cut
    to what a message's text may hold."""
    mark = {Status.REFUSED: ":lock: ", Status.FAILED: ":warning: ", Status.USAGE: ":warning: "}
    text = mark.get(reply.status, "") + reply.text
    if reply.detail:
        text += ("\n" if text else "") + blocks.code(reply.detail, blocks.MAX_TEXT - len(text) - 1)
    return blocks.fallback(text)
