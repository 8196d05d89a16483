"""Shared pieces of the OCI tests: a small module, settings for a registry, log counting."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import wasmtime

from bot.localservices import Service
from workers.config import Settings
from workers.oci import image
from workers.oci.connect import connect
from workers.oci.registry import Registry


def module_bytes(padding: int = 0) -> bytes:
    """A valid proxy-wasm-shaped module; ``padding`` bytes of data make it as large as wanted."""
    data = f'(data (i32.const 0) "{"x" * padding}")' if padding else ""
    return wasmtime.wat2wasm(f'(module (memory (export "memory") {max(1, padding // 65536 + 1)}) {data} '
                             '(func (export "proxy_abi_version_0_2_1")) '
                             '(func (export "malloc") (param i32) (result i32) i32.const 0))')


def host_of(service: Service) -> str:
    return service.url.split("://", 1)[1]


def client(service: Service, tmp: Path, config: dict[str, Any] | None = None,
           waits: list[float] | None = None) -> Registry:
    host = host_of(service)
    s = Settings(data_dir=tmp / "data", registries={host: config} if config else {},
                 docker_config=tmp / "no-docker-config.json")
    return connect(s, host, sleep=(waits.append if waits is not None else lambda seconds: None))


def built(variant: str = "compat", module: bytes | None = None, annotations: dict[str, str] | None = None
          ) -> image.Image:
    return image.build(variant, module or module_bytes(), image.Runtime(["0.2.1"], ["add-header"]),
                       annotations or {"org.opencontainers.image.title": "add-header"})


def log_lines(service: Service, pattern: str) -> list[str]:
    """Access-log request lines of the registry matching ``pattern`` (a regex on 'METHOD PATH')."""
    requests = re.findall(r'"([A-Z]+ /v2/[^ ]*) HTTP/1\.1" (\d+)', service.log.read_text())
    return [f"{line} {status}" for line, status in requests if re.search(pattern, line)]


def blob_uploads(service: Service, repository: str) -> int:
    return len(log_lines(service, rf"^(POST|PUT|PATCH) /v2/{re.escape(repository)}/blobs/uploads/"))
