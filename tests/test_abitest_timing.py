"""The driver's stream and time model against Envoy (issue 21, points 1, 2 and 7).

Action codes follow the ABI per version; a paused header phase stops the stream until the
filter continues it; ticks fire on their schedule (a virtual clock) whether or not streams are
paused, streams may start after some ticks, and a case may have no stream at all.
"""

from __future__ import annotations

from typing import Any

import pytest
import wasmtime

from workers import abitest
from workers.abitest import cases
from workers.abitest.vm import Limits

LIMITS = Limits(fuel=5_000_000, memory_bytes=4 * 2**20)
TIME = 1_700_000_000_000_000_000

# A filter whose callbacks log what ran and return the actions a test picks; on_tick logs,
# records the time it read in the gauge "now", and resumes a postponed request the way the Go
# SDK's postpone_requests example does (proxy_set_effective_context, proxy_continue_stream).
FILTER = """
(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_set_tick_period_milliseconds" (func $period (param i32) (result i32)))
  (import "env" "proxy_set_effective_context" (func $effective (param i32) (result i32)))
  (import "env" "proxy_continue_stream" (func $continue (param i32) (result i32)))
  (import "env" "proxy_get_current_time_nanoseconds" (func $now (param i32) (result i32)))
  (import "env" "proxy_define_metric" (func $define (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_record_metric" (func $record (param i32 i64) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (global $postponed (mut i32) (i32.const 0))
  (data (i32.const 16) "tick")
  (data (i32.const 32) "request headers")
  (data (i32.const 64) "request body")
  (data (i32.const 96) "now")
  (data (i32.const 112) "request trailers")
  (data (i32.const 144) "no such context")
  (func (export "proxy_abi_version_0_2_0"))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $p i32) (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n))) (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (drop (call $period (i32.const 1000)))
    (drop (call $define (i32.const 1) (i32.const 96) (i32.const 3) (i32.const 200)))
    (i32.const 1))
  (func (export "proxy_on_tick") (param i32)
    (drop (call $log (i32.const 2) (i32.const 16) (i32.const 4)))
    (drop (call $now (i32.const 208)))
    (drop (call $record (i32.load (i32.const 200)) (i64.load (i32.const 208))))
    (if (global.get $postponed) (then
      (if (call $effective (global.get $postponed))
        (then (drop (call $log (i32.const 2) (i32.const 144) (i32.const 15)))))
      (drop (call $continue (i32.const 0)))
      (global.set $postponed (i32.const 0)))))
  (func (export "proxy_on_request_headers") (param $ctx i32) (param i32 i32) (result i32)
    (drop (call $log (i32.const 2) (i32.const 32) (i32.const 15)))
    (if (i32.eq (i32.const HEADERS) (i32.const 1)) (then (global.set $postponed (local.get $ctx))))
    (i32.const HEADERS))
  (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32)
    (drop (call $log (i32.const 2) (i32.const 64) (i32.const 12)))
    (i32.const BODY))
  (func (export "proxy_on_request_trailers") (param i32 i32) (result i32)
    (drop (call $log (i32.const 2) (i32.const 112) (i32.const 16)))
    (i32.const TRAILERS))
)
"""


def filter_module(headers: int = 0, body: int = 0, trailers: int = 0, postpone: bool = False) -> bytes:
    text = FILTER.replace("TRAILERS)", f"{trailers})").replace("BODY)", f"{body})")
    text = text.replace("(i32.const HEADERS) (i32.const 1)", f"(i32.const {headers}) (i32.const {int(postpone)})")
    return wasmtime.wat2wasm(text.replace("HEADERS)", f"{headers})"))


def run(wasm: bytes, *case_list: dict[str, Any]) -> abitest.Report:
    suite = cases.parse({"time": TIME, "cases": list(case_list)}, "root")
    return abitest.run(wasm, suite, limits=LIMITS, name="t.wasm")


def differences(report: abitest.Report) -> list[str]:
    assert not report.problems, report.problems
    return [str(d) for c in report.cases for d in c.differences]


# -- point 1: action codes per ABI version --------------------------------------------------------


@pytest.mark.parametrize("code", [3, 4])
def test_stop_all_iteration_codes_from_0_2_headers_stop_the_stream(code: int) -> None:
    report = run(filter_module(headers=code), {
        "name": "stops", "request": {"body": "hello"},
        "expect": {"stalled": "request", "actions": {"request_headers": "pause"}}})
    assert differences(report) == []
    assert report.cases[0].logs == ["[info] request headers"], "no body callback while stopped"


def test_an_unknown_header_action_is_a_failure_naming_value_and_callback() -> None:
    report = run(filter_module(headers=7), {"name": "garbage", "expect": {"stalled": "request"}})
    assert differences(report) == [
        "action: expected one of ABI 0.2.0's header actions (0 Continue, 1 Pause, "
        "3 StopAllIterationAndBuffer, 4 StopAllIterationAndWatermark), got proxy_on_request_headers "
        "returned 7 (Envoy reads it as StopAllIterationAndWatermark)"]


def test_an_unknown_body_or_trailers_action_is_a_failure() -> None:
    report = run(filter_module(body=3, trailers=2), {
        "name": "garbage", "request": {"body": "x", "trailers": {"t": "1"}},
        "expect": {"stalled": "request"}})
    assert differences(report) == [
        "action: expected one of ABI 0.2.0's body actions (0 Continue, 1 Pause), got "
        "proxy_on_request_body returned 3 (Envoy reads it as StopIterationNoBuffer)",
        "action: expected one of ABI 0.2.0's trailer actions (0 Continue, 1 Pause), got "
        "proxy_on_request_trailers returned 2 (Envoy reads it as StopIteration)"]


def test_stop_all_codes_are_not_actions_of_abi_0_1_0() -> None:
    text = FILTER.replace("proxy_abi_version_0_2_0", "proxy_abi_version_0_1_0").replace(
        '(import "env" "proxy_continue_stream" (func $continue (param i32) (result i32)))',
        '(import "env" "proxy_continue_request" (func $continue_request (result i32)))').replace(
        "(drop (call $continue (i32.const 0)))", "(drop (call $continue_request))").replace(
        "(param $ctx i32) (param i32 i32)", "(param $ctx i32) (param i32)")
    wasm = wasmtime.wat2wasm(text.replace("HEADERS", "3").replace("BODY", "0").replace("TRAILERS", "0"))
    report = run(wasm, {"name": "0.1.0", "expect": {"stalled": "request"}})
    assert report.abi_version == "0.1.0"
    assert differences(report) == [
        "action: expected one of ABI 0.1.0's header actions (0 Continue, 1 Pause), got "
        "proxy_on_request_headers returned 3 (Envoy reads it as StopAllIterationAndBuffer)"]


# -- point 7: a paused header phase stops the stream ---------------------------------------------


def test_body_continue_does_not_undo_a_header_pause() -> None:
    """headers → Pause, body → Continue, nothing resumes: the request never reaches the upstream."""
    wasm = filter_module(headers=1, body=0)
    report = run(wasm, {"name": "nothing resumes", "request": {"body": "hello"},
                        "expect": {"request": {"body": "hello"}}})
    assert differences(report) == [
        "stalled: expected 'the stream to complete', got 'request'",
        "request: expected to reach the upstream, got the stream ended before it did"]
    assert report.cases[0].logs == ["[info] request headers"]
    report = run(wasm, {"name": "stalled", "request": {"body": "hello"}, "expect": {
        "stalled": "request", "actions": {"request_headers": "pause", "request_body": "continue"}}})
    assert differences(report) == ["actions.request_body: expected continue, got not called"]


def test_a_request_resumed_from_a_tick_gets_its_body_callback_then_reaches_the_upstream() -> None:
    """The Go SDK's postpone_requests: Pause from the headers, proxy_continue_stream from on_tick."""
    report = run(filter_module(headers=1, postpone=True), {
        "name": "postponed", "ticks": 1, "start_after_ticks": 0,
        "request": {"body": ["a", "b"], "trailers": {"t": "1"}},
        "expect": {"request": {"body": "ab", "trailers": {"equal": {"t": "1"}}},
                   "actions": {"request_headers": "pause", "request_body": "continue"}}})
    assert differences(report) == []
    # the chunks that arrived while the headers were held come in one body callback
    assert report.cases[0].logs == ["[info] request headers", "[info] tick", "[info] request body",
                                    "[info] request trailers"]


def test_continue_called_inside_the_pausing_callback_resumes_after_it() -> None:
    """Envoy defers proxy_continue_stream to after the callback (an after-VM-call action)."""
    text = FILTER.replace("(i32.const HEADERS))", "(drop (call $continue (i32.const 0))) (i32.const 1))")
    wasm = wasmtime.wat2wasm(text.replace("HEADERS", "1").replace("BODY", "0").replace("TRAILERS", "0"))
    report = run(wasm, {"name": "self-resumed", "request": {"body": "x"},
                        "expect": {"request": {"body": "x"}}})
    assert differences(report) == []


# -- point 2: ticks on schedule, streams after N ticks, tick-only cases ------------------------------


def test_without_start_after_ticks_the_ticks_come_before_the_request() -> None:
    report = run(filter_module(headers=1, postpone=True), {
        "name": "ticks first", "ticks": 2, "expect": {"stalled": "request"}})
    assert differences(report) == []
    assert report.cases[0].logs == ["[info] tick", "[info] tick", "[info] request headers"]


def test_a_stream_can_start_after_some_ticks_and_ticks_go_on_while_it_is_paused() -> None:
    report = run(filter_module(headers=1), {
        "name": "late stream", "ticks": 3, "start_after_ticks": 1, "expect": {"stalled": "request",
                                                                           "metrics": {"now": TIME + 3 * 10**9}}})
    assert differences(report) == []
    assert report.cases[0].logs == ["[info] tick", "[info] request headers", "[info] tick", "[info] tick"]


def test_a_tick_only_case_runs_no_stream_and_reads_a_virtual_clock() -> None:
    report = run(filter_module(), {"name": "ticks only", "streams": 0, "ticks": 2,
                                   "expect": {"metrics": {"now": TIME + 2 * 10**9}}},
                 {"name": "time goes on in the next case", "streams": 0, "ticks": 1,
                  "expect": {"metrics": {"now": TIME + 3 * 10**9}}})
    assert differences(report) == []
    assert [c.logs for c in report.cases] == [["[info] tick", "[info] tick"], ["[info] tick"]]


def test_start_after_more_ticks_than_the_case_has_is_an_error() -> None:
    with pytest.raises(cases.CasesError, match=r"case 1 'x' → start_after_ticks: 3 is more than the "
                                               r"case's ticks \(2\)"):
        cases.parse({"cases": [{"name": "x", "ticks": 2, "start_after_ticks": 3}]}, "root")


def test_stream_expectations_need_a_stream() -> None:
    with pytest.raises(cases.CasesError, match=r"case 1 'x' → expect.request: the case has no stream "
                                               r"\(streams: 0\)"):
        cases.parse({"cases": [{"name": "x", "streams": 0, "expect": {"request": {"body": ""}}}]}, "root")


def test_a_finished_stream_cannot_be_resumed_by_a_later_tick() -> None:
    """Envoy forgets a stream's context at proxy_on_delete: proxy_set_effective_context on it
    answers BAD_ARGUMENT."""
    report = run(filter_module(headers=1, postpone=True),
                 {"name": "postponed for good", "expect": {"stalled": "request"}},
                 {"name": "a tick later", "streams": 0, "ticks": 1})
    assert differences(report) == []
    assert report.cases[1].logs == ["[info] tick", "[info] no such context"]


def test_every_root_context_ticks_on_its_own_schedule() -> None:
    report = run(filter_module(), {"name": "root a starts", "root_id": "a", "streams": 0},
                 {"name": "root b runs two ticks", "root_id": "b", "streams": 0, "ticks": 2})
    assert differences(report) == []
    assert report.cases[1].logs == ["[info] tick"] * 4  # a and b, at 1 s and at 2 s
