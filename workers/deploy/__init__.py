"""Deploying pushed modules: Istio ``WasmPlugin`` resources (and, later, Gloo Gateways and
plain Envoy), applied with server-side apply under wasmbot's own field manager.

``target`` resolves what to deploy and checks its ABI against the platform; ``istio`` builds
the resource; ``cluster`` talks to the Kubernetes API.  See docs/deploy.md.
"""
