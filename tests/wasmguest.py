"""A guest that calls one host function on the test's behalf, for host-function tests.

``Harness("proxy_log")`` builds a WAT module importing that function from ``env`` (or a WASI
module) and exporting ``call`` with the same signature, which just forwards its arguments:
the host function is called from a real guest, and the test reads the guest-visible results
(out-pointers, copied buffers) from the guest's own memory.
"""

from __future__ import annotations

import struct

import wasmtime

from workers.abitest import abi
from workers.abitest.guest import Guest, deserialize_pairs, serialize_pairs
from workers.abitest.host import Host
from workers.abitest.state import Context, HeaderMap, World
from workers.abitest.vm import VM, Limits, compile_module
from workers.abitest.wasi import Wasi

HEAP = 65536  # the bump allocator hands out memory from here
OUT = (0x10, 0x14, 0x18, 0x1C)  # out-pointer slots
SCRATCH = 0x100


def wat(name: str, module: str = "env", abi_version: str = "0.2.1",
        params: tuple[str, ...] | None = None, results: tuple[str, ...] = ("i32",),
        allocator_body: str | None = None, extra: str = "") -> str:
    params = params if params is not None else abi.HOST_FUNCTIONS[abi_version][name]
    p = " ".join(params)
    r = " ".join(results)
    gets = " ".join(f"(local.get {i})" for i in range(len(params)))
    alloc = allocator_body or """
        (local $p i32) (local.set $p (global.get $heap))
        (global.set $heap (i32.add (global.get $heap) (local.get $n))) (local.get $p)"""
    return f"""(module
      (import "{module}" "{name}" (func $f (param {p}) (result {r})))
      {extra}
      (memory (export "memory") 4)
      (global $heap (mut i32) (i32.const {HEAP}))
      (func (export "proxy_abi_version_{abi_version.replace('.', '_')}"))
      (func (export "proxy_on_memory_allocate") (param $n i32) (result i32) {alloc})
      (func (export "call") (param {p}) (result {r}) {gets} (call $f)))"""


class Harness:
    def __init__(self, name: str, *, module: str = "env", abi_version: str = "0.2.1",
                 params: tuple[str, ...] | None = None, results: tuple[str, ...] = ("i32",),
                 allocator_body: str | None = None, extra: str = "",
                 clusters: frozenset[str] | None = None) -> None:
        text = wat(name, module, abi_version, params, results, allocator_body, extra)
        compiled, _ = compile_module(wasmtime.wat2wasm(text), None)
        self.world = World(clock_ns=1_700_000_000_123_456_789)
        self.guest = Guest()
        self.host = Host(self.guest, self.world, abi_version, vm_id="vm", vm_config=b"vm-config",
                         properties={"node.id": "node-1"}, clusters=clusters)
        self.wasi = Wasi(self.guest, self.host.log, self.world.now_ns)
        self.vm = VM(compiled, self.host, self.wasi, self.guest, "proxy_on_memory_allocate",
                     Limits(fuel=10_000_000))
        self.root = Context(1, "my-root", 0)
        self.stream = Context(2, "my-root", 1)
        self.stream.request.headers = HeaderMap([(b":path", b"/a?b=1"), (b":method", b"GET"),
                                                 (b":authority", b"example.com"), (b"X-Dup", b"1"),
                                                 (b"x-dup", b"2")])
        self.host.contexts = {1: self.root, 2: self.stream}
        self.host.current = self.stream
        self._scratch = SCRATCH

    # -- calling -----------------------------------------------------------------------------

    def call(self, *args: int) -> int:
        result = self.vm.call("call", *args)
        assert result is not None
        return result

    def in_root(self) -> Harness:
        self.host.current = self.root
        return self

    # -- guest memory --------------------------------------------------------------------------

    def put(self, data: bytes | str) -> tuple[int, int]:
        """Copy ``data`` into guest scratch memory: (pointer, length)."""
        raw = data.encode() if isinstance(data, str) else data
        ptr = self._scratch
        self.vm.guest.write(self.vm.store, ptr, raw) if raw else None
        self._scratch += len(raw) + 8
        return ptr, len(raw)

    def put_pairs(self, pairs: list[tuple[str, str]]) -> tuple[int, int]:
        return self.put(serialize_pairs((k.encode(), v.encode()) for k, v in pairs))

    def u32(self, ptr: int) -> int:
        value: int = struct.unpack("<I", self.mem(ptr, 4))[0]
        return value

    def u64(self, ptr: int) -> int:
        value: int = struct.unpack("<Q", self.mem(ptr, 8))[0]
        return value

    def mem(self, ptr: int, size: int) -> bytes:
        return self.vm.guest.read(self.vm.store, ptr, size)

    def out(self, ptr_slot: int = OUT[0], len_slot: int = OUT[1]) -> bytes:
        """Bytes the host copied out: read the pointer and length it wrote, then the data."""
        ptr, size = self.u32(ptr_slot), self.u32(len_slot)
        if size == 0:
            assert ptr == 0
            return b""
        assert ptr >= HEAP, "copied-out data must come from the guest allocator"
        return self.mem(ptr, size)

    def out_pairs(self) -> list[tuple[bytes, bytes]]:
        return deserialize_pairs(self.out())
