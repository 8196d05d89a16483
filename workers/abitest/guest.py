"""Guest memory: reading arguments, and copying results out through the guest's allocator.

Every host function gets the wasmtime ``Caller`` as ``cx``; memory and allocator handles, and
the memory's base address (it never moves), are looked up once per instance.  Out-of-range
pointers raise ``InvalidMemory``, which the host turns into INVALID_MEMORY_ACCESS as Envoy does.
"""

from __future__ import annotations

import ctypes
import struct
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import wasmtime

from workers.abitest import fastcall


class InvalidMemory(Exception):
    """The guest passed a pointer or length outside its memory."""


class AllocationFailed(Exception):
    """The guest allocator returned 0 (or trapped) for a copy-out."""


Pairs = list[tuple[bytes, bytes]]
_SPAN = 2**32  # wasm32 addresses; only the part below the memory's length is ever touched
_U32, _U64 = struct.Struct("<I").pack_into, struct.Struct("<Q").pack_into


class Guest:
    def __init__(self) -> None:
        self.memory: wasmtime.Memory | None = None
        # Weak: the host functions reach this object from wasmtime's process-wide callback
        # table, and the allocator's export holds its store, so a strong reference would keep
        # every VM's store and linear memory alive for good.  The VM holds it (``bind``).
        self._allocator: weakref.ref[Callable[..., Any]] | None = None
        self.allocator_name = ""
        self.allocating = False
        self._view = memoryview(b"")  # linear memory's whole 4 GiB range (it never moves)
        self._known = 0  # its length when last asked (it only grows): the part to touch
        self._size: Callable[[Any], int] | None = None  # the memory's length, read cheaply

    def bind(self, store: wasmtime.Store, instance: wasmtime.Instance,
             allocator: str) -> Callable[..., Any] | None:
        """Look up memory and the allocator; returns the allocator's caller, which the caller
        must keep for as long as the guest is used."""
        exports = instance.exports(store)
        memory = exports.get("memory")
        self.memory = memory if isinstance(memory, wasmtime.Memory) else None
        if self.memory is not None:
            self._size = fastcall.memory_size(self.memory)
            base = ctypes.cast(self.memory.data_ptr(store), ctypes.c_void_p).value or 0
            self._view = memoryview((ctypes.c_ubyte * _SPAN).from_address(base)).cast("B")
            self._known = self.memory.data_len(store)
        alloc = exports.get(allocator)
        call = fastcall.export(store, alloc) if isinstance(alloc, wasmtime.Func) else None
        self._allocator = weakref.ref(call) if call is not None else None
        self.allocator_name = allocator
        return call

    def _mem(self) -> wasmtime.Memory:
        if self.memory is None:
            raise InvalidMemory("the module exports no memory")
        return self.memory

    def _check(self, cx: Any, ptr: int, size: int) -> None:
        """Raise ``InvalidMemory`` unless ``size`` guest bytes at ``ptr`` are in linear memory.

        Memory is read and written through a memoryview of its range: wasmtime-py's
        ``Memory.read`` and ``write`` build a ctypes array type per call, which dominated the
        cost of a host call.  The engine never moves linear memory (``compiler.engine_config``)
        and memory never shrinks, so the view is made once and the length known so far is a
        lower bound: wasmtime is asked for the length again only when an access would pass it.
        """
        if ptr < 0 or size < 0:
            raise InvalidMemory(f"{size} bytes at {ptr:#x} are outside guest memory")
        if ptr + size > self._known:
            self._known = self._length(cx)
            if ptr + size > self._known:
                raise InvalidMemory(f"{size} bytes at {ptr:#x} are outside guest memory")

    def _length(self, cx: Any) -> int:
        mem = self._mem()
        return self._size(cx) if self._size is not None else mem.data_len(cx)

    def read(self, cx: Any, ptr: int, size: int) -> bytes:
        if size == 0:
            return b""
        if ptr + size > self._known or ptr < 0 or size < 0:
            self._check(cx, ptr, size)
        return self._view[ptr:ptr + size].tobytes()

    def write(self, cx: Any, ptr: int, data: bytes) -> None:
        if data:
            end = ptr + len(data)
            if end > self._known or ptr < 0:
                self._check(cx, ptr, len(data))
            self._view[ptr:end] = data

    def put_u32(self, cx: Any, ptr: int, value: int) -> None:
        if ptr + 4 > self._known or ptr < 0:
            self._check(cx, ptr, 4)
        _U32(self._view, ptr, value & 0xFFFFFFFF)

    def put_u64(self, cx: Any, ptr: int, value: int) -> None:
        if ptr + 8 > self._known or ptr < 0:
            self._check(cx, ptr, 8)
        _U64(self._view, ptr, value & 0xFFFFFFFFFFFFFFFF)

    def string(self, cx: Any, ptr: int, size: int) -> str:
        return self.read(cx, ptr, size).decode("utf-8", "replace")

    def allocate(self, cx: Any, size: int) -> int:
        """Call the guest allocator; only the calls cpp-host allows may happen meanwhile."""
        allocator = self._allocator() if self._allocator is not None else None
        if allocator is None:
            raise AllocationFailed("the module has no allocator")
        self.allocating = True
        try:
            ptr = int(allocator(size, caller=cx))
        finally:
            self.allocating = False
        if ptr == 0:
            raise AllocationFailed(f"{self.allocator_name}({size}) returned 0")
        ptr &= 0xFFFFFFFF  # an i32, handed over signed
        if ptr + size > self._known and ptr + size > (end := self._length(cx)):
            raise AllocationFailed(f"{self.allocator_name}({size}) returned {ptr:#x}, outside linear "
                                   f"memory ({end:,} bytes)")
        return ptr

    def copy_out(self, cx: Any, data: bytes, ptr_ptr: int, len_ptr: int) -> None:
        """Hand ``data`` to the guest: allocate, copy, write pointer and length (0, 0 if empty)."""
        ptr = self.allocate(cx, len(data)) if data else 0
        self.write(cx, ptr, data)
        self.put_u32(cx, ptr_ptr, ptr)
        self.put_u32(cx, len_ptr, len(data))


def serialize_pairs(pairs: Iterable[tuple[bytes, bytes]]) -> bytes:
    """proxy-wasm map serialisation: count, (key len, value len)*, then key NUL value NUL."""
    items = list(pairs)
    head = struct.pack("<I", len(items)) + b"".join(
        struct.pack("<II", len(k), len(v)) for k, v in items)
    return head + b"".join(k + b"\0" + v + b"\0" for k, v in items)


def deserialize_pairs(data: bytes) -> Pairs:
    """The inverse of ``serialize_pairs``; ValueError on malformed input."""
    if not data:
        return []
    if len(data) < 4:
        raise ValueError("map shorter than its 4-byte count")
    (count,) = struct.unpack_from("<I", data, 0)
    offset = 4 + 8 * count
    if offset > len(data):
        raise ValueError(f"map declares {count} pairs but is {len(data)} bytes")
    pairs: Pairs = []
    for i in range(count):
        klen, vlen = struct.unpack_from("<II", data, 4 + 8 * i)
        end = offset + klen + 1 + vlen + 1
        if end > len(data):
            raise ValueError(f"pair {i} runs past the end of the map")
        key = data[offset:offset + klen]
        value = data[offset + klen + 1:offset + klen + 1 + vlen]
        pairs.append((key, value))
        offset = end
    return pairs
