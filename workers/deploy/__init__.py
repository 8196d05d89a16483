"""Deploying pushed modules: an Istio ``WasmPlugin``, a filter entry in Gloo Gateways, or a
plain Envoy bootstrap, written with server-side apply under wasmbot's own field manager.

``target`` resolves what to deploy and checks its ABI against the platform; ``istio``,
``gloo`` and ``envoy`` build what each platform reads; ``cluster`` talks to the Kubernetes
API.  The deploy stage (workers/stages/deploy.py) drives them.  See docs/deploy.md.
"""
