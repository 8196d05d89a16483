"""Envoy-compatible properties (issue 21, defect 3): NUL-separated paths walked segment by segment,
values serialised as Envoy's ``serializeValue`` sends them, ``proxy_set_property`` as filter state.

The WAT guests here call ``proxy_get_property`` / ``proxy_set_property`` directly; the Go SDK
filter in tests/filters/go-properties reads the same properties through the SDK's own parsers.
"""

from __future__ import annotations

import struct
from pathlib import Path

from test_abitest_filters import Build, run_filter
from wasmguest import OUT, Harness

from workers import abitest
from workers.abitest.abi import Status
from workers.abitest.guest import deserialize_pairs, serialize_pairs
from workers.abitest.report import render_text

P, L, _, _ = OUT

NODE_METADATA = {"ISTIO_VERSION": "1.24.0", "LABELS": {"app": "shop", "version": "v1"}, "replicas": 3,
                 "ratio": 0.5, "canary": True, "zones": ["eu-1", "eu-2"]}


def getter(**properties: object) -> Harness:
    h = Harness("proxy_get_property")
    h.host.declare({"node.id": "node-1", **properties})
    return h


def get(h: Harness, path: str | bytes) -> tuple[int, bytes | None]:
    p, pn = h.put(path)
    status = h.call(p, pn, P, L)
    return status, h.out() if status == Status.OK else None


def test_request_headers_are_envoys_pairs_map_with_repeated_values_joined() -> None:
    h = getter()
    status, raw = get(h, "request\0headers")
    assert status == Status.OK and raw is not None
    assert deserialize_pairs(raw) == [(b":path", b"/a?b=1"), (b":method", b"GET"),
                                      (b":authority", b"example.com"), (b"x-dup", b"1,2")]
    assert get(h, "request\0headers\0X-Dup") == (Status.OK, b"1,2")  # names are looked up lower-cased
    assert get(h, "request\0headers\0x-none") == (Status.NOT_FOUND, None)
    assert get(h, "request\0query") == (Status.OK, b"b=1")


def test_source_address_is_raw_bytes_and_its_port_an_int64_on_streams_only() -> None:
    h = getter(**{"source.address": "10.1.2.3:5555", "source.port": 5555})
    assert get(h, "source\0address") == (Status.OK, b"10.1.2.3:5555")
    assert get(h, "source\0port") == (Status.OK, struct.pack("<q", 5555))
    h.in_root()  # Envoy's root context has no stream info: no source, request or filter state
    assert get(h, "source\0address") == (Status.NOT_FOUND, None)
    assert get(h, "request\0path") == (Status.NOT_FOUND, None)
    assert get(h, "node\0id") == (Status.OK, b"node-1")


def test_nested_node_metadata_is_walked_segment_by_segment() -> None:
    h = getter(**{"node.metadata": NODE_METADATA})
    assert get(h, "node\0metadata\0LABELS\0app") == (Status.OK, b"shop")
    assert get(h, "node\0metadata\0replicas") == (Status.OK, struct.pack("<q", 3))
    assert get(h, "node\0metadata\0ratio") == (Status.OK, struct.pack("<d", 0.5))
    assert get(h, "node\0metadata\0canary") == (Status.OK, b"\1")
    assert get(h, "node\0metadata\0zones\0001") == (Status.OK, b"eu-2")  # a list by index
    assert get(h, "node\0metadata\0zones\0002") == (Status.NOT_FOUND, None)
    assert get(h, "node\0metadata\0LABELS\0app\0deeper") == (Status.NOT_FOUND, None)
    labels = serialize_pairs([(b"app", b"shop"), (b"version", b"v1")])
    assert get(h, "node\0metadata\0LABELS") == (Status.OK, labels)
    assert get(h, "node\0metadata\0zones") == (Status.OK, serialize_pairs([(b"eu-1", b""), (b"eu-2", b"")]))
    status, whole = get(h, "node\0metadata")
    assert status == Status.OK and whole is not None
    assert dict(deserialize_pairs(whole))[b"LABELS"] == labels  # maps nest as pairs inside pairs


def test_a_dotted_declaration_and_a_nested_one_build_the_same_tree() -> None:
    h = getter(**{"node.metadata.LABELS.app": "shop", "metadata": {"filter_metadata": {"envoy.lb": {"canary": True}}}})
    assert get(h, "node\0metadata\0LABELS\0app") == (Status.OK, b"shop")
    assert get(h, "metadata\0filter_metadata\0envoy.lb\0canary") == (Status.OK, b"\1")  # a dot inside a segment


def test_plugin_root_id_and_vm_id_on_root_and_stream_contexts() -> None:
    h = getter()
    assert get(h, "plugin_root_id") == (Status.OK, b"my-root")
    assert get(h, "plugin_root_id\0") == (Status.OK, b"my-root")  # a trailing NUL ends the path
    assert get(h.in_root(), "plugin_root_id") == (Status.OK, b"my-root")
    assert get(h, "plugin_vm_id") == (Status.OK, b"vm")


def test_paths_envoy_cannot_serialise_or_does_not_know() -> None:
    h = getter()
    assert get(h, "request") == (Status.SERIALIZATION_FAILURE, None)  # a wrapper: indexable, not listable
    assert get(h, "") == (Status.SERIALIZATION_FAILURE, None)
    assert get(h, "request.path") == (Status.NOT_FOUND, None)  # one segment named "request.path"
    assert get(h, "\0request") == (Status.NOT_FOUND, None)


def test_set_property_is_filter_state_under_wasm_and_the_whole_path() -> None:
    s = Harness("proxy_set_property")
    for path, value in (("decision", "allow"), ("a\0b", "nested")):
        p, pn = s.put(path)
        v, vn = s.put(value)
        assert s.call(p, pn, v, vn) == Status.OK
    assert s.stream.filter_state == {"wasm.decision": b"allow", "wasm.a\0b": b"nested"}
    p, pn = s.put("decision")
    v, vn = s.put("x")
    assert s.in_root().call(p, pn, v, vn) == Status.NOT_FOUND  # no stream info on a root context


def test_set_property_reads_back_as_envoy_allows() -> None:
    h = getter()
    h.stream.filter_state.update({"wasm.decision": b"allow", "wasm.a\0b": b"nested"})
    assert get(h, "decision") == (Status.OK, b"allow")
    assert get(h, "filter_state\0wasm.decision") == (Status.OK, b"allow")
    assert get(h, "a\0b") == (Status.NOT_FOUND, None)  # Envoy looks up wasm.a, which was never set
    assert get(h, "filter_state\0wasm.a\0b") == (Status.NOT_FOUND, None)


def test_go_sdk_reads_properties_through_its_own_parsers(filter_module: Build) -> None:
    report = run_filter(filter_module, "go-properties")
    assert report.ok, render_text(report)
    assert [c.name for c in report.passed] == [
        "request.headers, source.address, node.metadata and plugin_root_id as the SDK parses them",
        "a case's own properties replace the suite's"]


def test_a_wrong_property_fails_the_go_sdk_case(filter_module: Build, tmp_path: Path) -> None:
    text = (Path(__file__).parent / "filters/go-properties/wasm-tests.yaml").read_text()
    bad = tmp_path / "wasm-tests.yaml"
    bad.write_text(text.replace("app: shop", "app: cart", 1))
    report = run_filter(filter_module, "go-properties", abitest.load(bad, "go-properties"))
    [failed] = report.failed
    assert [str(d) for d in failed.differences] == [
        "request.headers['x-app']: expected 'shop', got 'cart'",
        "request.headers['x-label-app']: expected 'shop', got 'cart'"]
