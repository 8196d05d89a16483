"""The lifecycle driver: run a suite of cases through a module the way Envoy would.

VM start: ``_initialize`` (or ``_start``), then for each root id a root context with
``proxy_on_vm_start`` and ``proxy_on_configure``.  Each case then gets a fresh HTTP context:
request headers, body chunks and trailers, the upstream's response the same way, callouts
answered from the case between callbacks, and ``proxy_on_done``/``_log``/``_delete``.  A
callback that fails takes its VM down with it (as in Envoy); the next case gets a new VM.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

import wasmtime

from workers.abitest.abi import Action, LogLevel, Map
from workers.abitest.cases import Case, Suite, pairs
from workers.abitest.guest import Guest
from workers.abitest.host import Callback, Host, LogLine
from workers.abitest.state import Context, Direction, GrpcCall, HeaderMap, HttpCall, World, action_name
from workers.abitest.validate import Validation
from workers.abitest.vm import VM, CallbackFailed, Limits
from workers.abitest.wasi import Wasi

MAX_SETTLE_ROUNDS = 100


@dataclass
class Delivered:
    """What one side received: the upstream (request) or the client (response)."""

    headers: HeaderMap | None = None
    body: bytes = b""
    trailers: HeaderMap | None = None


@dataclass
class StreamOutcome:
    """One HTTP stream of a case: what reached the upstream and the client, where it stopped."""

    context: Context
    upstream: Delivered = field(default_factory=Delivered)
    client: Delivered = field(default_factory=Delivered)
    stalled: str | None = None


@dataclass
class Outcome:
    case: Case
    failure: CallbackFailed | None = None
    streams: list[StreamOutcome] = field(default_factory=list)
    logs: list[LogLine] = field(default_factory=list)
    http_calls: list[HttpCall] = field(default_factory=list)
    grpc_calls: list[GrpcCall] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    allocation_failures: list[str] = field(default_factory=list)
    host: Host | None = None


class Instance:
    """A started VM: the module instantiated with its host and its root contexts created."""

    def __init__(self, module: wasmtime.Module, validation: Validation, suite: Suite,
                 limits: Limits, world: World) -> None:
        assert validation.abi_version and validation.allocator
        self.abi = validation.abi_version
        self.guest = Guest()
        self.host = Host(self.guest, world, self.abi, vm_id="wasmbot-test",
                         vm_config=suite.vm_config, log_level=LogLevel[suite.log_level.upper()],
                         properties=suite.properties, clusters=suite.clusters)
        self.wasi = Wasi(self.guest, self.host.log, world.now_ns)
        self.vm = VM(module, self.host, self.wasi, self.guest, validation.allocator, limits)
        self.roots: dict[str, tuple[int, bytes]] = {}  # root id -> (context id, plugin config)
        self.next_id = 1
        self.broken = False
        self.started = False

    def start(self) -> None:
        for name in ("_initialize", "_start"):
            if self.vm.has(name):
                self.vm.call(name)
                break
        self.started = True

    def call(self, ctx: Context, name: str, *args: int, callback: Callback | None = None) -> int | None:
        """Run callback ``name`` in ``ctx`` if the module exports it (Envoy skips missing ones)."""
        if not self.vm.has(name):
            return None
        self.host.current = ctx
        self.host.callback = callback or Callback()
        try:
            return self.vm.call(name, *args)
        except CallbackFailed:
            self.broken = True
            raise
        finally:
            self.host.callback = Callback()

    def new_context(self, root_id: str, parent: int) -> Context:
        ctx = Context(self.next_id, root_id, parent)
        self.next_id += 1
        self.host.contexts[ctx.id] = ctx
        return ctx

    def root(self, root_id: str, plugin_config: bytes) -> Context:
        """The root context for ``root_id``, started or reconfigured with ``plugin_config``."""
        if root_id in self.roots:
            ctx_id, config = self.roots[root_id]
            ctx = self.host.contexts[ctx_id]
            if config != plugin_config:
                self._configure(ctx, plugin_config)
                self.roots[root_id] = (ctx_id, plugin_config)
            return ctx
        ctx = self.new_context(root_id, 0)
        self.call(ctx, "proxy_on_context_create", ctx.id, 0)
        ok = self.call(ctx, "proxy_on_vm_start", ctx.id, len(self.host.vm_config))
        if ok == 0:
            self.broken = True
            raise CallbackFailed("proxy_on_vm_start", "returned false: Envoy fails the VM and "
                                 "the plugin never runs")
        self._configure(ctx, plugin_config)
        self.roots[root_id] = (ctx.id, plugin_config)
        return ctx

    def stop(self) -> list[str]:
        """Shut the VM down as Envoy does: ``proxy_on_done`` then ``proxy_on_delete`` per root.

        Returns the root ids whose ``proxy_on_done`` answered false (they would make Envoy
        wait for ``proxy_done``).
        """
        waiting = []
        for root_id, (ctx_id, _) in self.roots.items():
            ctx = self.host.contexts[ctx_id]
            if self.call(ctx, "proxy_on_done", ctx.id) == 0 and not ctx.done_called:
                self.host.done_requests.append(ctx.id)
                waiting.append(root_id)
            self.call(ctx, "proxy_on_delete", ctx.id)
        return waiting

    def _configure(self, ctx: Context, plugin_config: bytes) -> None:
        self.host.plugin_config = plugin_config
        self.host.configuring = True
        try:
            ok = self.call(ctx, "proxy_on_configure", ctx.id, len(plugin_config))
        finally:
            self.host.configuring = False
        if ok == 0:
            self.broken = True
            raise CallbackFailed("proxy_on_configure", "returned false: Envoy rejects this plugin "
                                 "configuration and the filter is not installed")


class CaseRun:
    """One case on one instance: drives its HTTP streams and answers callouts.

    With ``streams: N`` the case's N streams are interleaved callback by callback (every
    stream's request headers, then the next step of each, ...), as concurrent requests reach a
    worker's VM; each stream gets its own copy of the case's callout answers.
    """

    def __init__(self, inst: Instance, case: Case) -> None:
        self.inst = inst
        self.case = case
        self.out = Outcome(case=case, host=inst.host)
        # callout answers per stream context id; 0 holds those for root-context callouts
        self.answers: dict[int, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {
            0: (list(case.http_answers), list(case.grpc_answers))}
        self.first_log = len(inst.host.logs)
        self.first_http = len(inst.host.http_calls)
        self.first_grpc = len(inst.host.grpc_calls)
        inst.host.declare(case.properties)  # the suite's, with the case's own on top

    def run(self) -> Outcome:
        host = self.inst.host
        try:
            root = self.inst.root(self.case.root_id, self.case.plugin_config)
            self.settle()
            if self.case.ticks and not root.tick_period_ms:
                self.out.notes.append(f"the case asks for {self.case.ticks} tick(s) but the filter "
                                      "set no tick period; Envoy never calls proxy_on_tick then")
            for _ in range(self.case.ticks if root.tick_period_ms else 0):
                self.inst.call(root, "proxy_on_tick", root.id)
                self.settle()
            for _ in range(self.case.streams):
                ctx = self.inst.new_context(root.root_id, root.id)
                self.out.streams.append(StreamOutcome(ctx))
                self.answers[ctx.id] = (list(self.case.http_answers), list(self.case.grpc_answers))
                self.inst.call(ctx, "proxy_on_context_create", ctx.id, root.id)
            running = [self.stream(s) for s in self.out.streams]
            while running:  # round robin: one callback of each stream, then answer callouts
                for steps in list(running):
                    if next(steps, None) is None:
                        running.remove(steps)
                self.settle()
            for s in self.out.streams:
                ctx = s.context
                self.inst.call(ctx, "proxy_on_done", ctx.id)
                self.inst.call(ctx, "proxy_on_log", ctx.id)
                self.inst.call(ctx, "proxy_on_delete", ctx.id)
            self.settle()
        except CallbackFailed as exc:
            self.out.failure = exc
        self.out.logs = host.logs[self.first_log:]
        del host.logs[self.first_log:]  # each case's lines stay with its outcome
        if host.logs_dropped:
            self.out.notes.append(f"{host.logs_dropped} more log lines were dropped (the limit is "
                                  f"{len(self.out.logs)} per case)")
            host.logs_dropped = 0
        self.out.http_calls = host.http_calls[self.first_http:]
        self.out.grpc_calls = host.grpc_calls[self.first_grpc:]
        self.out.allocation_failures = list(host.allocation_failures)
        host.allocation_failures.clear()
        return self.out

    # -- the HTTP stream ---------------------------------------------------------------------

    def stream(self, s: StreamOutcome) -> Iterator[bool]:
        """Drive one stream, yielding after every callback."""
        ctx, req = s.context, self.case.request
        ended = yield from self.direction(s, ctx.request, "request", req.headers, req.body, req.trailers)
        if ctx.local_response is not None:
            lr = ctx.local_response  # nothing reached the upstream; the reply goes back
            headers = [(b":status", str(lr.code).encode()), *lr.headers.pairs]
            yield from self.direction(s, ctx.response, "response", headers, [lr.body] if lr.body else [], [])
        elif ended:
            return
        else:
            s.upstream = Delivered(ctx.request.headers, ctx.request.forwarded, ctx.request.trailers)
            resp = self.case.response
            yield from self.direction(s, ctx.response, "response", resp.headers, resp.body, resp.trailers)
        s.client = Delivered(ctx.response.headers, ctx.response.forwarded, ctx.response.trailers)

    def direction(self, s: StreamOutcome, d: Direction, side: str, headers: list[tuple[bytes, bytes]],
                  body: list[bytes], trailers: list[tuple[bytes, bytes]]) -> Generator[bool, None, bool]:
        """Run one direction, yielding after each callback so that callouts can be answered
        (the caller settles them, for every stream, between rounds); returns True when the
        stream ended here (stalled, or a local response)."""
        ctx = s.context
        d.headers = HeaderMap(headers)
        header_args: tuple[int, ...] = (ctx.id, len(d.headers))
        if self.inst.abi != "0.1.0":
            header_args += (int(not body and not trailers),)
        d.end_of_stream = not body and not trailers
        self.step(ctx, d, f"{side}_headers", *header_args)
        yield True
        if self.replied(ctx, side):
            return True
        for i, chunk in enumerate(body):
            d.buffered += chunk
            d.end_of_stream = i == len(body) - 1 and not trailers
            self.step(ctx, d, f"{side}_body", ctx.id, len(d.buffered), int(d.end_of_stream))
            yield True
            if self.replied(ctx, side):
                return True
        if trailers:
            d.trailers = HeaderMap(trailers)
            d.end_of_stream = True
            self.step(ctx, d, f"{side}_trailers", ctx.id, len(d.trailers))
            yield True
            if self.replied(ctx, side):
                return True
        if d.paused:
            s.stalled = side
            which = f"stream {self.out.streams.index(s) + 1}: " if len(self.out.streams) > 1 else ""
            self.out.notes.append(
                f"{which}the {side} stayed paused after {list(d.actions)[-1]} and the filter never "
                f"called proxy_continue_stream; Envoy would hold it until the stream times out")
            return True
        return False

    def step(self, ctx: Context, d: Direction, phase: str, *args: int) -> None:
        """Run one stream callback and record what it returned."""
        result = self.inst.call(ctx, f"proxy_on_{phase}", *args)
        if result is not None:
            d.actions[phase] = action_name(result)
            d.paused = result == Action.PAUSE

    @staticmethod
    def replied(ctx: Context, side: str) -> bool:
        """A local response ends the request side (it may come from a callout's answer)."""
        return side == "request" and ctx.local_response is not None

    @staticmethod
    def flush(d: Direction) -> None:
        if not d.paused and d.buffered:
            d.forwarded += d.buffered
            d.buffered = b""

    # -- callouts and queues, answered between callbacks ------------------------------------------

    def settle(self) -> None:
        """Answer pending callouts and queue notifications, then send on what is not paused."""
        host = self.inst.host
        for _ in range(MAX_SETTLE_ROUNDS):
            call = next((c for c in host.http_calls if not c.answered), None)
            grpc = next((g for g in host.grpc_calls if not g.answered), None)
            if call is not None:
                self.answer_http(call)
            elif grpc is not None:
                self.answer_grpc(grpc)
            elif host.queue_ready:
                owner, queue_id = host.queue_ready.pop(0)
                self.inst.call(host.contexts[owner], "proxy_on_queue_ready", owner, queue_id)
            else:
                break
        else:
            self.out.notes.append(f"callouts and queue notifications did not settle after "
                                  f"{MAX_SETTLE_ROUNDS} rounds (each answer made another call)")
        for s in self.out.streams:
            self.flush(s.context.request)
            self.flush(s.context.response)

    def _take(self, answers: list[dict[str, Any]], upstream: str) -> dict[str, Any] | None:
        for i, answer in enumerate(answers):
            if answer.get("upstream") in (None, upstream):
                return answers.pop(i)
        return None

    def _answers(self, caller: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return self.answers.get(caller, self.answers[0])

    def answer_http(self, call: HttpCall) -> None:
        call.answered = True
        answer = self._take(self._answers(call.caller)[0], call.upstream)
        ctx = self.inst.host.contexts[call.context_id]
        if answer is None or answer.get("fail"):
            if answer is None:
                self.out.notes.append(f"HTTP callout to {call.upstream!r} has no answer in the case; "
                                      "answered as a failure, as Envoy does on timeout")
            self.inst.call(ctx, "proxy_on_http_call_response", ctx.id, call.token, 0, 0, 0)
            return
        headers = HeaderMap(pairs(answer.get("headers", {":status": "200"})))
        trailers = HeaderMap(pairs(answer.get("trailers")))
        body = str(answer.get("body", "")).encode()
        self.inst.call(ctx, "proxy_on_http_call_response", ctx.id, call.token, len(headers),
                       len(body), len(trailers),
                       callback=Callback(http_call=call, http_response=(headers, body, trailers)))

    def answer_grpc(self, call: GrpcCall) -> None:
        call.answered = True
        answer = self._take(self._answers(call.caller)[1], call.upstream) or {"status": 14,
                                                                   "status_message": "unavailable"}
        ctx = self.inst.host.contexts[call.context_id]
        t = call.token
        if "initial_metadata" in answer:
            md = HeaderMap(pairs(answer["initial_metadata"]))
            self.inst.call(ctx, "proxy_on_grpc_receive_initial_metadata", ctx.id, t, len(md),
                           callback=Callback(grpc_metadata={Map.GRPC_INITIAL_METADATA: md}))
        for message in answer.get("messages", []):
            data = str(message).encode()
            self.inst.call(ctx, "proxy_on_grpc_receive", ctx.id, t, len(data),
                           callback=Callback(grpc_message=data))
        if "trailing_metadata" in answer:
            md = HeaderMap(pairs(answer["trailing_metadata"]))
            self.inst.call(ctx, "proxy_on_grpc_receive_trailing_metadata", ctx.id, t, len(md),
                           callback=Callback(grpc_metadata={Map.GRPC_TRAILING_METADATA: md}))
        status = int(answer.get("status", 0))
        call.closed = True
        self.inst.call(ctx, "proxy_on_grpc_close", ctx.id, t, status,
                       callback=Callback(status=(status, str(answer.get("status_message", "")).encode())))
