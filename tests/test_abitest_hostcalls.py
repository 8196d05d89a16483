"""Every proxy-wasm host function, called from a real guest: result code and guest-visible data.

Each test registers the host functions it covers; the first test checks that together they
cover every host function of ABI 0.1.0, 0.2.0 and 0.2.1.
"""

from __future__ import annotations

import ctypes
import struct
import zlib
from collections.abc import Callable

import pytest
from wasmguest import OUT, Harness

from workers.abitest import abi
from workers.abitest.abi import Buffer, Map, Status
from workers.abitest.state import HeaderMap
from workers.abitest.vm import CallbackFailed

COVERED: dict[str, Callable[[], None]] = {}
P, L, X, Y = OUT


def covers(*names: str) -> Callable[[Callable[[], None]], Callable[[], None]]:
    def register(fn: Callable[[], None]) -> Callable[[], None]:
        for name in names:
            COVERED[name] = fn
        return fn
    return register


def test_every_host_function_has_a_test() -> None:
    assert sorted(COVERED) == abi.ALL_HOST_FUNCTIONS


# -- logging, time, configuration ---------------------------------------------------------------

@covers("proxy_log")
def test_log_records_level_and_message_and_checks_arguments() -> None:
    h = Harness("proxy_log")
    ptr, n = h.put("héllo")
    assert h.call(3, ptr, n) == Status.OK
    assert [(line.level_name, line.message, line.context_id) for line in h.host.logs] == [("warn", "héllo", 2)]
    assert h.call(1, ptr, n) == Status.OK  # below the default level (info): dropped, as Envoy does
    assert len(h.host.logs) == 1
    assert h.call(9, ptr, n) == Status.BAD_ARGUMENT
    assert h.call(2, 10**8, 4) == Status.INVALID_MEMORY_ACCESS


def test_host_calls_see_memory_the_guest_grew_since_the_last_one() -> None:
    h = Harness("proxy_log")
    ptr, n = h.put("before")
    assert h.call(2, ptr, n) == Status.OK
    memory = h.vm.guest.memory
    assert memory is not None
    base = ctypes.addressof(memory.data_ptr(h.vm.store).contents)
    pages = memory.grow(h.vm.store, 64)  # 4 MiB more, past the length the host knew
    assert ctypes.addressof(memory.data_ptr(h.vm.store).contents) == base  # the host keeps the base
    far = pages * 65536 + 1000
    h.vm.guest.write(h.vm.store, far, b"after")
    assert h.call(2, far, 5) == Status.OK
    assert [line.message for line in h.host.logs] == ["before", "after"]


@covers("proxy_get_log_level")
def test_get_log_level_writes_the_configured_level() -> None:
    h = Harness("proxy_get_log_level")
    h.host.log_level = 4
    assert h.call(P) == Status.OK and h.u32(P) == 4
    with pytest.raises(Exception, match="proxy_get_log_level"):
        Harness("proxy_get_log_level", abi_version="0.2.0")  # not in 0.2.0: cannot even link


@covers("proxy_get_current_time_nanoseconds")
def test_time_is_written_as_u64() -> None:
    h = Harness("proxy_get_current_time_nanoseconds")
    assert h.call(P) == Status.OK
    assert h.u64(P) == 1_700_000_000_123_456_789


@covers("proxy_set_tick_period_milliseconds")
def test_tick_period_is_set_on_the_root_context() -> None:
    h = Harness("proxy_set_tick_period_milliseconds")
    assert h.call(250) == Status.OK
    assert h.root.tick_period_ms == 250  # called from a stream context, it applies to its root


@covers("proxy_get_configuration")
def test_abi_010_get_configuration_copies_the_plugin_configuration_out() -> None:
    h = Harness("proxy_get_configuration", abi_version="0.1.0")
    h.host.plugin_config = b'{"a":1}'
    assert h.call(P, L) == Status.OK
    assert h.out() == b'{"a":1}'
    h.host.plugin_config = b""
    assert h.call(P, L) == Status.OK and h.u32(P) == 0 and h.u32(L) == 0


@covers("proxy_done")
def test_done_only_for_a_context_that_deferred_its_done() -> None:
    h = Harness("proxy_done").in_root()
    assert h.call() == Status.NOT_FOUND
    h.host.done_requests.append(1)
    assert h.call() == Status.OK and h.root.done_called


@covers("proxy_set_effective_context")
def test_set_effective_context_switches_to_known_contexts_only() -> None:
    h = Harness("proxy_set_effective_context").in_root()
    assert h.call(2) == Status.OK and h.host.current is h.stream
    assert h.call(99) == Status.BAD_ARGUMENT and h.host.current is h.stream


# -- buffers ------------------------------------------------------------------------------------

@covers("proxy_get_buffer_bytes")
def test_get_buffer_bytes_copies_slices_out() -> None:
    h = Harness("proxy_get_buffer_bytes")
    h.stream.request.buffered = b"0123456789"
    assert h.call(Buffer.HTTP_REQUEST_BODY, 2, 5, P, L) == Status.OK
    assert h.out() == b"23456"
    assert h.call(Buffer.HTTP_REQUEST_BODY, 8, 100, P, L) == Status.OK and h.out() == b"89"
    assert h.call(Buffer.HTTP_REQUEST_BODY, 11, 1, P, L) == Status.OK and h.out() == b""  # clamped
    assert h.call(Buffer.VM_CONFIGURATION, 0, 100, P, L) == Status.OK and h.out() == b"vm-config"
    assert h.call(Buffer.HTTP_CALL_RESPONSE_BODY, 0, 10, P, L) == Status.NOT_FOUND
    assert h.call(42, 0, 10, P, L) == Status.BAD_ARGUMENT


@pytest.mark.parametrize(("start", "size"), [(0, 0), (4, 0), (10, 5), (11, 1), (2**31, 8)])
def test_get_buffer_bytes_with_nothing_to_read_writes_a_zero_pair_like_cpp_host(start: int, size: int) -> None:
    """cpp-host src/exports.cc get_buffer_bytes: length 0 (or clamped to 0) answers OK and
    writes (0, 0) without calling the allocator (a trapping allocator here would fail)."""
    h = Harness("proxy_get_buffer_bytes", allocator_body="(unreachable)")
    h.stream.request.buffered = b"0123456789"
    h.vm.guest.write(h.vm.store, P, b"\xff" * 8)  # stale out-pointer and length
    assert h.call(Buffer.HTTP_REQUEST_BODY, start, size, P, L) == Status.OK
    assert (h.u32(P), h.u32(L)) == (0, 0)
    assert h.call(Buffer.HTTP_REQUEST_BODY, start, size, 10**8, L) == Status.INVALID_MEMORY_ACCESS


def test_plugin_configuration_is_readable_only_during_configure() -> None:
    h = Harness("proxy_get_buffer_bytes")
    h.host.plugin_config = b"cfg"
    assert h.call(Buffer.PLUGIN_CONFIGURATION, 0, 3, P, L) == Status.NOT_FOUND
    h.host.configuring = True
    assert h.call(Buffer.PLUGIN_CONFIGURATION, 0, 3, P, L) == Status.OK and h.out() == b"cfg"


def test_abi_010_has_no_configuration_buffers() -> None:
    h = Harness("proxy_get_buffer_bytes", abi_version="0.1.0")
    assert h.call(Buffer.VM_CONFIGURATION, 0, 100, P, L) == Status.NOT_FOUND


@covers("proxy_get_buffer_status")
def test_buffer_status_gives_length_and_end_of_stream() -> None:
    h = Harness("proxy_get_buffer_status")
    h.stream.response.buffered, h.stream.response.end_of_stream = b"abc", True
    assert h.call(Buffer.HTTP_RESPONSE_BODY, P, L) == Status.OK
    assert (h.u32(P), h.u32(L)) == (3, 1)
    h.stream.request.buffered, h.stream.request.end_of_stream = b"x", False
    assert h.call(Buffer.HTTP_REQUEST_BODY, P, L) == Status.OK and (h.u32(P), h.u32(L)) == (1, 0)
    assert h.call(Buffer.GRPC_CALL_MESSAGE, P, L) == Status.NOT_FOUND


@covers("proxy_set_buffer_bytes")
def test_set_buffer_bytes_follows_envoys_prepend_replace_append_rules() -> None:
    h = Harness("proxy_set_buffer_bytes")
    body = h.stream.request
    body.buffered = b"middle"
    ptr, n = h.put("<")
    assert h.call(Buffer.HTTP_REQUEST_BODY, 0, 0, ptr, n) == Status.OK and body.buffered == b"<middle"
    ptr, n = h.put(">")
    assert h.call(Buffer.HTTP_REQUEST_BODY, 7, 0, ptr, n) == Status.OK and body.buffered == b"<middle>"
    ptr, n = h.put("new")
    assert h.call(Buffer.HTTP_REQUEST_BODY, 3, 2, ptr, n) == Status.BAD_ARGUMENT
    assert h.call(Buffer.HTTP_REQUEST_BODY, 0, 100, ptr, n) == Status.OK and body.buffered == b"new"
    assert h.call(Buffer.VM_CONFIGURATION, 0, 0, ptr, n) == Status.NOT_FOUND  # read-only


# -- header maps ------------------------------------------------------------------------------------

@covers("proxy_get_header_map_size")
def test_header_map_size_is_envoys_byte_size() -> None:
    h = Harness("proxy_get_header_map_size")
    assert h.call(Map.REQUEST_HEADERS, P) == Status.OK
    assert h.u32(P) == h.stream.request.headers.byte_size() == 5 + 6 + 7 + 3 + 10 + 11 + 5 + 1 + 5 + 1
    assert h.call(Map.RESPONSE_HEADERS, P) == Status.BAD_ARGUMENT  # not available yet


@covers("proxy_get_header_map_pairs")
def test_header_map_pairs_are_serialised_with_lower_cased_keys() -> None:
    h = Harness("proxy_get_header_map_pairs")
    assert h.call(Map.REQUEST_HEADERS, P, L) == Status.OK
    raw = h.out()
    assert raw[:4] == struct.pack("<I", 5)
    assert h.out_pairs() == [(b":path", b"/a?b=1"), (b":method", b"GET"), (b":authority", b"example.com"),
                             (b"x-dup", b"1"), (b"x-dup", b"2")]


@covers("proxy_set_header_map_pairs")
def test_set_header_map_pairs_replaces_the_map() -> None:
    h = Harness("proxy_set_header_map_pairs")
    ptr, n = h.put_pairs([(":path", "/b"), ("X-New", "v")])
    assert h.call(Map.REQUEST_HEADERS, ptr, n) == Status.OK
    assert h.stream.request.headers.pairs == [(b":path", b"/b"), (b"x-new", b"v")]
    ptr, n = h.put(b"\x05\0\0\0")  # five pairs declared, none present
    assert h.call(Map.REQUEST_HEADERS, ptr, n) == Status.BAD_ARGUMENT


@covers("proxy_get_header_map_value")
def test_get_header_map_value_is_case_insensitive_and_not_found_from_020() -> None:
    h = Harness("proxy_get_header_map_value")
    k, kn = h.put("X-DUP")
    assert h.call(Map.REQUEST_HEADERS, k, kn, P, L) == Status.OK and h.out() == b"1"
    k, kn = h.put("missing")
    assert h.call(Map.REQUEST_HEADERS, k, kn, P, L) == Status.NOT_FOUND
    old = Harness("proxy_get_header_map_value", abi_version="0.1.0")
    k, kn = old.put("missing")
    assert old.call(Map.REQUEST_HEADERS, k, kn, P, L) == Status.OK
    assert old.out() == b""  # 0.1.0: OK with an empty value


@covers("proxy_add_header_map_value")
def test_add_header_appends_with_a_lower_cased_key() -> None:
    h = Harness("proxy_add_header_map_value")
    k, kn = h.put("X-Dup")
    v, vn = h.put("3")
    assert h.call(Map.REQUEST_HEADERS, k, kn, v, vn) == Status.OK
    assert h.stream.request.headers.get_all(b"x-dup") == [b"1", b"2", b"3"]
    assert h.call(Map.HTTP_CALL_RESPONSE_HEADERS, k, kn, v, vn) == Status.BAD_ARGUMENT


@covers("proxy_replace_header_map_value")
def test_replace_header_keeps_the_first_place_and_drops_duplicates() -> None:
    h = Harness("proxy_replace_header_map_value")
    k, kn = h.put("x-dup")
    v, vn = h.put("only")
    assert h.call(Map.REQUEST_HEADERS, k, kn, v, vn) == Status.OK
    assert h.stream.request.headers.pairs[3:] == [(b"x-dup", b"only")]
    k, kn = h.put("Fresh")
    assert h.call(Map.REQUEST_HEADERS, k, kn, v, vn) == Status.OK
    assert h.stream.request.headers.get(b"fresh") == b"only"


@covers("proxy_remove_header_map_value")
def test_remove_header_removes_every_value() -> None:
    h = Harness("proxy_remove_header_map_value")
    k, kn = h.put("X-DUP")
    assert h.call(Map.REQUEST_HEADERS, k, kn) == Status.OK
    assert h.stream.request.headers.get_all(b"x-dup") == []
    assert h.call(Map.REQUEST_HEADERS, k, kn) == Status.OK  # removing nothing is fine in Envoy


# -- stream control -------------------------------------------------------------------------------

@covers("proxy_continue_stream")
def test_continue_stream_resumes_the_paused_direction() -> None:
    h = Harness("proxy_continue_stream")
    h.stream.request.paused = h.stream.response.paused = True
    assert h.call(0) == Status.OK and not h.stream.request.paused and h.stream.response.paused
    assert h.call(1) == Status.OK and not h.stream.response.paused
    assert h.call(7) == Status.BAD_ARGUMENT
    assert h.in_root().call(0) == Status.BAD_ARGUMENT  # a root context has no stream


@covers("proxy_close_stream")
def test_close_stream_is_recorded() -> None:
    h = Harness("proxy_close_stream")
    assert h.call(1) == Status.OK and h.stream.closed == ["http_response"]
    assert h.call(9) == Status.BAD_ARGUMENT


@covers("proxy_continue_request", "proxy_continue_response", "proxy_clear_route_cache")
def test_abi_010_stream_calls() -> None:
    for name, direction in (("proxy_continue_request", "request"), ("proxy_continue_response", "response")):
        h = Harness(name, abi_version="0.1.0")
        getattr(h.stream, direction).paused = True
        assert h.call() == Status.OK and not getattr(h.stream, direction).paused
    h = Harness("proxy_clear_route_cache", abi_version="0.1.0")
    assert h.call() == Status.OK
    assert h.in_root().call() == Status.BAD_ARGUMENT


@covers("proxy_get_status")
def test_get_status_reports_the_callout_status() -> None:
    h = Harness("proxy_get_status")
    h.host.callback.status = (14, b"unavailable")
    assert h.call(X, P, L) == Status.OK
    assert h.u32(X) == 14 and h.out() == b"unavailable"


@covers("proxy_send_local_response")
def test_send_local_response_records_code_body_headers_and_details() -> None:
    h = Harness("proxy_send_local_response")
    d, dn = h.put("denied_by_wasm")
    b, bn = h.put("go away")
    hp, hn = h.put_pairs([("X-Why", "policy")])
    assert h.call(403, d, dn, b, bn, hp, hn, 0xFFFFFFFF) == Status.OK
    lr = h.stream.local_response
    assert lr is not None
    assert (lr.code, lr.details, lr.body, lr.headers.pairs, lr.grpc_status) == (
        403, "denied_by_wasm", b"go away", [(b"x-why", b"policy")], -1)
    assert h.in_root().call(403, d, dn, b, bn, hp, hn, 0) == Status.BAD_ARGUMENT


# -- callouts -----------------------------------------------------------------------------------

def _http_call(h: Harness, headers: list[tuple[str, str]], upstream: str = "auth") -> int:
    u, un = h.put(upstream)
    hp, hn = h.put_pairs(headers)
    b, bn = h.put("payload")
    t, tn = h.put_pairs([])
    return h.call(u, un, hp, hn, b, bn, t, tn, 500, X)


@covers("proxy_http_call")
def test_http_call_records_the_request_and_writes_a_token() -> None:
    h = Harness("proxy_http_call", clusters=frozenset({"auth"}))
    good = [(":method", "POST"), (":path", "/check"), (":authority", "auth.local")]
    assert _http_call(h, good) == Status.OK
    token = h.u32(X)
    assert token > 0
    call = h.host.http_calls[0]
    # made from stream context 2, the callout belongs to its root context 1 (cpp-host)
    assert (call.token, call.context_id, call.upstream, call.body, call.timeout_ms) == (token, 1, "auth", b"payload", 500)
    assert call.headers.get(b":path") == b"/check"
    assert _http_call(h, good[:2]) == Status.BAD_ARGUMENT  # no :authority
    assert _http_call(h, good, upstream="nowhere") == Status.BAD_ARGUMENT  # unknown cluster
    assert len(h.host.http_calls) == 1


def _grpc_args(h: Harness) -> list[int]:
    args = []
    for text in ("grpc-cluster", "pkg.Service", "Method"):
        args += h.put(text)
    args += h.put_pairs([("x-md", "1")])
    return args


@covers("proxy_grpc_call")
def test_grpc_call_records_service_method_metadata_and_message() -> None:
    h = Harness("proxy_grpc_call")
    m, mn = h.put(b"\x0a\x01x")
    assert h.call(*_grpc_args(h), m, mn, 1000, X) == Status.OK
    call = h.host.grpc_calls[0]
    assert (call.token, call.upstream, call.service, call.method, call.messages) == (
        h.u32(X), "grpc-cluster", "pkg.Service", "Method", [b"\x0a\x01x"])
    assert call.metadata.get(b"x-md") == b"1" and not call.stream


@covers("proxy_grpc_stream", "proxy_grpc_send")
def test_grpc_stream_then_send() -> None:
    h = Harness("proxy_grpc_stream")
    assert h.call(*_grpc_args(h), X) == Status.OK
    token = h.u32(X)
    assert h.host.grpc_calls[0].stream
    sender = Harness("proxy_grpc_send")
    sender.host.grpc_calls = h.host.grpc_calls
    m, mn = sender.put("msg")
    assert sender.call(token, m, mn, 0) == Status.OK
    assert h.host.grpc_calls[0].messages == [b"msg"]
    assert sender.call(token + 1, m, mn, 0) == Status.NOT_FOUND


@covers("proxy_grpc_cancel", "proxy_grpc_close")
def test_grpc_cancel_and_close_end_the_call() -> None:
    for name in ("proxy_grpc_cancel", "proxy_grpc_close"):
        h = Harness("proxy_grpc_call")
        m, mn = h.put("m")
        h.call(*_grpc_args(h), m, mn, 1000, X)
        token = h.u32(X)
        ender = Harness(name)
        ender.host.grpc_calls = h.host.grpc_calls
        assert ender.call(token) == Status.OK and h.host.grpc_calls[0].closed
        assert ender.call(token) == Status.NOT_FOUND


# -- shared data and queues ---------------------------------------------------------------------

@covers("proxy_get_shared_data", "proxy_set_shared_data")
def test_shared_data_with_compare_and_swap() -> None:
    setter = Harness("proxy_set_shared_data")
    getter = Harness("proxy_get_shared_data")
    getter.world = setter.world
    getter.host.world = setter.world
    k, kn = getter.put("key")
    assert getter.call(k, kn, P, L, X) == Status.NOT_FOUND
    sk, skn = setter.put("key")
    v, vn = setter.put("v1")
    assert setter.call(sk, skn, v, vn, 0) == Status.OK
    assert getter.call(k, kn, P, L, X) == Status.OK
    cas = getter.u32(X)
    assert getter.out() == b"v1" and cas > 0
    v2, v2n = setter.put("v2")
    assert setter.call(sk, skn, v2, v2n, cas + 1) == Status.CAS_MISMATCH
    assert setter.call(sk, skn, v2, v2n, cas) == Status.OK
    assert setter.call(sk, skn, v, vn, cas) == Status.CAS_MISMATCH  # cas moved on
    assert getter.call(k, kn, P, L, X) == Status.OK and getter.out() == b"v2" and getter.u32(X) > cas


def _share(*harnesses: Harness) -> None:
    for h in harnesses[1:]:
        h.world = h.host.world = harnesses[0].world


@covers("proxy_register_shared_queue", "proxy_resolve_shared_queue", "proxy_enqueue_shared_queue",
        "proxy_dequeue_shared_queue")
def test_queues_register_resolve_enqueue_dequeue_and_notify_the_owner() -> None:
    reg, res = Harness("proxy_register_shared_queue"), Harness("proxy_resolve_shared_queue")
    enq, deq = Harness("proxy_enqueue_shared_queue"), Harness("proxy_dequeue_shared_queue")
    _share(reg, res, enq, deq)
    n, nn = reg.put("jobs")
    assert reg.in_root().call(n, nn, X) == Status.OK
    queue_id = reg.u32(X)
    vm, vmn = res.put("vm")
    n2, n2n = res.put("jobs")
    assert res.call(vm, vmn, n2, n2n, X) == Status.OK and res.u32(X) == queue_id
    other, othern = res.put("elsewhere")
    assert res.call(other, othern, n2, n2n, X) == Status.NOT_FOUND
    assert deq.call(queue_id, P, L) == Status.EMPTY
    item, itemn = enq.put("work")
    assert enq.call(queue_id, item, itemn) == Status.OK
    assert enq.host.queue_ready == [(1, queue_id)]  # the registering root context is notified
    assert deq.call(queue_id, P, L) == Status.OK and deq.out() == b"work"
    assert deq.call(queue_id, P, L) == Status.EMPTY
    assert enq.call(queue_id + 7, item, itemn) == Status.NOT_FOUND


# -- metrics ------------------------------------------------------------------------------------

@covers("proxy_define_metric", "proxy_increment_metric", "proxy_record_metric", "proxy_get_metric")
def test_metrics_define_increment_record_get() -> None:
    define, inc = Harness("proxy_define_metric"), Harness("proxy_increment_metric")
    rec, get = Harness("proxy_record_metric"), Harness("proxy_get_metric")
    _share(define, inc, rec, get)
    ids = {}
    for kind, name in ((0, "requests"), (1, "inflight"), (2, "latency")):
        n, nn = define.put(name)
        assert define.call(kind, n, nn, X) == Status.OK
        ids[name] = define.u32(X)
    n, nn = define.put("requests")
    assert define.call(0, n, nn, X) == Status.OK and define.u32(X) == ids["requests"]  # same metric
    assert define.call(3, n, nn, X) == Status.BAD_ARGUMENT
    assert inc.call(ids["requests"], 2) == Status.OK and inc.call(ids["requests"], 3) == Status.OK
    assert inc.call(ids["requests"], -1) == Status.BAD_ARGUMENT
    assert inc.call(ids["inflight"], -4) == Status.OK
    assert inc.call(ids["latency"], 1) == Status.BAD_ARGUMENT
    assert rec.call(ids["inflight"], 9) == Status.OK and rec.call(ids["latency"], 120) == Status.OK
    assert get.call(ids["requests"], P) == Status.OK and get.u64(P) == 5
    assert get.call(ids["inflight"], P) == Status.OK and get.u64(P) == 9
    assert get.call(ids["latency"], P) == Status.BAD_ARGUMENT
    assert get.world.metric_by_name("latency").records == [120]
    assert get.call(999, P) == Status.NOT_FOUND


# -- properties and foreign functions -------------------------------------------------------------

@covers("proxy_get_property")
def test_get_property_reads_stored_and_derived_properties() -> None:
    h = Harness("proxy_get_property")
    cases = {"node\0id": b"node-1", "plugin_root_id": b"my-root", "request\0path": b"/a?b=1",
             "request\0url_path": b"/a", "request\0method": b"GET", "plugin_vm_id": b"vm"}
    for path, want in cases.items():
        p, pn = h.put(path)
        assert h.call(p, pn, P, L) == Status.OK, path
        assert h.out() == want, path
    p, pn = h.put("request\0nope")
    assert h.call(p, pn, P, L) == Status.NOT_FOUND
    h.stream.response.headers = HeaderMap([(b":status", b"503")])
    p, pn = h.put("response\0code\0")  # a trailing NUL is tolerated
    assert h.call(p, pn, P, L) == Status.OK and h.out() == struct.pack("<q", 503)


@covers("proxy_set_property")
def test_set_property_stores_filter_state_by_path() -> None:
    h = Harness("proxy_set_property")
    p, pn = h.put("filter_state\0wasm.decision")
    v, vn = h.put("allow")
    assert h.call(p, pn, v, vn) == Status.OK
    assert h.stream.filter_state == {"wasm.filter_state\0wasm.decision": b"allow"}  # Envoy's key


@covers("proxy_call_foreign_function")
def test_foreign_functions_compress_and_uncompress() -> None:
    h = Harness("proxy_call_foreign_function")
    n, nn = h.put("compress")
    a, an = h.put(b"aaaaaaaaaaaaaaaaaaaaaaaaaaaa")
    assert h.call(n, nn, a, an, P, L) == Status.OK
    assert zlib.decompress(h.out()) == b"aaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    n, nn = h.put("uncompress")
    a, an = h.put(zlib.compress(b"xyz"))
    assert h.call(n, nn, a, an, P, L) == Status.OK and h.out() == b"xyz"
    a, an = h.put(b"not zlib")
    assert h.call(n, nn, a, an, P, L) == Status.SERIALIZATION_FAILURE
    n, nn = h.put("launch_rockets")
    assert h.call(n, nn, a, an, P, L) == Status.NOT_FOUND


@covers("proxy_call_foreign_function")
def test_uncompress_of_a_zlib_bomb_is_refused_without_inflating_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A small input that inflates past the host's output cap is refused at the cap, not
    inflated into the worker's memory.  The cap is lowered so that the bomb fits the test
    guest's scratch memory: 16 MiB of zeros is about 16 KiB of zlib."""
    from workers.abitest import host

    monkeypatch.setattr(host, "MAX_FOREIGN_OUTPUT", 2**20)
    h = Harness("proxy_call_foreign_function")
    n, nn = h.put("uncompress")
    a, an = h.put(zlib.compress(bytes(16 * 2**20), 9))
    assert an < 32 * 1024
    assert h.call(n, nn, a, an, P, L) == Status.SERIALIZATION_FAILURE
    assert any("output over 1 MiB" in line.message for line in h.host.logs)
    a, an = h.put(zlib.compress(bytes(64 * 1024), 9))  # under the cap: inflated as before
    assert h.call(n, nn, a, an, P, L) == Status.OK


# -- the allocator rules ----------------------------------------------------------------------------

def test_allocator_returning_zero_makes_the_copy_out_fail() -> None:
    h = Harness("proxy_get_buffer_bytes", allocator_body="(i32.const 0)")
    assert h.call(Buffer.VM_CONFIGURATION, 0, 100, P, L) == Status.INVALID_MEMORY_ACCESS
    assert h.host.allocation_failures == ["proxy_get_buffer_bytes: proxy_on_memory_allocate(9) returned 0"]


def test_only_a_few_calls_are_allowed_inside_the_allocator() -> None:
    extra = '(import "env" "proxy_get_property" (func $prop (param i32 i32 i32 i32) (result i32)))'
    body = """(drop (call $prop (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)))
              (i32.const 65536)"""
    h = Harness("proxy_get_buffer_bytes", allocator_body=body, extra=extra)
    with pytest.raises(CallbackFailed, match="proxy_get_property was called while the host was inside "
                       "the module's allocator"):
        h.call(Buffer.VM_CONFIGURATION, 0, 100, P, L)
    log_extra = '(import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))'
    ok_body = "(drop (call $log (i32.const 2) (i32.const 0) (i32.const 0))) (i32.const 65536)"
    h = Harness("proxy_get_buffer_bytes", allocator_body=ok_body, extra=log_extra)
    assert h.call(Buffer.VM_CONFIGURATION, 0, 100, P, L) == Status.OK and h.out() == b"vm-config"


# Functions that read or write guest memory before anything else can refuse the call (the
# rest take only ids and numbers, or look an id up first and answer NOT_FOUND).
NO_POINTER_FIRST = {"proxy_done", "proxy_set_effective_context", "proxy_grpc_cancel", "proxy_grpc_close",
                    "proxy_set_tick_period_milliseconds", "proxy_continue_stream", "proxy_close_stream",
                    "proxy_increment_metric", "proxy_record_metric", "proxy_get_metric", "proxy_grpc_send",
                    "proxy_enqueue_shared_queue", "proxy_dequeue_shared_queue"}
POINTER_FUNCTIONS = sorted(set(abi.HOST_FUNCTIONS["0.2.1"]) - NO_POINTER_FIRST)
BAD = 0x7FFFFFF0
ARGS = {"proxy_get_buffer_bytes": [Buffer.VM_CONFIGURATION, 0, 10, BAD, BAD], "proxy_log": [2, BAD, 4]}
FIRST_ARG = {"proxy_get_buffer_status": Buffer.VM_CONFIGURATION,
             "proxy_set_buffer_bytes": Buffer.HTTP_REQUEST_BODY, "proxy_define_metric": 0,
             "proxy_send_local_response": 500}


@pytest.mark.parametrize("name", POINTER_FUNCTIONS)
def test_every_host_function_answers_invalid_memory_access_for_pointers_outside_memory(name: str) -> None:
    h = Harness(name)
    params = abi.HOST_FUNCTIONS["0.2.1"][name]
    args = [BAD if t == "i32" else 1 for t in params]
    if "header_map" in name:
        args[0] = Map.REQUEST_HEADERS
    args[0] = FIRST_ARG.get(name, args[0])
    args = ARGS.get(name, args)
    assert h.call(*args) == Status.INVALID_MEMORY_ACCESS


# -- WASI, as Envoy provides it --------------------------------------------------------------------

WASI = "wasi_snapshot_preview1"


def _wasi(name: str, params: tuple[str, ...], results: tuple[str, ...] = ("i32",),
          module: str = WASI) -> Harness:
    return Harness(name, module=module, params=params, results=results)


@pytest.mark.parametrize("module", [WASI, "wasi_unstable"])
def test_fd_write_turns_stdout_and_stderr_into_log_lines(module: str) -> None:
    h = _wasi("fd_write", ("i32",) * 4, module=module)
    a, an = h.put("line one\npart")
    b, bn = h.put("ial\n")
    iovs, _ = h.put(struct.pack("<IIII", a, an, b, bn))
    assert h.call(1, iovs, 2, X) == 0 and h.u32(X) == an + bn
    c, cn = h.put("oops\n")
    iov, _ = h.put(struct.pack("<II", c, cn))
    assert h.call(2, iov, 1, X) == 0
    assert [(line.level_name, line.message) for line in h.host.logs] == [
        ("info", "line one"), ("info", "partial"), ("error", "oops")]
    assert h.call(5, iov, 1, X) == 8  # EBADF: no files


def test_clock_random_args_and_environ() -> None:
    h = _wasi("clock_time_get", ("i32", "i64", "i32"))
    assert h.call(0, 1, X) == 0 and h.u64(X) == 1_700_000_000_123_456_789
    assert h.call(9, 1, X) == 28  # EINVAL
    h = _wasi("random_get", ("i32", "i32"))
    assert h.call(0x400, 16) == 0 and h.mem(0x400, 16) != bytes(16)
    for name in ("args_sizes_get", "environ_sizes_get"):
        h = _wasi(name, ("i32", "i32"))
        h.vm.guest.write(h.vm.store, X, b"\xff" * 8)
        assert h.call(X, Y) == 0 and (h.u32(X), h.u32(Y)) == (0, 0)
    h = _wasi("environ_get", ("i32", "i32"))
    assert h.call(X, Y) == 0


def test_proc_exit_fails_the_callback_with_its_code() -> None:
    h = _wasi("proc_exit", ("i32",), results=())
    with pytest.raises(CallbackFailed, match=r"proc_exit\(3\)"):
        h.vm.call("call", 3)


def test_poll_oneoff_fires_every_subscription_at_once() -> None:
    h = _wasi("poll_oneoff", ("i32",) * 4)
    subs, _ = h.put(struct.pack("<QB", 77, 0).ljust(48, b"\0") + struct.pack("<QB", 78, 0).ljust(48, b"\0"))
    assert h.call(subs, 0x800, 2, X) == 0 and h.u32(X) == 2
    assert struct.unpack_from("<Q", h.mem(0x800, 8))[0] == 77
    assert struct.unpack_from("<Q", h.mem(0x820, 8))[0] == 78


def test_fdstat_and_unimplemented_wasi_calls() -> None:
    h = _wasi("fd_fdstat_get", ("i32", "i32"))
    assert h.call(1, 0x400) == 0 and h.mem(0x400, 1) == b"\x02"  # a character device
    assert h.call(3, 0x400) == 8
    h = _wasi("path_open", ("i32", "i32", "i32", "i32", "i32", "i64", "i64", "i32", "i32"))
    assert h.call(3, 0, 0, 0, 0, 0, 0, 0, X) == 52  # ENOSYS: no file system in a proxy
    assert h.host.calls["path_open"] == 1


def test_sizes_are_unsigned_as_in_envoy() -> None:
    """The Rust SDK asks for usize::MAX bytes (-1 as a wasm i32) to mean the whole buffer."""
    h = Harness("proxy_get_buffer_bytes")
    h.host.plugin_config, h.host.configuring = b"hello from config", True
    assert h.call(Buffer.PLUGIN_CONFIGURATION, 0, -1, P, L) == Status.OK
    assert h.out() == b"hello from config"
