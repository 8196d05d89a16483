"""The deploy stage against a real Kubernetes API server (tests/kubeserver.py): etcd and
apiextensions-apiserver serving the real Istio and Gloo CRDs, read back as kubectl would.

Each test has its own namespace on one server for the session.  These are the defects that
the stand-in (tests/kubeapi.py) hid, issue 18; each test failed before its fix.
"""

from __future__ import annotations

import copy
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


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeServer]:
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
    run_job(settings, RollbackCommand(env="staging", filter="roll"), tmp_path)
    stored = cluster.get(*ISTIO, namespace, "wasmplugins", "roll")
    assert stored is not None
    assert stored["spec"]["sha256"] == first.split("@sha256:")[1]
    assert stored["spec"]["pluginConfig"] == {"header": "one"} and stored["spec"]["pluginName"] == "first"


class Silent:
    """An API server that takes connections and requests and never answers: a hang that a real
    server cannot be made to show, so this one fault keeps a stand-in.  Counts connections."""

    def __init__(self) -> None:
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
            self.connections.append(conn)  # read nothing, answer nothing

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
    hung = Silent()
    try:
        settings = settings_for(tmp_path, hung, api_timeout=1)  # type: ignore[arg-type]
        ref = pushed(registry, tmp_path, "cluster/hung:v1", module_bytes(padding=5))
        with pytest.raises(StageError) as failed:
            run_job(settings, DeployCommand(target=ref, env="staging"), tmp_path)
        message = str(failed.value)
        assert "did not answer within 1s" in message and "unknown whether" in message, message
        assert "nothing was changed" not in message  # it cannot know that
        assert len(hung.connections) == 2  # the apply and one read to find out; no retries
    finally:
        hung.close()
