"""proxy-wasm ABI facts: versions, host function signatures, guest exports and enums.

One table per fact so validation, the host and the driver agree on them.  Source: the
proxy-wasm spec's ``abi-versions`` and proxy-wasm-cpp-host (what Envoy actually does).
"""

from __future__ import annotations

from enum import IntEnum

I32, I64 = "i32", "i64"
VERSIONS = ("0.1.0", "0.2.0", "0.2.1")
ABI_MARKERS = {f"proxy_abi_version_{v.replace('.', '_')}": v for v in VERSIONS}
WASI_MODULES = ("wasi_snapshot_preview1", "wasi_unstable")


class Status(IntEnum):
    OK = 0
    NOT_FOUND = 1
    BAD_ARGUMENT = 2
    SERIALIZATION_FAILURE = 3
    PARSE_FAILURE = 4
    BAD_EXPRESSION = 5
    INVALID_MEMORY_ACCESS = 6
    EMPTY = 7
    CAS_MISMATCH = 8
    RESULT_MISMATCH = 9
    INTERNAL_FAILURE = 10
    BROKEN_CONNECTION = 11
    UNIMPLEMENTED = 12


class LogLevel(IntEnum):
    TRACE = 0
    DEBUG = 1
    INFO = 2
    WARN = 3
    ERROR = 4
    CRITICAL = 5


class Action(IntEnum):
    CONTINUE = 0
    PAUSE = 1


# The action codes each stream callback may return, per ABI version.  The spec defines
# Continue and Pause; for 0.2.x headers cpp-host (Envoy) also takes StopAllIterationAndBuffer
# and StopAllIterationAndWatermark.  Every code but 0 stops the stream (cpp-host turns a
# header Pause into StopAllIterationAndWatermark); a code not listed is a bug in the filter.
_ACTIONS = {0: "Continue", 1: "Pause"}
_STOP_ALL = {3: "StopAllIterationAndBuffer", 4: "StopAllIterationAndWatermark"}
STREAM_ACTIONS: dict[str, dict[str, dict[int, str]]] = {
    version: {"headers": _ACTIONS | (_STOP_ALL if version != "0.1.0" else {}),
              "body": _ACTIONS, "trailers": _ACTIONS} for version in VERSIONS}

def envoy_status(phase: str, code: int) -> str:
    """The filter status Envoy makes of an action code (cpp-host casts and clamps it)."""
    if phase == "headers":
        return {0: "Continue", 1: "StopAllIterationAndWatermark", 2: "ContinueAndEndStream",
                3: "StopAllIterationAndBuffer"}.get(code, "StopAllIterationAndWatermark")
    if phase == "body":
        return {0: "Continue", 1: "StopIterationAndBuffer", 2: "StopIterationAndWatermark"}.get(
            code, "StopIterationNoBuffer")
    return "Continue" if code == 0 else "StopIteration"


class Buffer(IntEnum):
    HTTP_REQUEST_BODY = 0
    HTTP_RESPONSE_BODY = 1
    DOWNSTREAM_DATA = 2
    UPSTREAM_DATA = 3
    HTTP_CALL_RESPONSE_BODY = 4
    GRPC_CALL_MESSAGE = 5
    VM_CONFIGURATION = 6
    PLUGIN_CONFIGURATION = 7
    FOREIGN_FUNCTION_ARGUMENTS = 8


class Map(IntEnum):
    REQUEST_HEADERS = 0
    REQUEST_TRAILERS = 1
    RESPONSE_HEADERS = 2
    RESPONSE_TRAILERS = 3
    GRPC_INITIAL_METADATA = 4
    GRPC_TRAILING_METADATA = 5
    HTTP_CALL_RESPONSE_HEADERS = 6
    HTTP_CALL_RESPONSE_TRAILERS = 7


class Stream(IntEnum):
    HTTP_REQUEST = 0
    HTTP_RESPONSE = 1
    DOWNSTREAM = 2
    UPSTREAM = 3


class MetricType(IntEnum):
    COUNTER = 0
    GAUGE = 1
    HISTOGRAM = 2


def _sig(n: int, *wide: int) -> tuple[str, ...]:
    return tuple(I64 if i in wide else I32 for i in range(n))


# env host functions: name -> parameter types.  Every one returns an i32 status.
_COMMON: dict[str, tuple[str, ...]] = {
    "proxy_log": _sig(3),
    "proxy_get_current_time_nanoseconds": _sig(1),
    "proxy_set_tick_period_milliseconds": _sig(1),
    "proxy_get_buffer_bytes": _sig(5),
    "proxy_set_buffer_bytes": _sig(5),
    "proxy_get_buffer_status": _sig(3),
    "proxy_get_header_map_size": _sig(2),
    "proxy_get_header_map_pairs": _sig(3),
    "proxy_set_header_map_pairs": _sig(3),
    "proxy_get_header_map_value": _sig(5),
    "proxy_add_header_map_value": _sig(5),
    "proxy_replace_header_map_value": _sig(5),
    "proxy_remove_header_map_value": _sig(3),
    "proxy_get_status": _sig(3),
    "proxy_send_local_response": _sig(8),
    "proxy_http_call": _sig(10),
    "proxy_grpc_call": _sig(12),
    "proxy_grpc_stream": _sig(9),
    "proxy_grpc_send": _sig(4),
    "proxy_grpc_cancel": _sig(1),
    "proxy_grpc_close": _sig(1),
    "proxy_get_shared_data": _sig(5),
    "proxy_set_shared_data": _sig(5),
    "proxy_register_shared_queue": _sig(3),
    "proxy_resolve_shared_queue": _sig(5),
    "proxy_enqueue_shared_queue": _sig(3),
    "proxy_dequeue_shared_queue": _sig(3),
    "proxy_define_metric": _sig(4),
    "proxy_increment_metric": _sig(2, 1),
    "proxy_record_metric": _sig(2, 1),
    "proxy_get_metric": _sig(2),
    "proxy_get_property": _sig(4),
    "proxy_set_property": _sig(4),
    "proxy_done": _sig(0),
    "proxy_set_effective_context": _sig(1),
    "proxy_call_foreign_function": _sig(6),
}
HOST_FUNCTIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "0.1.0": _COMMON | {
        "proxy_get_configuration": _sig(2),
        "proxy_continue_request": _sig(0),
        "proxy_continue_response": _sig(0),
        "proxy_clear_route_cache": _sig(0),
    },
    "0.2.0": _COMMON | {"proxy_continue_stream": _sig(1), "proxy_close_stream": _sig(1)},
}
HOST_FUNCTIONS["0.2.1"] = HOST_FUNCTIONS["0.2.0"] | {"proxy_get_log_level": _sig(1)}
ALL_HOST_FUNCTIONS = sorted({name for fns in HOST_FUNCTIONS.values() for name in fns})

# What cpp-host lets a module call while the host is inside the guest allocator.
ALLOWED_DURING_ALLOCATION = frozenset({"proxy_log", "fd_write", "clock_time_get", "poll_oneoff"})

# Guest exports the driver calls: name -> number of i32 params (0.2.x) and whether it returns.
_EXPORTS_02: dict[str, tuple[int, bool]] = {
    "proxy_on_memory_allocate": (1, True),
    "malloc": (1, True),
    "proxy_on_context_create": (2, False),
    "proxy_on_done": (1, True),
    "proxy_on_log": (1, False),
    "proxy_on_delete": (1, False),
    "proxy_on_vm_start": (2, True),
    "proxy_on_configure": (2, True),
    "proxy_on_tick": (1, False),
    "proxy_on_queue_ready": (2, False),
    "proxy_on_request_headers": (3, True),
    "proxy_on_response_headers": (3, True),
    "proxy_on_request_body": (3, True),
    "proxy_on_response_body": (3, True),
    "proxy_on_request_trailers": (2, True),
    "proxy_on_response_trailers": (2, True),
    "proxy_on_http_call_response": (5, False),
    "proxy_on_grpc_receive_initial_metadata": (3, False),
    "proxy_on_grpc_receive_trailing_metadata": (3, False),
    "proxy_on_grpc_receive": (3, False),
    "proxy_on_grpc_close": (3, False),
    "proxy_on_foreign_function": (3, False),
    "proxy_on_new_connection": (1, True),
    "proxy_on_downstream_data": (3, True),
    "proxy_on_upstream_data": (3, True),
    "proxy_on_downstream_connection_close": (2, False),
    "proxy_on_upstream_connection_close": (2, False),
}
GUEST_EXPORTS: dict[str, dict[str, tuple[int, bool]]] = {
    "0.2.0": _EXPORTS_02,
    "0.2.1": _EXPORTS_02,
    "0.1.0": {k: v for k, v in _EXPORTS_02.items() if k != "proxy_on_foreign_function"}
    | {"proxy_on_request_headers": (2, True), "proxy_on_response_headers": (2, True)},
}


# Exports cpp-host looks up besides the callbacks above.
OTHER_KNOWN_EXPORTS = frozenset({
    "memory", "_initialize", "_start", "main", "proxy_validate_configuration",
    "proxy_on_request_metadata", "proxy_on_response_metadata", *ABI_MARKERS})


def abi_hint(name: str) -> str:
    """Which ABI versions define host function ``name``, for error messages."""
    versions = [v for v, fns in HOST_FUNCTIONS.items() if name in fns]
    return f" (it exists in ABI {', '.join(versions)})" if versions else ""
