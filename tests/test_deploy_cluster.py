"""The deploy stage against a real Kubernetes API server (tests/kubeserver.py): etcd and
apiextensions-apiserver serving the real Istio and Gloo CRDs, read back as kubectl would.

Each test has its own namespace on one server for the session.  These are the defects that
the old in-process stand-in hid (issue 18); each test failed before its fix.
"""

from __future__ import annotations

import copy
import json
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubeserver import KubeServer
from ocihelp import built, client, host_of, module_bytes
from test_deploy import GATEWAY, pushed, run_job, settings_for

from bot.localservices import Service
from workers.commands import DeployCommand, RollbackCommand
from workers.config import Environment, Settings
from workers.oci import reference
from workers.oci.push import push
from workers.stages import StageError

ISTIO = ("extensions.istio.io", "v1alpha1")
GLOO = ("gateway.solo.io", "v1")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeServer]:
    """One server for this module's tests, each in a namespace of its own."""
    server = KubeServer(tmp_path_factory.mktemp("kube")).start()
    yield server
    server.stop()


@pytest.fixture
def namespace() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def managers(obj: dict[str, Any]) -> list[str]:
    return sorted({entry["manager"] for entry in obj["metadata"].get("managedFields", [])})


def edit(cluster: KubeServer, path: str, patch: dict[str, Any], manager: str) -> dict[str, Any]:
    """What ``kubectl edit`` sends: a merge patch under its own field manager."""
    answer = cluster.request("PATCH", f"{path}?fieldManager={manager}", json=patch,
                             headers={"Content-Type": "application/merge-patch+json"})
    assert answer.status_code == 200, answer.text
    edited: dict[str, Any] = answer.json()
    return edited


def test_a_deploy_after_someone_edits_the_plugin_succeeds_and_leaves_their_field(
        cluster: KubeServer, namespace: str, registry: Service, tmp_path: Path) -> None:
    settings = settings_for(tmp_path, cluster, namespace=namespace)
    first = pushed(registry, tmp_path, "cluster/edited:v1", module_bytes(padding=1))
    run_job(settings, DeployCommand(target=first, env="staging"), tmp_path)
    path = f"/apis/{ISTIO[0]}/{ISTIO[1]}/namespaces/{namespace}/wasmplugins/edited"
    edit(cluster, path, {"spec": {"vmConfig": {"env": [{"name": "DEBUG", "value": "1"}]}}}, "kubectl-edit")

    second = pushed(registry, tmp_path, "cluster/edited:v2", module_bytes(padding=2))
    result = run_job(settings, DeployCommand(target=second, env="staging"), tmp_path)
    stored = cluster.get(*ISTIO, namespace, "wasmplugins", "edited")
    assert stored is not None and result["deployed_digest"] == second.split("@")[1]
    assert stored["spec"]["sha256"] == second.split("@sha256:")[1]
    assert stored["spec"]["vmConfig"] == {"env": [{"name": "DEBUG", "value": "1"}]}  # theirs, kept
    assert managers(stored) == ["kubectl-edit", "wasmbot"]


def test_gloo_writes_under_wasmbots_field_manager(
        cluster: KubeServer, namespace: str, registry: Service, tmp_path: Path) -> None:
    gateway = copy.deepcopy(GATEWAY)
    gateway["metadata"] = {"name": "gateway-proxy", "namespace": namespace, "labels": {"app": "gloo"}}
    created = cluster.request("POST", f"/apis/{GLOO[0]}/{GLOO[1]}/namespaces/{namespace}/gateways"
                              "?fieldManager=gloo", json=gateway)
    assert created.status_code == 201, created.text
    settings = Settings(data_dir=tmp_path / "data", docker_config=tmp_path / "none.json", environments={
        "edge": Environment(platform="gloo", platform_version="1.18", namespace=namespace,
                            kubeconfig=cluster.kubeconfig(tmp_path / "kubeconfig"), gateways=["gateway-proxy"])})
    solo = push(client(registry, tmp_path), reference.parse(f"{host_of(registry)}/edge/add-header:v1"),
                built("oci")).pinned
    run_job(settings, DeployCommand(target=solo, env="edge"), tmp_path)
    stored = cluster.get(*GLOO, namespace, "gateways", "gateway-proxy")
    assert stored is not None
    assert [f["name"] for f in stored["spec"]["httpGateway"]["options"]["wasm"]["filters"]] == \
        ["someone-elses", "add-header"]
    assert managers(stored) == ["gloo", "wasmbot"]


def test_rollback_restores_the_config_and_root_id_deployed_before(
        cluster: KubeServer, namespace: str, registry: Service, tmp_path: Path) -> None:
    settings = settings_for(tmp_path, cluster, namespace=namespace)
    first = pushed(registry, tmp_path, "cluster/roll:v1", module_bytes(padding=3))
    second = pushed(registry, tmp_path, "cluster/roll:v2", module_bytes(padding=4))
    run_job(settings, DeployCommand(target=first, env="staging", config='{"header": "one"}', root_id="first"),
            tmp_path)
    run_job(settings, DeployCommand(target=second, env="staging", config='{"header": "two"}'), tmp_path)
    settings = settings_for(tmp_path, cluster, namespace=namespace, priority=20)  # the defaults move on
    run_job(settings, RollbackCommand(env="staging", filter="roll"), tmp_path)
    stored = cluster.get(*ISTIO, namespace, "wasmplugins", "roll")
    assert stored is not None
    assert stored["spec"]["sha256"] == first.split("@sha256:")[1]
    assert stored["spec"]["pluginConfig"] == {"header": "one"} and stored["spec"]["pluginName"] == "first"
    # The history holds each applied intent whole, environment defaults included.
    from workers.store import open_store

    [rolled, _, _] = open_store(settings).deploys("staging")
    assert json.loads(rolled["intent"]) == stored["spec"]
    assert {k: stored["spec"][k] for k in ("phase", "priority", "selector")} == \
        {"phase": "AUTHN", "priority": 10, "selector": {"matchLabels": {"app": "checkout"}}}


class Silent:
    """An API server that answers the first ``reads`` GETs (404: no such object) and then takes
    requests and never answers: a hang that a real server cannot be made to show, so this one
    fault keeps a stand-in.  Counts connections."""

    def __init__(self, reads: int = 0) -> None:
        self.reads = reads
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections.append(conn)
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(65536)
            if head.startswith(b"GET ") and self.reads > 0:
                self.reads -= 1
                body = json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                   "reason": "NotFound", "code": 404}).encode()
                conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
                conn.close()
            # anything else: read, and never answered

    def kubeconfig(self, path: Path, token: str = "t") -> Path:
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "hung",
            "clusters": [{"name": "hung", "cluster": {"server": f"http://127.0.0.1:{self.port}"}}],
            "users": [{"name": "hung", "user": {"token": token}}],
            "contexts": [{"name": "hung", "context": {"cluster": "hung", "user": "hung"}}]}))
        return path

    def close(self) -> None:
        self.sock.close()
        for conn in self.connections:
            conn.close()


def test_a_hung_api_server_is_given_up_on_at_the_timeout_and_reported_as_unknown(
        registry: Service, tmp_path: Path) -> None:
    ref = pushed(registry, tmp_path, "cluster/hung:v1", module_bytes(padding=5))
    hung = Silent(reads=1)  # it answers that there is no plugin yet, then hangs on the apply
    try:
        settings = settings_for(tmp_path, hung, api_timeout=1)  # type: ignore[arg-type]
        with pytest.raises(StageError) as failed:
            run_job(settings, DeployCommand(target=ref, env="staging"), tmp_path)
        message = str(failed.value)
        assert "did not answer within 1s" in message and "unknown whether it was applied" in message, message
        assert "nothing was changed" not in message  # it cannot know that
        assert len(hung.connections) == 3  # the read, the apply and one read to find out; no retries
    finally:
        hung.close()
    silent = Silent()  # hangs from the first read: that changed nothing, and says so
    try:
        settings = settings_for(tmp_path, silent, api_timeout=1)  # type: ignore[arg-type]
        with pytest.raises(StageError, match=r"did not answer within 1s .*nothing was changed \(that was a read\)"):
            run_job(settings, DeployCommand(target=ref, env="staging"), tmp_path)
        assert len(silent.connections) == 1
    finally:
        silent.close()


def plugin_path(namespace: str, name: str = "") -> str:
    return f"/apis/{ISTIO[0]}/{ISTIO[1]}/namespaces/{namespace}/wasmplugins" + (f"/{name}" if name else "")


def hand_made(cluster: KubeServer, namespace: str, name: str) -> dict[str, Any]:
    """A WasmPlugin someone made with kubectl, not wasmbot."""
    created = cluster.request("POST", plugin_path(namespace) + "?fieldManager=kubectl-create", json={
        "apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin",
        "metadata": {"name": name, "namespace": namespace, "labels": {"team": "edge"}},
        "spec": {"url": "oci://example.com/edge/theirs:v3", "pluginConfig": {"mine": True}}})
    assert created.status_code == 201, created.text
    made: dict[str, Any] = created.json()
    return made


def test_deploy_leaves_a_plugin_it_did_not_create_alone_unless_told_to_adopt_it(
        cluster: KubeServer, namespace: str, registry: Service, tmp_path: Path) -> None:
    from workers.commands import UndeployCommand

    before = hand_made(cluster, namespace, "theirs")
    settings = settings_for(tmp_path, cluster, namespace=namespace)
    ref = pushed(registry, tmp_path, "cluster/theirs:v1", module_bytes(padding=6))
    with pytest.raises(StageError, match=r"WasmPlugin theirs in staging was not created by wasmbot.*--adopt"):
        run_job(settings, DeployCommand(target=ref, env="staging"), tmp_path)
    with pytest.raises(StageError, match="was not created by wasmbot"):
        run_job(settings, DeployCommand(target=ref, env="staging", dry_run=True), tmp_path)
    untouched = cluster.get(*ISTIO, namespace, "wasmplugins", "theirs")
    assert untouched is not None and untouched["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]

    run_job(settings, DeployCommand(target=ref, env="staging", adopt=True), tmp_path)
    adopted = cluster.get(*ISTIO, namespace, "wasmplugins", "theirs")
    assert adopted is not None and adopted["spec"]["sha256"] == ref.split("@sha256:")[1]
    assert adopted["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "wasmbot"

    run_job(settings, UndeployCommand(env="staging", filter="theirs"), tmp_path)  # handed back as it was
    back = cluster.get(*ISTIO, namespace, "wasmplugins", "theirs")
    assert back is not None
    assert back["spec"] == before["spec"] and back["metadata"]["labels"] == before["metadata"]["labels"]
    assert not any(k.startswith("wasmbot.io/") for k in back["metadata"].get("annotations", {}))


def test_a_field_another_manager_took_is_a_conflict_that_only_force_overrides(
        cluster: KubeServer, namespace: str, registry: Service, tmp_path: Path) -> None:
    settings = settings_for(tmp_path, cluster, namespace=namespace)  # its priority is 10
    ref = pushed(registry, tmp_path, "cluster/contested:v1", module_bytes(padding=7))
    run_job(settings, DeployCommand(target=ref, env="staging"), tmp_path)
    edit(cluster, plugin_path(namespace, "contested"), {"spec": {"priority": 99}}, "kubectl-edit")
    with pytest.raises(StageError) as conflict:
        run_job(settings, DeployCommand(target=ref, env="staging"), tmp_path)
    assert "kubectl-edit" in str(conflict.value) and ".spec.priority" in str(conflict.value)
    assert "--force" in str(conflict.value)
    stored = cluster.get(*ISTIO, namespace, "wasmplugins", "contested")
    assert stored is not None and stored["spec"]["priority"] == 99  # not taken without --force
    run_job(settings, DeployCommand(target=ref, env="staging", force=True), tmp_path)
    stored = cluster.get(*ISTIO, namespace, "wasmplugins", "contested")
    assert stored is not None and stored["spec"]["priority"] == 10


def test_the_approval_preview_shows_what_is_created_where_then_a_field_diff(
        cluster: KubeServer, namespace: str, registry: Service, tmp_path: Path) -> None:
    from workers.stages.deploy import preview

    settings = settings_for(tmp_path, cluster, namespace=namespace)
    first = pushed(registry, tmp_path, "cluster/shown:v1", module_bytes(padding=8))
    _, created = preview(settings, DeployCommand(target=first, env="staging"), "slack:W111", "0123456789ab")
    assert created.startswith(f"--- in the cluster now: no WasmPlugin {namespace}/shown\n"
                              f"+++ after this deploy: WasmPlugin {namespace}/shown is created\n"), created
    for line in ("+kind: WasmPlugin", "+  name: shown", f"+  namespace: {namespace}",
                 "+    app.kubernetes.io/managed-by: wasmbot", "+    wasmbot.io/requester: slack:W111",
                 f"+  sha256: {first.split('@sha256:')[1]}"):
        assert line in created.splitlines(), (line, created)
    assert "managedFields" not in created and "uid" not in created
    assert cluster.get(*ISTIO, namespace, "wasmplugins", "shown") is None  # a dry run: nothing stored

    run_job(settings, DeployCommand(target=first, env="staging"), tmp_path)
    second = pushed(registry, tmp_path, "cluster/shown:v2", module_bytes(padding=9))
    _, changed = preview(settings, DeployCommand(target=second, env="staging"), "slack:W111", "0123456789ab")
    minus = [line for line in changed.splitlines() if line.startswith("-") and not line.startswith("---")]
    plus = [line for line in changed.splitlines() if line.startswith("+") and not line.startswith("+++")]
    assert f"-  sha256: {first.split('@sha256:')[1]}" in minus and f"+  sha256: {second.split('@sha256:')[1]}" in plus
    assert not any("namespace:" in line or "kind:" in line for line in minus + plus)  # what stays is context


def test_gloo_leaves_a_filter_entry_it_did_not_add_alone_unless_told_to_adopt_it(
        cluster: KubeServer, namespace: str, registry: Service, tmp_path: Path) -> None:
    from workers.commands import UndeployCommand

    gateway = copy.deepcopy(GATEWAY)
    gateway["metadata"] = {"name": "gateway-proxy", "namespace": namespace}
    cluster.put(gateway, "gloo")
    settings = Settings(data_dir=tmp_path / "data", docker_config=tmp_path / "none.json", environments={
        "edge": Environment(platform="gloo", platform_version="1.18", namespace=namespace,
                            kubeconfig=cluster.kubeconfig(tmp_path / "kubeconfig"), gateways=["gateway-proxy"])})
    theirs = push(client(registry, tmp_path), reference.parse(f"{host_of(registry)}/edge/someone-elses:v1"),
                  built("oci")).pinned
    with pytest.raises(StageError, match=r"Gateway gateway-proxy holds a filter someone-elses that wasmbot did "
                                         r"not add.*--adopt"):
        run_job(settings, DeployCommand(target=theirs, env="edge"), tmp_path)
    with pytest.raises(StageError, match="wasmbot did not add"):
        run_job(settings, UndeployCommand(env="edge", filter="someone-elses"), tmp_path)
    stored = cluster.get(*GLOO, namespace, "gateways", "gateway-proxy")
    assert stored is not None and stored["spec"] == gateway["spec"]  # untouched

    run_job(settings, DeployCommand(target=theirs, env="edge", adopt=True), tmp_path)
    stored = cluster.get(*GLOO, namespace, "gateways", "gateway-proxy")
    assert stored is not None
    [entry] = stored["spec"]["httpGateway"]["options"]["wasm"]["filters"]
    assert entry["image"].endswith(theirs.split("@")[1])
    assert stored["metadata"]["annotations"]["wasmbot.io/filters"] == "someone-elses"
    run_job(settings, UndeployCommand(env="edge", filter="someone-elses"), tmp_path)  # handed back as it was
    stored = cluster.get(*GLOO, namespace, "gateways", "gateway-proxy")
    assert stored is not None and stored["spec"] == gateway["spec"]
    assert not any(k.startswith("wasmbot.io/") for k in stored["metadata"].get("annotations", {}))


def test_the_gloo_preview_is_the_deploys_own_update_as_a_dry_run(
        cluster: KubeServer, namespace: str, registry: Service, tmp_path: Path) -> None:
    from workers.deploy.target import DeployError
    from workers.stages.deploy import preview

    settings = Settings(data_dir=tmp_path / "data", docker_config=tmp_path / "none.json", environments={
        "edge": Environment(platform="gloo", platform_version="1.18", namespace=namespace,
                            kubeconfig=cluster.kubeconfig(tmp_path / "kubeconfig"), gateways=["gateway-proxy"])})
    solo = push(client(registry, tmp_path), reference.parse(f"{host_of(registry)}/edge/previewed:v1"),
                built("oci")).pinned
    with pytest.raises(DeployError, match=f"there is no Gateway gateway-proxy in namespace {namespace}"):
        preview(settings, DeployCommand(target=solo, env="edge"), "slack:W111", "0123456789ab")
    gateway = copy.deepcopy(GATEWAY)
    gateway["metadata"] = {"name": "gateway-proxy", "namespace": namespace}
    cluster.put(gateway, "gloo")
    _, diff = preview(settings, DeployCommand(target=solo, env="edge"), "slack:W111", "0123456789ab")
    added = [line for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")]
    assert any(line.endswith("name: previewed") for line in added) and "someone-elses" not in "".join(added), diff
    stored = cluster.get(*GLOO, namespace, "gateways", "gateway-proxy")
    assert stored is not None and stored["spec"] == gateway["spec"]  # a dry run: nothing stored
