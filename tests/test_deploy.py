"""The deploy stage against a stand-in Kubernetes API that validates with the real Istio CRD,
driven by the official kubernetes client through a kubeconfig, with images from a real registry."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SHARED
from kubeapi import CRD, KubeStandIn
from ocihelp import built, client, host_of, module_bytes

from bot.commands import DeployCommand
from bot.config import Environment, Settings
from bot.localservices import Service, free_port
from workers.jobs import Job, Stage, State
from workers.oci import image, reference
from workers.oci.push import push
from workers.stages import StageContext, StageError
from workers.stages import deploy as deploy_stage
from workers.store import SqliteStore

CRDS = SHARED / "testdata" / "k8s"


@pytest.fixture
def kube() -> Iterator[KubeStandIn]:
    stand_in = KubeStandIn([CRD.load(CRDS / "istio-wasmplugin-crd.yaml"), CRD.load(CRDS / "gloo-gateway-crd.yaml")])
    stand_in.start()
    yield stand_in
    stand_in.stop()


def settings_for(tmp: Path, kube: KubeStandIn | None, **env: object) -> Settings:
    kubeconfig = kube.kubeconfig(tmp / "kubeconfig") if kube else tmp / "kubeconfig"
    environment = {"kubeconfig": str(kubeconfig), "namespace": "shop", "selector": {"app": "checkout"},
                   "phase": "AUTHN", "priority": 10, "fail_strategy": "FAIL_CLOSE"} | env
    return Settings(data_dir=tmp / "data", docker_config=tmp / "none.json",
                    environments={"staging": Environment.model_validate(environment)})


def deploy(settings: Settings, target: str, tmp: Path, log: list[str] | None = None, **options: object) -> dict[str, str]:
    command = DeployCommand(target=target, env="staging", **options)  # type: ignore[arg-type]
    job = Job(requester="slack:W111", origin="t", text="", source_root="/", command=command.model_dump(),
              stages=[Stage(name="deploy")])
    ctx = StageContext(job=job, settings=settings, workdir=tmp, log=(log.append if log is not None else print))
    return deploy_stage.run(ctx)


def pushed(registry: Service, tmp: Path, name: str, module: bytes | None = None) -> str:
    result = push(client(registry, tmp), reference.parse(f"{host_of(registry)}/{name}"), built("compat", module))
    return result.pinned


def test_first_deploy_creates_a_pinned_wasmplugin(kube: KubeStandIn, registry: Service, tmp_path: Path) -> None:
    ref = pushed(registry, tmp_path, "deploy/add-header:v1")
    result = deploy(settings_for(tmp_path, kube), ref.split("@")[0], tmp_path, config='{"header": "x-hello"}')
    digest = ref.split("@")[1]
    assert result["deployed_digest"] == digest and result["resource"] == "WasmPlugin shop/add-header"
    stored = kube.objects[("wasmplugins", "shop", "add-header")]
    assert stored["spec"] == {
        "url": f"oci://{host_of(registry)}/deploy/add-header:v1", "sha256": digest.removeprefix("sha256:"),
        "pluginName": "add-header", "pluginConfig": {"header": "x-hello"},
        "selector": {"matchLabels": {"app": "checkout"}}, "phase": "AUTHN", "priority": 10,
        "failStrategy": "FAIL_CLOSE"}
    assert stored["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "wasmbot"
    assert stored["metadata"]["annotations"]["wasmbot.io/requester"] == "slack:W111"
    assert [(w.verb, w.manager, w.dry_run) for w in kube.writes] == [("apply", "wasmbot", False)]


def test_redeploying_a_new_digest_changes_one_object(kube: KubeStandIn, registry: Service, tmp_path: Path) -> None:
    settings = settings_for(tmp_path, kube)
    first = pushed(registry, tmp_path, "deploy/rate-limit:v1", module_bytes(padding=10))
    second = pushed(registry, tmp_path, "deploy/rate-limit:v2", module_bytes(padding=20))
    deploy(settings, first, tmp_path)
    result = deploy(settings, second, tmp_path)
    assert list(kube.objects) == [("wasmplugins", "shop", "rate-limit")]
    stored = kube.objects[("wasmplugins", "shop", "rate-limit")]
    assert stored["spec"]["sha256"] == second.split("@sha256:")[1] and stored["spec"]["url"].endswith(":v2")
    assert stored["metadata"]["generation"] == 2 and result["generation"] == "2"
    assert {w.name for w in kube.writes} == {"rate-limit"}


def test_dry_run_prints_the_yaml_and_changes_nothing(kube: KubeStandIn, registry: Service, tmp_path: Path) -> None:
    ref = pushed(registry, tmp_path, "deploy/dry:v1")
    log: list[str] = []
    result = deploy(settings_for(tmp_path, kube), ref, tmp_path, log, dry_run=True)
    assert result["dry_run"] == "true" and kube.objects == {}
    assert [(w.verb, w.dry_run) for w in kube.writes] == [("apply", True)]  # validated by the server only
    assert log[0].startswith("dry run: this would be applied to staging:\napiVersion: extensions.istio.io/v1alpha1")
    assert "sha256: " + ref.split("@sha256:")[1] in log[0]


def test_an_abi_the_platform_does_not_run_is_refused(kube: KubeStandIn, registry: Service, tmp_path: Path) -> None:
    future = image.Image("oci", image.Blob(image.CONFIG_MEDIA_TYPE, json.dumps(
        {"type": "envoy_proxy", "abiVersions": ["0.3.0"], "config": {"rootIds": ["next"]}}).encode()), [], {})
    future = image.Image("oci", future.config, [future.config, image.Blob(image.CONTENT_MEDIA_TYPE, module_bytes())], {})
    ref = push(client(registry, tmp_path), reference.parse(f"{host_of(registry)}/deploy/next:v1"), future).pinned
    with pytest.raises(StageError) as caught:
        deploy(settings_for(tmp_path, kube), ref, tmp_path)
    assert str(caught.value) == (
        f"{ref} needs proxy-wasm ABI 0.3.0, but istio 1.28 (Envoy 1.36) runs ABI 0.1.0, 0.2.0, 0.2.1: "
        "Envoy would refuse to load it")
    assert kube.writes == []


def test_the_api_server_refuses_what_the_crd_forbids(kube: KubeStandIn, registry: Service, tmp_path: Path) -> None:
    ref = pushed(registry, tmp_path, "deploy/wild:v1")
    with pytest.raises(StageError) as caught:
        deploy(settings_for(tmp_path, kube, selector={"app*": "x"}), ref, tmp_path)
    assert "the cluster refused to apply WasmPlugin wild" in str(caught.value)
    assert "spec.selector.matchLabels: Invalid value: wildcard not allowed in label key match (HTTP 422)" in str(
        caught.value)
    assert kube.objects == {}


def test_an_unreachable_cluster_is_reported_clearly(registry: Service, tmp_path: Path) -> None:
    ref = pushed(registry, tmp_path, "deploy/away:v1")
    gone = KubeStandIn([])
    gone.url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    settings = settings_for(tmp_path, None)
    gone.kubeconfig(tmp_path / "kubeconfig")
    with pytest.raises(StageError) as caught:
        deploy(settings, ref, tmp_path)
    assert str(caught.value).startswith(f"environment staging: the cluster at {gone.url} is unreachable (")
    assert str(caught.value).endswith("nothing was changed. Check the kubeconfig and that the API server is up, "
                                      "then retry")


def test_deploy_by_job_id_uses_the_digest_the_job_pushed(kube: KubeStandIn, registry: Service, tmp_path: Path) -> None:
    ref = pushed(registry, tmp_path, "deploy/from-job:v1")
    settings = settings_for(tmp_path, kube)
    store = SqliteStore(settings.data_dir / "jobs.sqlite")
    job = Job(requester="t", origin="t", text="", source_root="/", command={}, stages=[Stage(name="push")],
              state=State.SUCCEEDED, artifacts={"image": ref.split("@")[0], "digest": ref.split("@")[1]})
    store.create(job)
    result = deploy(settings, job.id, tmp_path)
    assert result["deployed_digest"] == ref.split("@")[1]
    with pytest.raises(StageError, match="pushed no image"):
        failed = Job(requester="t", origin="t", text="", source_root="/", command={}, stages=[Stage(name="push")])
        store.create(failed)
        deploy(settings, failed.id, tmp_path)


def test_protected_and_unknown_environments(kube: KubeStandIn, registry: Service, tmp_path: Path) -> None:
    ref = pushed(registry, tmp_path, "deploy/guarded:v1")
    with pytest.raises(StageError, match="environment staging is protected: its deploys need an approval"):
        deploy(settings_for(tmp_path, kube, protected=True), ref, tmp_path)
    assert deploy(settings_for(tmp_path, kube, protected=True), ref, tmp_path, dry_run=True)["dry_run"] == "true"
    settings = settings_for(tmp_path, kube)
    command = DeployCommand(target=ref, env="prod")
    job = Job(requester="t", origin="t", text="", source_root="/", command=command.model_dump(), stages=[])
    with pytest.raises(StageError, match="no environment 'prod' \\(known: staging\\)"):
        deploy_stage.run(StageContext(job=job, settings=settings, workdir=tmp_path, log=print))
