"""What the emulated Envoy holds: header maps, streams, callouts, shared data, queues, metrics.

Kept apart from the host functions so the driver and expectations read the same objects the
guest changed.  Header keys are lower-cased on every write and lookup, as Envoy's header maps
do; values and bodies are bytes.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

from workers.abitest.abi import MetricType, Status


class HeaderMap:
    """An ordered multimap with Envoy's case handling (keys stored lower-case)."""

    def __init__(self, pairs: list[tuple[bytes, bytes]] | None = None) -> None:
        self.pairs: list[tuple[bytes, bytes]] = [(k.lower(), v) for k, v in pairs or []]

    def get(self, key: bytes) -> bytes | None:
        key = key.lower()
        return next((v for k, v in self.pairs if k == key), None)

    def get_all(self, key: bytes) -> list[bytes]:
        key = key.lower()
        return [v for k, v in self.pairs if k == key]

    def add(self, key: bytes, value: bytes) -> None:
        self.pairs.append((key.lower(), value))

    def replace(self, key: bytes, value: bytes) -> None:
        """Envoy's ``setCopy``: the first entry keeps its place, later duplicates go."""
        key = key.lower()
        out: list[tuple[bytes, bytes]] = []
        for k, v in self.pairs:
            if k != key:
                out.append((k, v))
            elif all(k2 != key for k2, _ in out):
                out.append((k, value))
        if all(k != key for k, _ in out):
            out.append((key, value))
        self.pairs = out

    def remove(self, key: bytes) -> None:
        key = key.lower()
        self.pairs = [(k, v) for k, v in self.pairs if k != key]

    def byte_size(self) -> int:
        """Envoy's ``HeaderMap::byteSize``: the sum of key and value lengths."""
        return sum(len(k) + len(v) for k, v in self.pairs)

    def as_text(self) -> list[tuple[str, str]]:
        return [(k.decode("utf-8", "replace"), v.decode("utf-8", "replace")) for k, v in self.pairs]

    def __len__(self) -> int:
        return len(self.pairs)


@dataclass
class Direction:
    """One direction of an HTTP stream: request (decode) or response (encode)."""

    headers: HeaderMap | None = None
    trailers: HeaderMap | None = None
    buffered: bytes = b""  # the body buffer the filter sees (grows while it returns Pause)
    forwarded: bytes = b""  # what went on to the next hop
    end_of_stream: bool = False
    paused: bool = False  # the filter stopped it; proxy_continue_stream resumes it
    continued: bool = False  # proxy_continue_stream was called during the running callback
    actions: dict[str, str] = field(default_factory=dict)

    def resume(self) -> None:
        """``proxy_continue_stream``: Envoy runs it after the callback returns, so it also
        undoes a stop that this very callback returns."""
        self.paused = False
        self.continued = True


@dataclass
class LocalResponse:
    code: int
    details: str
    body: bytes
    headers: HeaderMap
    grpc_status: int


@dataclass
class HttpCall:
    token: int
    context_id: int  # the root context that owns the callout (and receives its answer)
    upstream: str
    headers: HeaderMap
    body: bytes
    trailers: HeaderMap
    timeout_ms: int
    caller: int = 0  # the effective context when the call was made
    answered: bool = False


@dataclass
class GrpcCall:
    token: int
    context_id: int
    upstream: str
    service: str
    method: str
    metadata: HeaderMap
    messages: list[bytes]
    timeout_ms: int
    stream: bool
    caller: int = 0
    closed: bool = False
    answered: bool = False


@dataclass
class Context:
    id: int
    root_id: str
    parent: int  # 0 for a root context
    request: Direction = field(default_factory=Direction)
    response: Direction = field(default_factory=Direction)
    local_response: LocalResponse | None = None
    closed: list[str] = field(default_factory=list)
    tick_period_ms: int = 0
    next_tick_ns: int | None = None  # on the world's virtual clock; set by the driver
    scheduled_period_ms: int = 0  # the period next_tick_ns was scheduled with
    done_called: bool = False
    filter_state: dict[str, bytes] = field(default_factory=dict)  # proxy_set_property's, by key


@dataclass
class Metric:
    type: MetricType
    name: str
    value: int = 0
    records: list[int] = field(default_factory=list)


@dataclass
class Queue:
    id: int
    vm_id: str
    name: str
    owner: int  # the root context that registered it
    items: list[bytes] = field(default_factory=list)


class SharedData:
    """Envoy's process-wide key/value store with compare-and-swap ids."""

    def __init__(self) -> None:
        self.values: dict[bytes, tuple[bytes, int]] = {}
        self._cas = itertools.count(1)

    def get(self, key: bytes) -> tuple[bytes, int] | None:
        return self.values.get(key)

    def set(self, key: bytes, value: bytes, cas: int) -> Status:
        current = self.values.get(key)
        if cas and (current is None or current[1] != cas):
            return Status.CAS_MISMATCH
        self.values[key] = (value, next(self._cas))
        return Status.OK


@dataclass
class World:
    """Process-wide state shared by every VM of one test run (shared data, queues, metrics)."""

    shared: SharedData = field(default_factory=SharedData)
    queues: dict[int, Queue] = field(default_factory=dict)
    metrics: dict[int, Metric] = field(default_factory=dict)
    clock_ns: int | None = None  # fixed start time for reproducible cases; None = wall clock
    elapsed_ns: int = 0  # virtual time the driver advanced (tick periods), added to the clock

    def now_ns(self) -> int:
        return (self.clock_ns if self.clock_ns is not None else time.time_ns()) + self.elapsed_ns

    def metric_by_name(self, name: str) -> Metric | None:
        return next((m for m in self.metrics.values() if m.name == name), None)

