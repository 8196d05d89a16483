"""Judge a case's outcome against its expectations: each difference as field, expected, got."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from workers.abitest.driver import Delivered, Outcome, StreamOutcome
from workers.abitest.state import HeaderMap


@dataclass(frozen=True)
class Difference:
    field: str
    expected: str
    got: str

    def __str__(self) -> str:
        return f"{self.field}: expected {self.expected}, got {self.got}"


def _show(value: bytes | str | None, limit: int = 200) -> str:
    if value is None:
        return "nothing"
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return repr(text if len(text) <= limit else text[:limit] + "…")


def _headers(where: str, spec: dict[str, Any], m: HeaderMap | None) -> list[Difference]:
    diffs = []
    m = m or HeaderMap()
    for key, value in spec.get("equal", {}).items():
        got = m.get(key.encode())
        if got != str(value).encode():
            diffs.append(Difference(f"{where}[{key!r}]", _show(str(value)),
                                    "no such header" if got is None else _show(got)))
    for key in spec.get("present", []):
        if m.get(key.encode()) is None:
            diffs.append(Difference(f"{where}[{key!r}]", "present", "no such header"))
    for key in spec.get("absent", []):
        got = m.get(key.encode())
        if got is not None:
            diffs.append(Difference(f"{where}[{key!r}]", "absent", _show(got)))
    return diffs


def _message(side: str, spec: dict[str, Any], got: Delivered, reached: bool) -> list[Difference]:
    if not reached:
        return [Difference(side, f"to reach the {'upstream' if side == 'request' else 'client'}",
                           "the stream ended before it did")]
    diffs = _headers(f"{side}.headers", spec.get("headers", {}), got.headers)
    if "body" in spec and got.body != spec["body"].encode():
        diffs.append(Difference(f"{side}.body", _show(spec["body"]), _show(got.body)))
    diffs += _headers(f"{side}.trailers", spec.get("trailers", {}), got.trailers)
    return diffs


def judge(out: Outcome) -> list[Difference]:
    """Every expectation that does not hold, in the order the case file lists them."""
    expect = out.case.expect
    diffs: list[Difference] = []
    trap = expect.get("trap", False)
    if trap is False and out.failure is not None:
        diffs.append(Difference("trap", "no failed callback", str(out.failure)))
    elif isinstance(trap, str):
        if out.failure is None:
            diffs.append(Difference("trap", f"a failed callback matching {trap!r}", "none failed"))
        elif not re.search(trap, str(out.failure)):
            diffs.append(Difference("trap", f"a failure matching {trap!r}", str(out.failure)))
    for failure in out.allocation_failures:
        diffs.append(Difference("allocator", "every copy-out to succeed", failure))
    diffs += [Difference("action", expected, got) for expected, got in out.bad_actions]
    if out.failure is not None and trap is not False:
        return diffs  # after an expected failure the stream's state means nothing
    for i, stream in enumerate(out.streams):
        prefix = f"stream {i + 1}: " if len(out.streams) > 1 else ""
        diffs += [Difference(prefix + d.field, d.expected, d.got) for d in _stream(stream, expect)]
    diffs += _logs(out, expect)
    diffs += _calls(out, expect)
    diffs += _state(out, expect)
    return diffs


def _stream(s: StreamOutcome, expect: dict[str, Any]) -> list[Difference]:
    """The expectations about one HTTP stream (each of a case's streams must meet them)."""
    diffs: list[Difference] = []
    stalled = expect.get("stalled", False)
    if (s.stalled or False) != stalled:
        diffs.append(Difference("stalled", repr(stalled or "the stream to complete"),
                                repr(s.stalled) if s.stalled else "it completed"))
    ctx = s.context
    if "request" in expect:
        diffs += _message("request", expect["request"], s.upstream, s.upstream.headers is not None)
    if "response" in expect:
        diffs += _message("response", expect["response"], s.client, s.client.headers is not None)
    if "local_response" in expect:
        diffs += _local_response(expect["local_response"], ctx.local_response)
    for phase, action in expect.get("actions", {}).items():
        side = ctx.request if phase.startswith("request") else ctx.response
        got = side.actions.get(phase)
        if got != action:
            diffs.append(Difference(f"actions.{phase}", action, got or "not called"))
    for path, value in expect.get("properties", {}).items():
        # what proxy_set_property stored for this path (Envoy's filter state wasm.<path>)
        got_value = ctx.filter_state.get("wasm." + "\0".join(path.split(".")))
        if got_value != value.encode():
            diffs.append(Difference(f"properties[{path!r}]", _show(value), _show(got_value)))
    return diffs


def _local_response(spec: dict[str, Any] | None, lr: Any) -> list[Difference]:
    if spec is None:
        return [Difference("local_response", "none", f"{lr.code} {_show(lr.body)}")] if lr else []
    if lr is None:
        return [Difference("local_response", f"code {spec.get('code', 'any')}", "none was sent")]
    diffs = []
    for key in ("code", "grpc_status"):
        if key in spec and getattr(lr, key) != spec[key]:
            diffs.append(Difference(f"local_response.{key}", str(spec[key]), str(getattr(lr, key))))
    if "body" in spec and lr.body != spec["body"].encode():
        diffs.append(Difference("local_response.body", _show(spec["body"]), _show(lr.body)))
    if "details" in spec and lr.details != spec["details"]:
        diffs.append(Difference("local_response.details", _show(spec["details"]), _show(lr.details)))
    return diffs + _headers("local_response.headers", spec.get("headers", {}), lr.headers)


def _logs(out: Outcome, expect: dict[str, Any]) -> list[Difference]:
    def matches(spec: dict[str, Any]) -> bool:
        return any(re.search(spec["matches"], line.message)
                   and spec.get("level", line.level_name) == line.level_name for line in out.logs)

    diffs = []
    recent = "; ".join(f"[{line.level_name}] {line.message}" for line in out.logs[-5:]) or "no logs"
    for spec in expect.get("logs", []):
        if not matches(spec):
            level = f"[{spec['level']}] " if "level" in spec else ""
            diffs.append(Difference("logs", f"a line {level}matching {spec['matches']!r}",
                                    _show(recent, 400)))
    for spec in expect.get("logs_absent", []):
        if matches(spec):
            diffs.append(Difference("logs_absent", f"no line matching {spec['matches']!r}",
                                    _show(recent, 400)))
    return diffs


def _calls(out: Outcome, expect: dict[str, Any]) -> list[Difference]:
    diffs = []
    if "http_calls" in expect:
        want, got = expect["http_calls"], out.http_calls
        if len(want) != len(got):
            diffs.append(Difference("http_calls", f"{len(want)} callout(s)",
                                    f"{len(got)}: {[c.upstream for c in got]}"))
        for i, (spec, call) in enumerate(zip(want, got, strict=False)):
            if "upstream" in spec and call.upstream != spec["upstream"]:
                diffs.append(Difference(f"http_calls[{i}].upstream", spec["upstream"], call.upstream))
            diffs += _headers(f"http_calls[{i}].headers", spec.get("headers", {}), call.headers)
            if "body" in spec and call.body != spec["body"].encode():
                diffs.append(Difference(f"http_calls[{i}].body", _show(spec["body"]), _show(call.body)))
    if "grpc_calls" in expect:
        want_g, got_g = expect["grpc_calls"], out.grpc_calls
        if len(want_g) != len(got_g):
            diffs.append(Difference("grpc_calls", f"{len(want_g)} call(s)", str(len(got_g))))
        for i, (spec, grpc) in enumerate(zip(want_g, got_g, strict=False)):
            for key in ("upstream", "service", "method"):
                if key in spec and getattr(grpc, key) != spec[key]:
                    diffs.append(Difference(f"grpc_calls[{i}].{key}", spec[key], getattr(grpc, key)))
    return diffs


def _state(out: Outcome, expect: dict[str, Any]) -> list[Difference]:
    diffs: list[Difference] = []
    host = out.host
    if host is None:
        return diffs
    for name, value in expect.get("metrics", {}).items():
        metric = host.world.metric_by_name(name)
        if metric is None:
            diffs.append(Difference(f"metrics[{name!r}]", str(value), "no such metric defined"))
        elif metric.value != value:
            diffs.append(Difference(f"metrics[{name!r}]", str(value), str(metric.value)))
    for key, value in expect.get("shared_data", {}).items():
        entry = host.world.shared.get(key.encode())
        if entry is None or entry[0] != value.encode():
            diffs.append(Difference(f"shared_data[{key!r}]", _show(value),
                                    _show(entry[0]) if entry else "no such key"))
    return diffs
