"""Envoy's properties: NUL-separated paths walked segment by segment, values serialised as Envoy does.

The rules follow Envoy's ``Context::getProperty`` and ``serializeValue``
(source/extensions/common/wasm/context.cc): the path is split on NUL (a trailing NUL ends
it, an empty path cannot be serialised); the first segment names a top-level value, each
further one a map key, a message field or a list index.  Strings go as their bytes,
integers as 8-byte little-endian int64, doubles as 8-byte IEEE 754, booleans as one byte;
maps as the proxy-wasm pairs format with each value serialised by these rules (nested maps
become pairs inside pairs), and lists as pairs whose keys are the elements and whose values
are empty.  The wrappers Envoy builds for ``request``, ``source`` and the like can be looked
into but not listed, so reading one whole fails with SERIALIZATION_FAILURE (``Opaque``).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

from workers.abitest.guest import serialize_pairs
from workers.abitest.state import Context, HeaderMap


class SerializationFailure(Exception):
    """Envoy cannot serialise this value (a wrapper map read whole, or an empty path)."""


class Opaque(dict[str, Any]):
    """A map Envoy can index but not list (its CEL wrapper has no ListKeys)."""


class Headers(dict[str, Any]):
    """A header map as Envoy exposes it: lower-case keys, repeated values joined with ","."""


MISSING: Any = object()

# Envoy's top-level names that need a stream (StreamActivation::FindValue returns nothing
# without stream info); ``xds``, ``node`` and the ``plugin_*`` names do not.
STREAM_PROPERTIES = frozenset({"request", "response", "connection", "upstream", "source", "destination",
                               "metadata", "filter_state", "upstream_filter_state"})


def split_path(raw: bytes) -> list[str]:
    """The segments of a NUL-separated path, as Envoy's getProperty walks them."""
    parts = raw.split(b"\0")
    if parts and parts[-1] == b"":
        parts.pop()  # "a\0b\0" ends at the last NUL
    return [p.decode("utf-8", "surrogateescape") for p in parts]


def tree(declared: Mapping[str, object]) -> dict[str, Any]:
    """Declared properties by dotted path (``node.metadata``) as one nested mapping.

    A key's dots separate segments; keys inside a mapping value are taken literally, so a
    segment containing a dot is written as a nested key (``filter_state: {wasm.x: y}``).
    """
    root: dict[str, Any] = {}
    for path, value in declared.items():
        *parents, last = path.split(".")
        node = root
        for part in parents:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[last] = merge(node.get(last, MISSING), value)
    return root


def merge(base: Any, over: Any) -> Any:
    """``over`` on top of ``base``; mappings merge key by key and keep ``base``'s class."""
    if over is MISSING:
        return base
    if isinstance(base, dict) and isinstance(over, dict):
        out = type(base)(base)
        for key, value in over.items():
            out[key] = merge(base.get(key, MISSING), value)
        return out
    return over


def walk(value: Any, segments: list[str]) -> Any:
    """The value at ``segments`` below ``value``, or MISSING."""
    for part in segments:
        if isinstance(value, Headers):
            value = value.get(part.lower(), MISSING)
        elif isinstance(value, dict):
            value = value.get(part, MISSING)
        elif isinstance(value, list):
            index = int(part) if part.isdigit() else -1
            value = value[index] if 0 <= index < len(value) else MISSING
        else:
            return MISSING
        if value is MISSING:
            return MISSING
    return value


def serialize(value: Any) -> bytes:
    """Envoy's ``serializeValue`` for the value types a case can declare or Envoy derives."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if isinstance(value, bool):
        return b"\1" if value else b"\0"
    if isinstance(value, int):
        return struct.pack("<q", value)
    if isinstance(value, float):
        return struct.pack("<d", value)
    if isinstance(value, Opaque):
        raise SerializationFailure("this map can be indexed but not listed")
    if isinstance(value, dict):
        return serialize_pairs((serialize(k), serialize(v)) for k, v in value.items())
    if isinstance(value, list):
        return serialize_pairs((serialize(v), b"") for v in value)
    raise SerializationFailure(f"no serialisation for {type(value).__name__}")


def derived(top: str, stream: Context) -> Any:
    """What Envoy derives for a stream-level top-level name, or MISSING."""
    if top == "request":
        return Opaque(_request(stream.request.headers))
    if top == "response":
        out = Opaque(headers=_headers(stream.response.headers), trailers=_headers(stream.response.trailers))
        status = stream.response.headers.get(b":status") if stream.response.headers else None
        if status is not None and status.isdigit():
            out["code"] = int(status)
        return out
    if top == "filter_state":
        return Opaque(stream.filter_state)
    return Opaque() if top in STREAM_PROPERTIES else MISSING


def _text(value: bytes) -> str:
    return value.decode("utf-8", "surrogateescape")


def _headers(m: HeaderMap | None) -> Headers:
    """Envoy's view of a header map as a property: each name once, its values joined with ","."""
    out = Headers()
    for k, v in m.pairs if m is not None else []:
        key, value = _text(k), _text(v)
        out[key] = f"{out[key]},{value}" if key in out else value
    return out


_REQUEST_FIELDS = (("path", b":path"), ("host", b":authority"), ("scheme", b":scheme"),
                   ("method", b":method"), ("id", b"x-request-id"), ("useragent", b"user-agent"),
                   ("referer", b"referer"))


def _request(h: HeaderMap | None) -> dict[str, Any]:
    """``request.*`` as Envoy's RequestWrapper answers it from the request headers."""
    out: dict[str, Any] = {"headers": _headers(h), "protocol": "HTTP/1.1"}
    values = [(name, h.get(header)) for name, header in _REQUEST_FIELDS] if h is not None else []
    out |= {name: _text(value) for name, value in values if value is not None}  # first entries
    if "path" in out:
        path, _, query = out["path"].partition("?")
        out["url_path"] = path
        out["query"] = query.split("#", 1)[0]
    return out
