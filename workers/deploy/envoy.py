"""Plain Envoy: a bootstrap that loads the module with ``envoy.filters.http.wasm``, for running a
filter locally (``envoy -c envoy.yaml``).  Envoy cannot pull OCI images, so the module is
pulled (digest verified) and written beside the bootstrap; the wasm filter sits before the
router, as Envoy requires.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from workers.config import Environment
from workers.deploy.target import Target

FILTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
ROUTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
HCM_TYPE = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
)
FAILURE_POLICY = {"FAIL_CLOSE": "FAIL_CLOSED", "FAIL_OPEN": "FAIL_OPEN", "FAIL_RELOAD": "FAIL_RELOAD"}


def wasm_filter(
    target: Target, env: Environment, module: Path, *, root_id: str | None, config: Any
) -> dict[str, Any]:
    """The HTTP filter entry, usable on its own as a snippet in an existing listener."""
    root = root_id or (target.root_ids[0] if target.root_ids else target.filter_name)
    plugin: dict[str, Any] = {
        "name": target.filter_name,
        "root_id": root,
        "vm_config": {
            "vm_id": target.filter_name,
            "runtime": "envoy.wasm.runtime.v8",
            "code": {"local": {"filename": str(module)}},
        },
    }
    if config is not None:
        plugin["configuration"] = {
            "@type": "type.googleapis.com/google.protobuf.StringValue",
            "value": json.dumps(config),
        }
    if env.fail_strategy:
        plugin["failure_policy"] = FAILURE_POLICY[env.fail_strategy]
    return {"name": "envoy.filters.http.wasm", "typed_config": {"@type": FILTER_TYPE, "config": plugin}}


def bootstrap(wasm: dict[str, Any], port: int = 10000, admin_port: int = 9901) -> dict[str, Any]:
    """A whole Envoy: one listener whose only route answers 200, through the filter."""
    manager = {
        "@type": HCM_TYPE,
        "stat_prefix": "wasmbot",
        "route_config": {
            "name": "local",
            "virtual_hosts": [
                {
                    "name": "local",
                    "domains": ["*"],
                    "routes": [
                        {
                            "match": {"prefix": "/"},
                            "direct_response": {
                                "status": 200,
                                "body": {"inline_string": "hello from envoy\n"},
                            },
                        }
                    ],
                }
            ],
        },
        "http_filters": [wasm, {"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER_TYPE}}],
    }
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "wasmbot",
                    "address": {"socket_address": {"address": "0.0.0.0", "port_value": port}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": manager,
                                }
                            ]
                        }
                    ],
                }
            ]
        },
    }
