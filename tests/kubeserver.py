"""A real Kubernetes API server for the deploy tests, serving the real Istio and Gloo CRDs.

etcd (Debian's ``etcd-server``) stores; ``k8s.io/apiextensions-apiserver`` (built by
deploy/setup.sh with ``go install`` from the Go module proxy, cached) serves
``apiextensions.k8s.io`` and every custom resource, with kube-apiserver's own code for
server-side apply, managedFields, field-manager conflicts, pruning, structural-schema and CEL
validation, resourceVersion preconditions and dry runs: what a stand-in gets wrong.

An extension API server delegates authentication and authorisation to a core API server and
reads core informers from it.  ``CoreStandIn`` is that core server, cut down to what delegation
asks: TokenReview (each token in ``USERS`` is a user), SubjectAccessReview (allowed, and each
review recorded), and empty lists with idle watches for informers.  The admission plugins and
priority-and-fairness, which need a real core API, are off; nothing in wasmbot's deploys
depends on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import urllib3
import yaml
from aiohttp import web
from loopback import LoopbackServer

from bot.localservices import Service, _wait_until, free_port

VERSION = "v0.34.2"  # k8s.io/apiextensions-apiserver, as deploy/setup.sh builds it
ROOT = Path(__file__).resolve().parents[1]
CRDS = ROOT / "tests" / "testdata" / "k8s"
USERS = {"wasmbot-test-kube-token": "wasmbot", "someone-else-token": "someone-else", "admin-token": "admin"}
TOKEN = "wasmbot-test-kube-token"
KINDS = [("extensions.istio.io", "v1alpha1", "wasmplugins"), ("gateway.solo.io", "v1", "gateways")]


@dataclass(frozen=True)
class Write:
    verb: str  # create, update, patch (server-side apply is a patch), delete
    resource: str
    namespace: str
    name: str


def binary() -> Path:
    """The server, built once by deploy/tools/apiextensions-apiserver.sh (as setup.sh runs it)."""
    for tool, package in (("etcd", "etcd-server"), ("kubectl", "kubernetes-client")):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is not installed (Debian package {package}): run `bash deploy/setup.sh`")
    built = subprocess.run(["bash", str(ROOT / "deploy" / "tools" / "apiextensions-apiserver.sh")],
                           env=os.environ | {"APIEXTENSIONS_APISERVER_VERSION": VERSION},
                           capture_output=True, text=True, check=True)
    return Path(built.stdout.strip().splitlines()[-1])


class CoreStandIn(LoopbackServer):
    """The core API server an extension server delegates to (see the module docstring)."""

    def __init__(self) -> None:
        self.reviews: list[dict[str, Any]] = []  # the SubjectAccessReviews' specs, in order
        self._changed = threading.Condition()
        # (verb, resource, name) -> what to do, once, before that request of wasmbot's is allowed
        self.before: dict[tuple[str, str, str], Callable[[], None]] = {}

    def make_app(self) -> web.Application:
        self._closing = asyncio.Event()  # ends the idle watches, so that the server can stop
        app = web.Application()
        app.router.add_post("/apis/authentication.k8s.io/v1/tokenreviews", self._token_review)
        app.router.add_post("/apis/authorization.k8s.io/v1/subjectaccessreviews", self._access_review)
        app.router.add_get("/{rest:.*}", self._list_or_watch)
        return app

    def kubeconfig(self, path: Path) -> Path:
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "core",
            "clusters": [{"name": "core", "cluster": {"server": self.url}}],
            "users": [{"name": "core", "user": {}}],
            "contexts": [{"name": "core", "context": {"cluster": "core", "user": "core"}}]}))
        return path

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self._closing.set)
        super().stop()

    async def _token_review(self, request: web.Request) -> web.Response:
        review = await request.json()
        user = USERS.get(review.get("spec", {}).get("token", ""))
        review["status"] = {"authenticated": True, "user": {"username": user, "groups": ["system:authenticated"]}} \
            if user else {"authenticated": False, "error": "unknown token"}
        return web.json_response(review)

    async def _access_review(self, request: web.Request) -> web.Response:
        review = await request.json()
        spec = review.get("spec", {})
        with self._changed:
            self.reviews.append(spec)
            self._changed.notify_all()
        attributes = spec.get("resourceAttributes", {})
        key = (attributes.get("verb", ""), attributes.get("resource", ""), attributes.get("name", ""))
        if spec.get("user") == "wasmbot" and key in self.before:
            await asyncio.to_thread(self.before.pop(key))  # off the loop: it is reviewed here too
        review["status"] = {"allowed": True, "reason": "the test cluster allows everyone"}
        return web.json_response(review)

    async def _list_or_watch(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("watch") in ("1", "true"):
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request)
            with contextlib.suppress(TimeoutError):  # an idle watch: no events until it times out or ends
                await asyncio.wait_for(self._closing.wait(), float(request.query.get("timeoutSeconds", "300")))
            return response
        return web.json_response({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "1"},
                                  "items": []})


@dataclass
class KubeServer:
    """etcd + apiextensions-apiserver + the core stand-in, all on loopback ports."""

    workdir: Path
    url: str = ""
    ca: Path = field(init=False)
    core: CoreStandIn = field(default_factory=CoreStandIn)
    services: list[Service] = field(default_factory=list)

    def start(self) -> KubeServer:
        server = binary()
        self.core.start()
        etcd_port, peer_port, port = free_port(), free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        self._run("etcd", ["etcd", "--name", "test", "--data-dir", str(self.workdir / "etcd"),
                           "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
                           "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
                           "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
                           "--initial-cluster", f"test=http://127.0.0.1:{peer_port}"],
                  f"{etcd_url}/health")
        core = self.core.kubeconfig(self.workdir / "core.kubeconfig")
        certs = self.workdir / "certs"
        self.url = f"https://127.0.0.1:{port}"
        self._run("apiextensions-apiserver", [
            str(server), "--etcd-servers", etcd_url, "--bind-address", "127.0.0.1",
            "--secure-port", str(port), "--cert-dir", str(certs),
            "--kubeconfig", str(core), "--authentication-kubeconfig", str(core),
            "--authorization-kubeconfig", str(core), "--authentication-skip-lookup",
            # every request reviewed, none cached: the reviews are the record of what was asked
            "--authorization-webhook-cache-authorized-ttl=0s", "--authorization-webhook-cache-unauthorized-ttl=0s",
            "--disable-admission-plugins", "NamespaceLifecycle,MutatingAdmissionWebhook,"
            "ValidatingAdmissionWebhook,ValidatingAdmissionPolicy,MutatingAdmissionPolicy",
            "--enable-priority-and-fairness=false"], f"{self.url}/healthz")
        self.ca = certs / "apiserver.crt"
        for crd in ("istio-wasmplugin-crd.yaml", "gloo-gateway-crd.yaml"):
            self.install_crd(yaml.safe_load((CRDS / crd).read_text()))
        return self

    def _run(self, name: str, argv: list[str], ready: str) -> None:
        log = self.workdir / f"{name}.log"
        process = subprocess.Popen(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=self.workdir)
        service = Service(name, process, ready, log)
        self.services.append(service)
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)  # its own cert, not yet known
        _wait_until(lambda: _answers(ready), service, timeout=60)

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop()
        self.core.stop()

    # -- a client, as kubectl would be ---------------------------------------------------------

    def request(self, method: str, path: str, token: str = TOKEN, **kwargs: Any) -> requests.Response:
        return requests.request(method, self.url + path, verify=str(self.ca), timeout=30,
                                headers={"Authorization": f"Bearer {token}"} | kwargs.pop("headers", {}),
                                **kwargs)

    def install_crd(self, crd: dict[str, Any]) -> None:
        """Create a CRD and return once the server says it is Established (its watch says so)."""
        name = crd["metadata"]["name"]
        base = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
        created = self.request("POST", base, token="admin-token", json=crd)
        assert created.status_code in (201, 409), created.text
        with self.request("GET", f"{base}?watch=true&fieldSelector=metadata.name%3D{name}"
                          "&timeoutSeconds=60", token="admin-token", stream=True) as events:
            for line in events.iter_lines():
                obj = json.loads(line)["object"]
                conditions = (obj.get("status") or {}).get("conditions") or []
                if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                    return
        raise AssertionError(f"CRD {name} was not established in 60 s")

    def kubeconfig(self, path: Path, token: str = TOKEN) -> Path:
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {"server": self.url, "certificate-authority": str(self.ca)}}],
            "users": [{"name": "test", "user": {"token": token}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}]}))
        return path

    def kubectl(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``kubectl ARGS`` against this server, as an admin (``get --raw``: an extension server
        has no core API for kubectl's discovery)."""
        config = self.workdir / "kubectl.kubeconfig"
        if not config.exists():
            self.kubeconfig(config, token="admin-token")
        return subprocess.run(["kubectl", "--kubeconfig", str(config), *args], capture_output=True, text=True,
                              timeout=60, check=False)

    def read(self, path: str) -> dict[str, Any] | None:
        """``kubectl get --raw PATH``, parsed; None when the server says NotFound."""
        got = self.kubectl("get", "--raw", path)
        if got.returncode != 0 and "(NotFound)" in got.stderr:
            return None
        assert got.returncode == 0, got.stderr
        found: dict[str, Any] = json.loads(got.stdout)
        return found

    @property
    def objects(self) -> dict[tuple[str, str, str], dict[str, Any]]:
        """Every WasmPlugin and Gateway in the cluster, by (plural, namespace, name), read with kubectl."""
        found = {}
        for group, version, plural in KINDS:
            listed = self.read(f"/apis/{group}/{version}/{plural}")
            assert listed is not None
            for obj in listed["items"]:
                found[(plural, obj["metadata"]["namespace"], obj["metadata"]["name"])] = obj
        return found

    @property
    def writes(self) -> list[Write]:
        """What wasmbot asked to change, in order, as the server's authoriser was asked (reads left out)."""
        with self.core._changed:
            reviews = list(self.core.reviews)
        return [Write(a["verb"], a.get("resource", ""), a.get("namespace", ""), a.get("name", ""))
                for r in reviews if r.get("user") == "wasmbot"
                and (a := r.get("resourceAttributes", {})).get("verb") in ("create", "update", "patch", "delete")]

    def put(self, obj: dict[str, Any], manager: str = "kubectl-create") -> dict[str, Any]:
        """Create ``obj`` as someone else would (another token and field manager)."""
        group, version = obj["apiVersion"].split("/")
        plural = next(p for g, v, p in KINDS if (g, v) == (group, version))
        answer = self.request("POST", f"/apis/{group}/{version}/namespaces/{obj['metadata']['namespace']}/{plural}"
                              f"?fieldManager={manager}", token="someone-else-token", json=obj)
        assert answer.status_code == 201, answer.text
        created: dict[str, Any] = answer.json()
        return created

    def get(self, group: str, version: str, namespace: str, plural: str, name: str) -> dict[str, Any] | None:
        """One object as ``kubectl get`` shows it (None: there is none)."""
        return self.read(f"/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}")


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1, verify=False).status_code == 200
    except (requests.ConnectionError, requests.Timeout):  # a loaded machine: not ready yet
        return False
