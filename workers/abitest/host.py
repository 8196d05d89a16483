"""Every proxy-wasm host function, on wasmtime, with Envoy's semantics.

Where the emulators (proxy-wasm test-framework, Go proxytest) differ from Envoy, this follows
Envoy and proxy-wasm-cpp-host: header keys lower-cased, NOT_FOUND for a missing header from
ABI 0.2.0 on (OK with an empty value in 0.1.0), results copied out through the guest's
allocator, only ``proxy_log``, ``fd_write``, ``clock_time_get`` and ``poll_oneoff`` allowed
while that allocator runs, the plugin configuration readable only during
``proxy_on_configure``, and ``HeaderMap::byteSize`` as the header map size.
"""

from __future__ import annotations

import math
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from workers.abitest.abi import (
    ALLOWED_DURING_ALLOCATION,
    Buffer,
    LogLevel,
    Map,
    MetricType,
    Status,
    Stream,
)
from workers.abitest.guest import AllocationFailed, Guest, InvalidMemory, deserialize_pairs, serialize_pairs
from workers.abitest.properties import (
    MISSING,
    STREAM_PROPERTIES,
    SerializationFailure,
    derived,
    merge,
    serialize,
    split_path,
    tree,
    walk,
)
from workers.abitest.state import Context, GrpcCall, HeaderMap, HttpCall, LocalResponse, Metric, Queue, World

MAX_LOG_LINES = 10_000
MAX_LOG_LINE = 4096
MAX_FOREIGN_OUTPUT = 64 * 2**20  # uncompress stops here: a zlib bomb must not fill the worker


class HostViolation(Exception):
    """The module broke a host rule that makes Envoy fail the callback."""


class OutOfTime(Exception):
    """A host call returned after the callback's wall-clock deadline (the guest is stopped)."""


class Refused(Exception):
    """A host function answers ``status`` without doing anything (raised deep, caught in wrap)."""

    def __init__(self, status: Status) -> None:
        super().__init__(status.name)
        self.status = status


@dataclass
class LogLine:
    level: int
    message: str
    context_id: int

    @property
    def level_name(self) -> str:
        return LogLevel(self.level).name.lower() if 0 <= self.level <= 5 else str(self.level)


@dataclass
class Callback:
    """What the callback being run may read besides its context: buffers, maps, status."""

    http_call: HttpCall | None = None
    http_response: tuple[HeaderMap, bytes, HeaderMap] | None = None
    grpc_metadata: dict[int, HeaderMap] = field(default_factory=dict)
    grpc_message: bytes | None = None
    foreign_args: bytes | None = None
    status: tuple[int, bytes] = (0, b"")


class Host:
    def __init__(self, guest: Guest, world: World, abi_version: str, *, vm_id: str,
                 vm_config: bytes, log_level: int = LogLevel.INFO,
                 properties: dict[str, object] | None = None,
                 clusters: frozenset[str] | None = None) -> None:
        self.guest = guest
        self.world = world
        self.abi = abi_version
        self.vm_id = vm_id
        self.vm_config = vm_config
        self.plugin_config = b""
        self.configuring = False
        self.log_level = log_level
        self.properties: dict[str, Any] = tree(properties or {})
        self.clusters = clusters
        self.contexts: dict[int, Context] = {}
        self.current: Context | None = None
        self.callback = Callback()
        self.logs: list[LogLine] = []
        self.logs_dropped = 0
        self.calls: Counter[str] = Counter()
        self.http_calls: list[HttpCall] = []
        self.grpc_calls: list[GrpcCall] = []
        self.queue_ready: list[tuple[int, int]] = []
        self.done_requests: list[int] = []
        self.allocation_failures: list[str] = []
        self.deadline = math.inf  # the running callback's, on time.monotonic(); set by the VM
        self._tokens = 0

    # -- plumbing ------------------------------------------------------------------------------

    def log(self, level: int, message: str) -> None:
        """Keep a log line; past ``MAX_LOG_LINES`` only count them (a chatty loop must not
        exhaust the worker's memory)."""
        if len(self.logs) >= MAX_LOG_LINES:
            self.logs_dropped += 1
            return
        self.logs.append(LogLine(level, message[:MAX_LOG_LINE], self.current.id if self.current else 0))

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """The guest-facing function: counts calls, enforces the allocator rule, maps errors,
        and stops the guest on return once the callback is past its deadline (the epoch ticker
        can lag while host calls hold the GIL).  Linked with ``fastcall.define``, which hands
        i32 arguments over unsigned: the ABI's are pointers, sizes and ids, which Envoy reads
        as unsigned (the Rust SDK passes usize::MAX as "the whole buffer").
        """
        calls, guest, allowed = self.calls, self.guest, name in ALLOWED_DURING_ALLOCATION
        monotonic = time.monotonic

        def call(cx: Any, *args: int) -> int:
            calls[name] += 1
            if guest.allocating and not allowed:
                raise HostViolation(
                    f"{name} was called while the host was inside the module's allocator "
                    f"({self.guest.allocator_name}); Envoy allows only "
                    f"{', '.join(sorted(ALLOWED_DURING_ALLOCATION))} there")
            try:
                result: int = fn(cx, *args)
            except Refused as exc:
                result = exc.status
            except InvalidMemory:
                result = Status.INVALID_MEMORY_ACCESS
            except AllocationFailed as exc:
                self.allocation_failures.append(f"{name}: {exc}")
                result = Status.INVALID_MEMORY_ACCESS
            if monotonic() > self.deadline:
                raise OutOfTime(name)
            return result
        return call

    def functions(self, names: list[str]) -> dict[str, Callable[..., Any]]:
        return {name: self.wrap(name, getattr(self, name)) for name in names}

    def _ctx(self) -> Context:
        if self.current is None:
            raise HostViolation("a host function was called outside any context")
        return self.current

    def _stream(self) -> Context | None:
        ctx = self._ctx()
        return ctx if ctx.parent else None

    def _root(self) -> Context:
        ctx = self._ctx()
        return self.contexts[ctx.parent] if ctx.parent else ctx

    def _bytes(self, cx: Any, ptr: int, size: int) -> bytes:
        return self.guest.read(cx, ptr, size)

    # -- logging, time, configuration --------------------------------------------------------------

    def proxy_log(self, cx: Any, level: int, ptr: int, size: int) -> int:
        if not 0 <= level <= 5:
            return Status.BAD_ARGUMENT
        if level >= self.log_level:  # Envoy drops lines below the configured level
            self.log(level, self.guest.string(cx, ptr, size))
        return Status.OK

    def proxy_get_log_level(self, cx: Any, ret: int) -> int:
        self.guest.put_u32(cx, ret, self.log_level)
        return Status.OK

    def proxy_get_current_time_nanoseconds(self, cx: Any, ret: int) -> int:
        self.guest.put_u64(cx, ret, self.world.now_ns())
        return Status.OK

    def proxy_set_tick_period_milliseconds(self, cx: Any, period: int) -> int:
        self._root().tick_period_ms = period
        return Status.OK

    def proxy_get_configuration(self, cx: Any, ptr_ptr: int, len_ptr: int) -> int:
        self.guest.copy_out(cx, self.plugin_config, ptr_ptr, len_ptr)
        return Status.OK

    def proxy_done(self, cx: Any) -> int:
        ctx = self._ctx()
        if ctx.id not in self.done_requests:
            return Status.NOT_FOUND
        self.done_requests.remove(ctx.id)
        ctx.done_called = True
        return Status.OK

    def proxy_set_effective_context(self, cx: Any, context_id: int) -> int:
        ctx = self.contexts.get(context_id)
        if ctx is None:
            return Status.BAD_ARGUMENT
        self.current = ctx
        return Status.OK

    # -- buffers -------------------------------------------------------------------------------------

    def _buffer(self, kind: int) -> tuple[bytes, bool] | None:
        """The buffer's bytes and end-of-stream flag, or None when Envoy has none right now."""
        if kind >= Buffer.VM_CONFIGURATION and self.abi == "0.1.0":
            return None
        stream = self._stream() if self.current else None
        if kind == Buffer.HTTP_REQUEST_BODY and stream:
            return stream.request.buffered, stream.request.end_of_stream
        if kind == Buffer.HTTP_RESPONSE_BODY and stream:
            return stream.response.buffered, stream.response.end_of_stream
        if kind == Buffer.HTTP_CALL_RESPONSE_BODY and self.callback.http_response:
            return self.callback.http_response[1], True
        if kind == Buffer.GRPC_CALL_MESSAGE and self.callback.grpc_message is not None:
            return self.callback.grpc_message, False
        if kind == Buffer.VM_CONFIGURATION:
            return self.vm_config, True
        if kind == Buffer.PLUGIN_CONFIGURATION and self.configuring:
            return self.plugin_config, True
        if kind == Buffer.FOREIGN_FUNCTION_ARGUMENTS and self.callback.foreign_args is not None:
            return self.callback.foreign_args, True
        return None

    def proxy_get_buffer_bytes(self, cx: Any, kind: int, start: int, size: int, ptr_ptr: int,
                               len_ptr: int) -> int:
        if kind > Buffer.FOREIGN_FUNCTION_ARGUMENTS:
            return Status.BAD_ARGUMENT
        buf = self._buffer(kind)
        if buf is None:
            return Status.NOT_FOUND
        # proxy-wasm-cpp-host's get_buffer_bytes (src/exports.cc, since #303 of Aug 2022, in
        # every Envoy since 1.24): a start past the end reads nothing, a read past the end is
        # clamped, and an empty result (length 0, or clamped to 0) answers OK with (0, 0)
        # written to the out-pointers and no allocation.  Before #303 a length of 0 wrote
        # nothing, and a start past the end wrapped ``size - start`` into a huge overread.
        self.guest.copy_out(cx, buf[0][start:start + size], ptr_ptr, len_ptr)
        return Status.OK

    def proxy_get_buffer_status(self, cx: Any, kind: int, len_ptr: int, flags_ptr: int) -> int:
        if kind > Buffer.FOREIGN_FUNCTION_ARGUMENTS:
            return Status.BAD_ARGUMENT
        buf = self._buffer(kind)
        if buf is None:
            return Status.NOT_FOUND
        self.guest.put_u32(cx, len_ptr, len(buf[0]))
        self.guest.put_u32(cx, flags_ptr, 1 if buf[1] else 0)
        return Status.OK

    def proxy_set_buffer_bytes(self, cx: Any, kind: int, start: int, size: int, ptr: int,
                               length: int) -> int:
        """Envoy's rules: (0, 0) prepends, (0, >= len) replaces, start >= len appends."""
        stream = self._stream()
        if stream is None or kind not in (Buffer.HTTP_REQUEST_BODY, Buffer.HTTP_RESPONSE_BODY):
            return Status.NOT_FOUND if kind <= Buffer.FOREIGN_FUNCTION_ARGUMENTS else Status.BAD_ARGUMENT
        direction = stream.request if kind == Buffer.HTTP_REQUEST_BODY else stream.response
        data, current = self._bytes(cx, ptr, length), direction.buffered
        if start == 0 and size == 0:
            direction.buffered = data + current
        elif start == 0 and size >= len(current):
            direction.buffered = data
        elif start >= len(current):
            direction.buffered = current + data
        else:
            return Status.BAD_ARGUMENT
        return Status.OK

    # -- header maps ---------------------------------------------------------------------------------

    def _map(self, kind: int) -> HeaderMap | None:
        stream = self.current
        if stream is not None and stream.parent and kind <= Map.RESPONSE_TRAILERS:
            direction = stream.request if kind <= Map.REQUEST_TRAILERS else stream.response
            return direction.trailers if kind & 1 else direction.headers
        if kind in (Map.GRPC_INITIAL_METADATA, Map.GRPC_TRAILING_METADATA):
            return self.callback.grpc_metadata.get(kind)
        if self.callback.http_response and kind == Map.HTTP_CALL_RESPONSE_HEADERS:
            return self.callback.http_response[0]
        if self.callback.http_response and kind == Map.HTTP_CALL_RESPONSE_TRAILERS:
            return self.callback.http_response[2]
        return None

    def _existing_map(self, kind: int) -> HeaderMap:
        """The map, or BAD_ARGUMENT as Envoy answers when it is not available right now."""
        m = self._map(kind)
        if m is None:
            raise Refused(Status.BAD_ARGUMENT)
        return m

    def proxy_get_header_map_size(self, cx: Any, kind: int, ret: int) -> int:
        m = self._existing_map(kind)
        self.guest.put_u32(cx, ret, m.byte_size())
        return Status.OK

    def proxy_get_header_map_pairs(self, cx: Any, kind: int, ptr_ptr: int, len_ptr: int) -> int:
        m = self._existing_map(kind)
        self.guest.copy_out(cx, serialize_pairs(m.pairs), ptr_ptr, len_ptr)
        return Status.OK

    def proxy_set_header_map_pairs(self, cx: Any, kind: int, ptr: int, size: int) -> int:
        m = self._existing_map(kind)
        try:
            pairs = deserialize_pairs(self._bytes(cx, ptr, size))
        except ValueError:
            return Status.BAD_ARGUMENT
        m.pairs = [(k.lower(), v) for k, v in pairs]
        return Status.OK

    def proxy_get_header_map_value(self, cx: Any, kind: int, kptr: int, klen: int, ptr_ptr: int,
                                   len_ptr: int) -> int:
        m = self._existing_map(kind)
        value = m.get(self._bytes(cx, kptr, klen))
        if value is None:
            if self.abi == "0.1.0":  # 0.1.0 answered OK with an empty value
                self.guest.copy_out(cx, b"", ptr_ptr, len_ptr)
                return Status.OK
            return Status.NOT_FOUND
        self.guest.copy_out(cx, value, ptr_ptr, len_ptr)
        return Status.OK

    def proxy_add_header_map_value(self, cx: Any, kind: int, kptr: int, klen: int, vptr: int,
                                   vlen: int) -> int:
        m = self._existing_map(kind)
        m.add(self._bytes(cx, kptr, klen), self._bytes(cx, vptr, vlen))
        return Status.OK

    def proxy_replace_header_map_value(self, cx: Any, kind: int, kptr: int, klen: int, vptr: int,
                                       vlen: int) -> int:
        m = self._existing_map(kind)
        m.replace(self._bytes(cx, kptr, klen), self._bytes(cx, vptr, vlen))
        return Status.OK

    def proxy_remove_header_map_value(self, cx: Any, kind: int, kptr: int, klen: int) -> int:
        m = self._existing_map(kind)
        m.remove(self._bytes(cx, kptr, klen))
        return Status.OK

    # -- stream control ----------------------------------------------------------------------------

    def _resume(self, kind: int) -> int:
        stream = self._stream()
        if stream is None:
            return Status.BAD_ARGUMENT
        if kind == Stream.HTTP_REQUEST:
            stream.request.resume()
        elif kind == Stream.HTTP_RESPONSE:
            stream.response.resume()
        else:
            return Status.BAD_ARGUMENT
        return Status.OK

    def proxy_continue_stream(self, cx: Any, kind: int) -> int:
        return self._resume(kind)

    def proxy_close_stream(self, cx: Any, kind: int) -> int:
        stream = self._stream()
        if stream is None or kind > Stream.UPSTREAM:
            return Status.BAD_ARGUMENT
        stream.closed.append(Stream(kind).name.lower())
        return Status.OK

    def proxy_continue_request(self, cx: Any) -> int:
        return self._resume(Stream.HTTP_REQUEST)

    def proxy_continue_response(self, cx: Any) -> int:
        return self._resume(Stream.HTTP_RESPONSE)

    def proxy_clear_route_cache(self, cx: Any) -> int:
        return Status.OK if self._stream() else Status.BAD_ARGUMENT

    def proxy_get_status(self, cx: Any, code_ptr: int, ptr_ptr: int, len_ptr: int) -> int:
        code, message = self.callback.status
        self.guest.put_u32(cx, code_ptr, code)
        self.guest.copy_out(cx, message, ptr_ptr, len_ptr)
        return Status.OK

    def proxy_send_local_response(self, cx: Any, code: int, dptr: int, dlen: int, bptr: int,
                                  blen: int, hptr: int, hlen: int, grpc_status: int) -> int:
        stream = self._stream()
        if stream is None:
            return Status.BAD_ARGUMENT
        try:
            headers = HeaderMap(deserialize_pairs(self._bytes(cx, hptr, hlen)))
        except ValueError:
            return Status.BAD_ARGUMENT
        stream.local_response = LocalResponse(
            code=code, details=self.guest.string(cx, dptr, dlen), body=self._bytes(cx, bptr, blen),
            headers=headers, grpc_status=grpc_status if grpc_status < 2**31 else grpc_status - 2**32)
        return Status.OK

    # -- callouts ------------------------------------------------------------------------------------

    def _token(self) -> int:
        self._tokens += 1
        return self._tokens

    def _cluster_known(self, upstream: str) -> bool:
        return self.clusters is None or upstream in self.clusters

    def proxy_http_call(self, cx: Any, up: int, uplen: int, hptr: int, hlen: int, bptr: int,
                        blen: int, tptr: int, tlen: int, timeout: int, token_ptr: int) -> int:
        upstream = self.guest.string(cx, up, uplen)
        try:
            headers = HeaderMap(deserialize_pairs(self._bytes(cx, hptr, hlen)))
            trailers = HeaderMap(deserialize_pairs(self._bytes(cx, tptr, tlen)))
        except ValueError:
            return Status.BAD_ARGUMENT
        if not self._cluster_known(upstream):
            return Status.BAD_ARGUMENT
        if any(headers.get(h) is None for h in (b":method", b":path", b":authority")):
            return Status.BAD_ARGUMENT  # Envoy refuses a call without these
        # cpp-host makes callouts on the root context and answers them there; SDKs remember
        # which stream asked and switch with proxy_set_effective_context.
        call = HttpCall(self._token(), self._root().id, upstream, headers, self._bytes(cx, bptr, blen),
                        trailers, timeout, caller=self._ctx().id)
        self.http_calls.append(call)
        self.guest.put_u32(cx, token_ptr, call.token)
        return Status.OK

    def _grpc(self, cx: Any, args: tuple[int, ...], message: bytes | None, timeout: int,
              token_ptr: int, stream: bool) -> int:
        up, uplen, sptr, slen, mptr, mlen, mdptr, mdlen = args
        upstream = self.guest.string(cx, up, uplen)
        try:
            metadata = HeaderMap(deserialize_pairs(self._bytes(cx, mdptr, mdlen)))
        except ValueError:
            return Status.BAD_ARGUMENT
        if not self._cluster_known(upstream):
            return Status.BAD_ARGUMENT
        call = GrpcCall(self._token(), self._root().id, upstream, self.guest.string(cx, sptr, slen),
                        self.guest.string(cx, mptr, mlen), metadata,
                        [message] if message is not None else [], timeout, stream, caller=self._ctx().id)
        self.grpc_calls.append(call)
        self.guest.put_u32(cx, token_ptr, call.token)
        return Status.OK

    def proxy_grpc_call(self, cx: Any, up: int, uplen: int, sptr: int, slen: int, mptr: int,
                        mlen: int, mdptr: int, mdlen: int, msgptr: int, msglen: int, timeout: int,
                        token_ptr: int) -> int:
        return self._grpc(cx, (up, uplen, sptr, slen, mptr, mlen, mdptr, mdlen),
                          self._bytes(cx, msgptr, msglen), timeout, token_ptr, stream=False)

    def proxy_grpc_stream(self, cx: Any, up: int, uplen: int, sptr: int, slen: int, mptr: int,
                          mlen: int, mdptr: int, mdlen: int, token_ptr: int) -> int:
        return self._grpc(cx, (up, uplen, sptr, slen, mptr, mlen, mdptr, mdlen), None, 0,
                          token_ptr, stream=True)

    def _grpc_call(self, token: int) -> GrpcCall | None:
        return next((c for c in self.grpc_calls if c.token == token and not c.closed), None)

    def proxy_grpc_send(self, cx: Any, token: int, ptr: int, size: int, end: int) -> int:
        call = self._grpc_call(token)
        if call is None or not call.stream:
            return Status.BAD_ARGUMENT if call else Status.NOT_FOUND
        call.messages.append(self._bytes(cx, ptr, size))
        return Status.OK

    def proxy_grpc_cancel(self, cx: Any, token: int) -> int:
        call = self._grpc_call(token)
        if call is None:
            return Status.NOT_FOUND
        call.closed = True
        return Status.OK

    proxy_grpc_close = proxy_grpc_cancel

    # -- shared data and queues -----------------------------------------------------------------

    def proxy_get_shared_data(self, cx: Any, kptr: int, klen: int, ptr_ptr: int, len_ptr: int,
                              cas_ptr: int) -> int:
        entry = self.world.shared.get(self._bytes(cx, kptr, klen))
        if entry is None:
            return Status.NOT_FOUND
        self.guest.copy_out(cx, entry[0], ptr_ptr, len_ptr)
        self.guest.put_u32(cx, cas_ptr, entry[1])
        return Status.OK

    def proxy_set_shared_data(self, cx: Any, kptr: int, klen: int, vptr: int, vlen: int,
                              cas: int) -> int:
        return self.world.shared.set(self._bytes(cx, kptr, klen), self._bytes(cx, vptr, vlen), cas)

    def proxy_register_shared_queue(self, cx: Any, nptr: int, nlen: int, id_ptr: int) -> int:
        name = self.guest.string(cx, nptr, nlen)
        owner = self._root().id
        queue = next((q for q in self.world.queues.values()
                      if q.vm_id == self.vm_id and q.name == name), None)
        if queue is None:
            queue = Queue(len(self.world.queues) + 1, self.vm_id, name, owner)
            self.world.queues[queue.id] = queue
        queue.owner = owner
        self.guest.put_u32(cx, id_ptr, queue.id)
        return Status.OK

    def proxy_resolve_shared_queue(self, cx: Any, vptr: int, vlen: int, nptr: int, nlen: int,
                                   id_ptr: int) -> int:
        vm_id, name = self.guest.string(cx, vptr, vlen), self.guest.string(cx, nptr, nlen)
        queue = next((q for q in self.world.queues.values()
                      if q.vm_id == vm_id and q.name == name), None)
        if queue is None:
            return Status.NOT_FOUND
        self.guest.put_u32(cx, id_ptr, queue.id)
        return Status.OK

    def _queue(self, queue_id: int) -> Queue:
        queue = self.world.queues.get(queue_id)
        if queue is None:
            raise Refused(Status.NOT_FOUND)
        return queue

    def proxy_enqueue_shared_queue(self, cx: Any, queue_id: int, ptr: int, size: int) -> int:
        queue = self._queue(queue_id)
        queue.items.append(self._bytes(cx, ptr, size))
        if queue.vm_id == self.vm_id:
            self.queue_ready.append((queue.owner, queue.id))
        return Status.OK

    def proxy_dequeue_shared_queue(self, cx: Any, queue_id: int, ptr_ptr: int, len_ptr: int) -> int:
        queue = self._queue(queue_id)
        if not queue.items:
            return Status.EMPTY
        self.guest.copy_out(cx, queue.items[0], ptr_ptr, len_ptr)
        queue.items.pop(0)
        return Status.OK

    # -- metrics ---------------------------------------------------------------------------------

    def proxy_define_metric(self, cx: Any, kind: int, nptr: int, nlen: int, id_ptr: int) -> int:
        if kind > MetricType.HISTOGRAM:
            return Status.BAD_ARGUMENT
        name = self.guest.string(cx, nptr, nlen)
        metric_id = next((i for i, m in self.world.metrics.items()
                          if m.name == name and m.type == kind), None)
        if metric_id is None:
            metric_id = len(self.world.metrics) + 1
            self.world.metrics[metric_id] = Metric(MetricType(kind), name)
        self.guest.put_u32(cx, id_ptr, metric_id)
        return Status.OK

    def _metric(self, metric_id: int) -> Metric:
        metric = self.world.metrics.get(metric_id)
        if metric is None:
            raise Refused(Status.NOT_FOUND)
        return metric

    def proxy_increment_metric(self, cx: Any, metric_id: int, offset: int) -> int:
        metric = self._metric(metric_id)
        if metric.type == MetricType.HISTOGRAM or (metric.type == MetricType.COUNTER and offset < 0):
            return Status.BAD_ARGUMENT
        metric.value += offset
        return Status.OK

    def proxy_record_metric(self, cx: Any, metric_id: int, value: int) -> int:
        metric = self._metric(metric_id)
        if metric.type == MetricType.COUNTER:
            metric.value += value
        elif metric.type == MetricType.GAUGE:
            metric.value = value
        else:
            metric.records.append(value)
        return Status.OK

    def proxy_get_metric(self, cx: Any, metric_id: int, ret: int) -> int:
        metric = self._metric(metric_id)
        if metric.type == MetricType.HISTOGRAM:
            return Status.BAD_ARGUMENT
        self.guest.put_u64(cx, ret, metric.value)
        return Status.OK

    # -- properties and foreign functions ----------------------------------------------------------

    def declare(self, properties: dict[str, object]) -> None:
        """The properties a case declares (dotted paths, nested mappings), replacing the last."""
        self.properties = tree(properties)

    def property(self, path: list[str]) -> Any:
        """The value at ``path`` as Envoy resolves it, or MISSING.

        Declared properties win over derived ones; a first segment neither declares nor
        derives is looked up in the stream's filter state under ``wasm.<name>``, where
        ``proxy_set_property`` keeps it.  Stream properties exist only on a stream context
        (Envoy's root context has no stream info).
        """
        if not path:
            raise SerializationFailure("an empty path")
        ctx = self.current
        stream = ctx if ctx is not None and ctx.parent else None
        top = path[0]
        if top in STREAM_PROPERTIES and stream is None:
            return MISSING
        value = merge(self._derived(top, stream), self.properties.get(top, MISSING))
        if value is MISSING and stream is not None:
            value = stream.filter_state.get(f"wasm.{top}", MISSING)
        return walk(value, path[1:]) if value is not MISSING else MISSING

    def _derived(self, top: str, stream: Context | None) -> Any:
        if top in ("plugin_name", "plugin_root_id"):
            return self._root().root_id if self.current else MISSING
        if top == "plugin_vm_id":
            return self.vm_id
        return derived(top, stream) if stream is not None else MISSING

    def proxy_get_property(self, cx: Any, pptr: int, plen: int, ptr_ptr: int, len_ptr: int) -> int:
        try:
            value = self.property(split_path(self._bytes(cx, pptr, plen)))
            if value is MISSING:
                return Status.NOT_FOUND
            data = serialize(value)
        except SerializationFailure:
            return Status.SERIALIZATION_FAILURE
        self.guest.copy_out(cx, data, ptr_ptr, len_ptr)
        return Status.OK

    def proxy_set_property(self, cx: Any, pptr: int, plen: int, vptr: int, vlen: int) -> int:
        """Envoy keeps the value as filter state ``wasm.<path>``, the whole path (NULs and all)
        as the key: readable back by a one-segment path or ``filter_state`` + ``wasm.<path>``."""
        stream = self._stream()
        if stream is None:
            return Status.NOT_FOUND  # no stream info on a root context
        path = self._bytes(cx, pptr, plen).decode("utf-8", "surrogateescape")
        stream.filter_state[f"wasm.{path}"] = self._bytes(cx, vptr, vlen)
        return Status.OK

    def proxy_call_foreign_function(self, cx: Any, nptr: int, nlen: int, aptr: int, alen: int,
                                    ptr_ptr: int, len_ptr: int) -> int:
        """Envoy's ``compress`` and ``uncompress`` (zlib); any other name is NOT_FOUND."""
        name, args = self.guest.string(cx, nptr, nlen), self._bytes(cx, aptr, alen)
        if name == "compress":
            result = zlib.compress(args)
        elif name == "uncompress":
            inflater = zlib.decompressobj()
            try:
                result = inflater.decompress(args, MAX_FOREIGN_OUTPUT)
            except zlib.error:
                return Status.SERIALIZATION_FAILURE
            if inflater.unconsumed_tail or not inflater.eof:
                self.log(LogLevel.ERROR, f"uncompress: output over {MAX_FOREIGN_OUTPUT >> 20} MiB, or the "
                                    "input is truncated; refused")
                return Status.SERIALIZATION_FAILURE
        else:
            return Status.NOT_FOUND
        self.guest.copy_out(cx, result, ptr_ptr, len_ptr)
        return Status.OK

