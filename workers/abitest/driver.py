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

from workers.abitest.abi import STREAM_ACTIONS, LogLevel, Map, envoy_status
from workers.abitest.cases import Case, Suite, pairs
from workers.abitest.guest import Guest
from workers.abitest.host import Callback, Host, LogLine
from workers.abitest.state import Context, Direction, GrpcCall, HeaderMap, HttpCall, World
from workers.abitest.validate import Validation
from workers.abitest.vm import VM, CallbackFailed, Limits
from workers.abitest.wasi import Wasi

MAX_SETTLE_ROUNDS = 100
_PHASES = [(side, phase) for side in ("request", "response") for phase in ("headers", "body", "trailers")]
_CALLBACKS = {(side, phase): f"proxy_on_{side}_{phase}" for side, phase in _PHASES}
_ACTIONS = {(side, phase): f"{side}_{phase}" for side, phase in _PHASES}


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
    waiting: str = ""  # the side the filter holds right now


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
    bad_actions: list[tuple[str, str]] = field(default_factory=list)  # (expected, got) per bad code
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
        self._between = Callback()  # what the host holds between callbacks (never changed)

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
        host = self.host
        host.current = ctx
        host.callback = callback or self._between
        try:
            return self.vm.call_if_exported(name, *args)
        except CallbackFailed:
            self.broken = True
            raise
        finally:
            host.callback = self._between

    def root_contexts(self) -> list[Context]:
        return [self.host.contexts[ctx_id] for ctx_id, _ in self.roots.values()]

    def new_context(self, root_id: str, parent: int) -> Context:
        ctx = Context(self.next_id, root_id, parent)
        self.next_id += 1
        self.host.contexts[ctx.id] = ctx
        return ctx

    def root(self, root_id: str, plugin_config: bytes) -> Context:
        """The root context for ``root_id`` with ``plugin_config``.

        Envoy (proxy-wasm-cpp-host) keys root contexts by root id *and* plugin configuration:
        a new configuration gets a new root context (``proxy_on_context_create``,
        ``proxy_on_vm_start``, ``proxy_on_configure``), never a second ``proxy_on_configure``
        on the old one, which is shut down once the update has drained.  A filter that keeps
        state from its previous configuration must not pass here when Envoy would not run it so.
        """
        if root_id in self.roots:
            ctx_id, config = self.roots[root_id]
            if config == plugin_config:
                return self.host.contexts[ctx_id]
            del self.roots[root_id]
            self._shut_down(self.host.contexts[ctx_id])
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
        return [root_id for root_id, (ctx_id, _) in self.roots.items()
                if not self._shut_down(self.host.contexts[ctx_id])]

    def _shut_down(self, ctx: Context) -> bool:
        """``proxy_on_done`` then ``proxy_on_delete``; False when the root asked Envoy to wait."""
        finished = True
        if self.call(ctx, "proxy_on_done", ctx.id) == 0 and not ctx.done_called:
            self.host.done_requests.append(ctx.id)
            finished = False
        self.call(ctx, "proxy_on_delete", ctx.id)
        return finished

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
    """One case on one instance: drives its HTTP streams on a virtual clock and answers callouts.

    Time is virtual and advances only by ticks: the case lasts ``ticks`` tick periods of its
    root context, and every root context with a tick period gets ``proxy_on_tick`` on its own
    schedule, paused streams or not.  The streams start after ``start_after_ticks`` ticks and
    run between ticks until each has finished or waits for the filter to continue it.  With
    ``streams: N`` the streams are interleaved callback by callback (every stream's request
    headers, then the next step of each, ...), as concurrent requests reach a worker's VM; each
    stream gets its own copy of the case's callout answers.
    """

    def __init__(self, inst: Instance, case: Case) -> None:
        self.inst = inst
        self.case = case
        self.out = Outcome(case=case, host=inst.host)
        # callout answers per stream context id; 0 holds those for root-context callouts
        self.answers: dict[int, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {
            0: (list(case.http_answers), list(case.grpc_answers))}
        self.running: list[tuple[StreamOutcome, Iterator[bool]]] = []
        self.first_log = len(inst.host.logs)
        self.first_http = len(inst.host.http_calls)
        self.first_grpc = len(inst.host.grpc_calls)
        inst.host.declare(case.properties)  # the suite's, with the case's own on top

    def run(self) -> Outcome:
        host = self.inst.host
        try:
            root = self.inst.root(self.case.root_id, self.case.plugin_config)
            self.settle()
            for ticks in range(self.case.ticks + 1):
                if ticks == self.case.start_after_ticks:
                    self.start_streams(root)
                self.run_streams()
                if ticks == self.case.ticks:
                    break
                if not self.tick(root):
                    self.out.notes.append(f"the case asks for {self.case.ticks} tick(s) but the filter "
                                          "set no tick period; Envoy never calls proxy_on_tick then")
                    if ticks < self.case.start_after_ticks:
                        self.start_streams(root)
                        self.run_streams()
                    break
            for s, _ in self.running:
                self.stall(s)
            for s in self.out.streams:
                ctx = s.context
                self.inst.call(ctx, "proxy_on_done", ctx.id)
                self.inst.call(ctx, "proxy_on_log", ctx.id)
                self.inst.call(ctx, "proxy_on_delete", ctx.id)
                del host.contexts[ctx.id]  # gone for proxy_set_effective_context, as in Envoy
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

    # -- time ------------------------------------------------------------------------------------

    def next_tick(self, ctx: Context) -> int | None:
        """When ``ctx``'s timer fires next: one period after the filter set (or changed) it."""
        if not ctx.tick_period_ms:
            ctx.next_tick_ns = None
        elif ctx.next_tick_ns is None or ctx.scheduled_period_ms != ctx.tick_period_ms:
            ctx.next_tick_ns = self.inst.host.world.elapsed_ns + ctx.tick_period_ms * 1_000_000
            ctx.scheduled_period_ms = ctx.tick_period_ms
        return ctx.next_tick_ns

    def tick(self, root: Context) -> bool:
        """Advance the virtual clock to ``root``'s next tick, firing every root context's ticks
        due until then in time order; False if ``root`` has no tick period."""
        world = self.inst.host.world
        while True:
            if self.next_tick(root) is None:  # none set, or a callback turned it off
                return False
            due = [(t, ctx.id) for ctx in self.inst.root_contexts() if (t := self.next_tick(ctx)) is not None]
            when, ctx_id = min(due)
            ctx = self.inst.host.contexts[ctx_id]
            world.elapsed_ns = when
            ctx.next_tick_ns = when + ctx.tick_period_ms * 1_000_000
            self.inst.call(ctx, "proxy_on_tick", ctx.id)
            self.settle()
            self.run_streams()
            if ctx is root:
                return True

    # -- the HTTP streams ------------------------------------------------------------------------

    def start_streams(self, root: Context) -> None:
        for _ in range(self.case.streams):
            ctx = self.inst.new_context(root.root_id, root.id)
            s = StreamOutcome(ctx)
            self.out.streams.append(s)
            self.answers[ctx.id] = (list(self.case.http_answers), list(self.case.grpc_answers))
            self.inst.call(ctx, "proxy_on_context_create", ctx.id, root.id)
            self.running.append((s, self.stream(s)))

    def run_streams(self) -> None:
        """Round robin, one callback of each stream and then callouts answered, until every
        stream has finished or waits for the filter to continue it."""
        while self.running:
            progressed = False
            for entry in list(self.running):
                step = next(entry[1], None)
                if step is None:
                    self.running.remove(entry)
                progressed |= step is not False
            if not self.settle() and not progressed:
                return

    def stall(self, s: StreamOutcome) -> None:
        """The case is over and ``s`` is still stopped: Envoy would hold it until it times out."""
        side = s.stalled = s.waiting
        d = s.context.request if side == "request" else s.context.response
        which = f"stream {self.out.streams.index(s) + 1}: " if len(self.out.streams) > 1 else ""
        last = list(d.actions)[-1] if d.actions else f"{side}_headers"
        self.out.notes.append(
            f"{which}the {side} stayed paused after {last} and the filter never called "
            f"proxy_continue_stream; Envoy would hold it until the stream times out")

    def stream(self, s: StreamOutcome) -> Iterator[bool]:
        """Drive one stream: yields True after each callback, False while the filter holds it."""
        ctx, req = s.context, self.case.request
        yield from self.direction(s, ctx.request, "request", req.headers, req.body, req.trailers)
        if ctx.local_response is not None:
            lr = ctx.local_response  # nothing reached the upstream; the reply goes back
            headers = [(b":status", str(lr.code).encode()), *lr.headers.pairs]
            yield from self.direction(s, ctx.response, "response", headers, [lr.body] if lr.body else [], [])
        else:
            s.upstream = Delivered(ctx.request.headers, ctx.request.forwarded, ctx.request.trailers)
            resp = self.case.response
            yield from self.direction(s, ctx.response, "response", resp.headers, resp.body, resp.trailers)
        s.client = Delivered(ctx.response.headers, ctx.response.forwarded, ctx.response.trailers)

    def direction(self, s: StreamOutcome, d: Direction, side: str, headers: list[tuple[bytes, bytes]],
                  body: list[bytes], trailers: list[tuple[bytes, bytes]]) -> Generator[bool, None, None]:
        """One direction as Envoy runs it (cpp-host's default for ABI 0.2): a stop from the
        headers holds the body and trailers until the filter continues the stream, then the body
        that arrived meanwhile comes in one callback; a paused body is buffered while the next
        chunks still arrive; the direction is done once nothing holds it.  The request side
        also ends at a local response."""
        ctx = s.context
        d.headers = HeaderMap(headers)
        header_args: tuple[int, ...] = (ctx.id, len(d.headers))
        if self.inst.abi != "0.1.0":
            header_args += (int(not body and not trailers),)
        d.end_of_stream = not body and not trailers
        self.step(ctx, d, side, "headers", *header_args)
        yield True
        held = d.paused
        yield from self.hold(s, d, side)
        chunks = [b"".join(body)] if held and body else body
        for i, chunk in enumerate(chunks):
            if self.replied(ctx, side):
                return
            d.buffered += chunk
            d.end_of_stream = i == len(chunks) - 1 and not trailers
            self.step(ctx, d, side, "body", ctx.id, len(d.buffered), int(d.end_of_stream))
            yield True
        if trailers and not self.replied(ctx, side):
            d.trailers = HeaderMap(trailers)
            d.end_of_stream = True
            self.step(ctx, d, side, "trailers", ctx.id, len(d.trailers))
            yield True
        yield from self.hold(s, d, side)

    def hold(self, s: StreamOutcome, d: Direction, side: str) -> Iterator[bool]:
        """Wait while the filter holds ``d`` (the request side also ends at a local response)."""
        while d.paused and not self.replied(s.context, side):
            s.waiting = side
            yield False
        s.waiting = ""

    def step(self, ctx: Context, d: Direction, side: str, phase: str, *args: int) -> None:
        """Run one stream callback and apply what it returned (a callback not exported
        continues, as in cpp-host)."""
        d.continued = False
        result = self.inst.call(ctx, _CALLBACKS[side, phase], *args)
        code = 0 if result is None else result & 0xFFFFFFFF
        known = STREAM_ACTIONS[self.inst.abi][phase]
        if result is not None:
            d.actions[_ACTIONS[side, phase]] = ("continue" if code == 0 else "pause") if code in known \
                else f"unknown action {code}"
        if code not in known:
            listed = ", ".join(f"{c} {name}" for c, name in known.items())
            self.out.bad_actions.append((
                f"one of ABI {self.inst.abi}'s {phase.removesuffix('s')} actions ({listed})",
                f"proxy_on_{side}_{phase} returned {code} (Envoy reads it as {envoy_status(phase, code)})"))
        d.paused = code != 0 and not d.continued
        self.flush(d)

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

    def settle(self) -> bool:
        """Answer pending callouts and queue notifications, then send on what is not paused;
        True if there was anything to answer (False after the cap: a filter that answers every
        notification with another must not keep the case running)."""
        host = self.inst.host
        answered = 0
        while answered < MAX_SETTLE_ROUNDS:
            # Calls are answered first to last, so an answered last call means all are.
            https, grpcs = host.http_calls, host.grpc_calls
            call = next(c for c in https if not c.answered) if https and not https[-1].answered else None
            grpc = next(g for g in grpcs if not g.answered) if grpcs and not grpcs[-1].answered else None
            if call is not None:
                self.answer_http(call)
            elif grpc is not None:
                self.answer_grpc(grpc)
            elif host.queue_ready:
                owner, queue_id = host.queue_ready.pop(0)
                self.inst.call(host.contexts[owner], "proxy_on_queue_ready", owner, queue_id)
            else:
                break
            answered += 1
        else:
            self.out.notes.append(f"callouts and queue notifications did not settle after "
                                  f"{MAX_SETTLE_ROUNDS} rounds (each answer made another call)")
        for s in self.out.streams:
            self.flush(s.context.request)
            self.flush(s.context.response)
        return 0 < answered < MAX_SETTLE_ROUNDS

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
