"""``wasm-tests.yaml``: behaviour cases written by a filter's authors, checked against a schema.

Errors name the case and the field (``case 2 "denies" → expect.local_response.code: ...``)
so the author can fix the file without reading wasmbot's code.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: `wasmbot push` checks modules with this package, no cases
    import jsonschema

SCHEMA_PATH = Path(__file__).with_name("wasm-tests.schema.json")
FILENAME = "wasm-tests.yaml"
DEFAULT_REQUEST = {":method": "GET", ":path": "/", ":authority": "example.com", ":scheme": "http"}
DEFAULT_RESPONSE = {":status": "200"}
STREAM_EXPECTATIONS = ("request", "response", "local_response", "actions", "stalled")


class CasesError(Exception):
    """The cases file is unreadable or does not follow the schema; the message says where."""


@cache
def schema() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
    return data


def encode_config(value: Any) -> bytes:
    """Plugin and VM configuration bytes: strings as is, null as empty, anything else as JSON."""
    if value is None:
        return b""
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value, separators=(",", ":")).encode()


def pairs(value: Any) -> list[tuple[bytes, bytes]]:
    if value is None:
        return []
    items = value.items() if isinstance(value, dict) else value
    return [(str(k).encode(), str(v).encode()) for k, v in items]


def chunks(value: Any) -> list[bytes]:
    if value is None or value == "":
        return []
    return [value.encode()] if isinstance(value, str) else [c.encode() for c in value]


@dataclass
class Message:
    headers: list[tuple[bytes, bytes]]
    body: list[bytes]
    trailers: list[tuple[bytes, bytes]]


@dataclass
class Case:
    name: str
    index: int
    root_id: str
    plugin_config: bytes
    properties: dict[str, object]
    ticks: int
    request: Message
    response: Message
    http_answers: list[dict[str, Any]]
    grpc_answers: list[dict[str, Any]]
    expect: dict[str, Any]
    own_plugin_config: bool = False
    own_root_id: bool = False
    streams: int = 1
    start_after_ticks: int = 0  # parse() defaults it to ticks: the ticks come first

    @property
    def label(self) -> str:
        return f"case {self.index + 1} {self.name!r}"


@dataclass
class Suite:
    root_id: str
    vm_config: bytes
    plugin_config: bytes
    log_level: str = "info"
    properties: dict[str, object] = field(default_factory=dict)
    clusters: frozenset[str] | None = None
    time_ns: int | None = None
    cases: list[Case] = field(default_factory=list)
    source: str = "(built in)"
    root_id_guess: str = ""  # where a guessed root id came from ("the module's file name"); "" if given

    @property
    def root_ids(self) -> list[str]:
        return list(dict.fromkeys([self.root_id, *(c.root_id for c in self.cases)]))

    def with_plugin_config(self, config: bytes) -> Suite:
        """This suite with ``config`` for every case that does not set its own."""
        cases = [c if c.own_plugin_config else replace(c, plugin_config=config) for c in self.cases]
        return replace(self, plugin_config=config, cases=cases)

    def with_root_id(self, root_id: str) -> Suite:
        cases = [c if c.own_root_id else replace(c, root_id=root_id) for c in self.cases]
        return replace(self, root_id=root_id, cases=cases, root_id_guess="")


def _message(spec: dict[str, Any] | None, default_headers: dict[str, str]) -> Message:
    spec = spec or {}
    headers = pairs(spec.get("headers"))
    present = {k.lower() for k, _ in headers}
    headers = [(k.encode(), v.encode()) for k, v in default_headers.items()
               if k.encode() not in present] + headers
    return Message(headers, chunks(spec.get("body")), pairs(spec.get("trailers")))


def _where(data: dict[str, Any], path: list[str | int]) -> str:
    if len(path) >= 2 and path[0] == "cases" and isinstance(path[1], int):
        cases = data.get("cases") or []
        spec = cases[path[1]] if path[1] < len(cases) else None
        name = spec.get("name") if isinstance(spec, dict) else None
        label = f"case {path[1] + 1}" + (f" {name!r}" if name else "")
        rest = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in path[2:])
        return f"{label} → {rest.replace('.[', '[')}" if rest else label
    return ".".join(str(p) for p in path) or "(top level)"


def _check_patterns(data: dict[str, Any]) -> list[str]:
    errors = []
    for i, case in enumerate(data.get("cases", [])):
        expect = case.get("expect", {})
        for key in ("logs", "logs_absent"):
            for j, item in enumerate(expect.get(key, [])):
                try:
                    re.compile(item["matches"])
                except re.error as exc:
                    errors.append(f"{_where(data, ['cases', i, 'expect', key, j, 'matches'])}: "
                                  f"not a valid regular expression ({exc})")
        trap = expect.get("trap")
        if isinstance(trap, str):
            try:
                re.compile(trap)
            except re.error as exc:
                errors.append(f"{_where(data, ['cases', i, 'expect', 'trap'])}: "
                              f"not a valid regular expression ({exc})")
    for i, case in enumerate(data.get("cases", [])):
        ticks, start = case.get("ticks", 0), case.get("start_after_ticks", 0)
        if start > ticks:
            errors.append(f"{_where(data, ['cases', i, 'start_after_ticks'])}: {start} is more than "
                          f"the case's ticks ({ticks})")
        if case.get("streams") == 0:
            errors += [f"{_where(data, ['cases', i, 'expect', key])}: the case has no stream (streams: 0)"
                       for key in STREAM_EXPECTATIONS if case.get("expect", {}).get(key, False) is not False]
    names = [c.get("name") for c in data.get("cases", [])]
    errors += [f"case name {n!r} is used more than once" for n in sorted({n for n in names
               if names.count(n) > 1})]
    return errors


def parse(data: Any, default_root_id: str, source: str = "(inline)", root_id_guess: str = "") -> Suite:
    """Validate ``data`` (the parsed YAML) and build the suite; CasesError lists every problem.

    ``root_id_guess`` says where ``default_root_id`` came from when it is a guess (the report
    then suggests ``--root-id`` if the module cannot start a root context under it)."""
    if not isinstance(data, dict):
        raise CasesError(f"{source}: the top level must be a mapping with a 'cases' list")
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path])
    messages = [f"{_where(data, list(e.absolute_path))}: {_explain(e)}" for e in errors]
    if not messages:
        messages = _check_patterns(data)
    if messages:
        raise CasesError(f"{source} has {len(messages)} problem(s):\n" + "\n".join(
            f"- {m}" for m in messages))
    root_id = data.get("root_id", default_root_id)
    suite = Suite(
        root_id=root_id, vm_config=encode_config(data.get("vm_config")),
        plugin_config=encode_config(data.get("plugin_config")),
        log_level=data.get("log_level", "info"), properties=dict(data.get("properties", {})),
        clusters=frozenset(data["clusters"]) if "clusters" in data else None,
        time_ns=data.get("time"), source=source,
        root_id_guess="" if "root_id" in data else root_id_guess)
    for i, spec in enumerate(data["cases"]):
        suite.cases.append(Case(
            name=spec["name"], index=i, root_id=spec.get("root_id", root_id),
            plugin_config=encode_config(spec["plugin_config"]) if "plugin_config" in spec
            else suite.plugin_config,
            properties=suite.properties | spec.get("properties", {}), ticks=spec.get("ticks", 0),
            request=_message(spec.get("request"), DEFAULT_REQUEST),
            response=_message(spec.get("response"), DEFAULT_RESPONSE),
            http_answers=list(spec.get("http_calls", [])),
            grpc_answers=list(spec.get("grpc_calls", [])), expect=dict(spec.get("expect", {})),
            own_plugin_config="plugin_config" in spec, own_root_id="root_id" in spec,
            streams=spec.get("streams", 1),
            start_after_ticks=spec.get("start_after_ticks", spec.get("ticks", 0))))
    return suite


def _explain(error: jsonschema.ValidationError) -> str:
    if error.validator == "additionalProperties" and isinstance(error.schema, dict):
        allowed = sorted(error.schema.get("properties", {}))
        return f"{error.message}; allowed here: {', '.join(allowed)}"
    if error.validator == "oneOf" and error.context:
        return "; or ".join(sorted({c.message for c in error.context}))
    return error.message


def load(path: Path, default_root_id: str, root_id_guess: str = "") -> Suite:
    try:
        text = path.read_text()
    except OSError as exc:
        raise CasesError(f"cannot read {path}: {exc.strerror}") from None
    return loads(text, path.name, default_root_id, root_id_guess)


def loads(text: str, name: str, default_root_id: str, root_id_guess: str = "") -> Suite:
    """The suite in ``text``, a cases file called ``name`` (for its errors)."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise CasesError(f"{name} is not valid YAML{where}: "
                         f"{getattr(exc, 'problem', None) or exc}") from None
    return parse(data, default_root_id, source=name, root_id_guess=root_id_guess)


def smoke(root_id: str, plugin_config: bytes = b"", vm_config: bytes = b"", root_id_guess: str = "") -> Suite:
    """What runs when a filter has no cases file: one plain GET through the whole lifecycle."""
    suite = Suite(root_id=root_id, vm_config=vm_config, plugin_config=plugin_config,
                  root_id_guess=root_id_guess)
    suite.cases.append(Case(
        name="GET / passes through without a trap", index=0, root_id=root_id,
        plugin_config=plugin_config, properties={}, ticks=0,
        request=_message(None, DEFAULT_REQUEST), response=_message(None, DEFAULT_RESPONSE),
        http_answers=[], grpc_answers=[], expect={}))
    return suite
