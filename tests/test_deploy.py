"""The deploy stage against a real Kubernetes API server serving the real Istio and Gloo CRDs
(the ``kube`` fixture, tests/kubeserver.py), driven by the official kubernetes client through a
kubeconfig, with images from a real registry."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from conftest import TESTDATA
from kubeserver import KubeServer
from ocihelp import built, client, host_of, module_bytes

from bot.answers import history_text, status_text
from bot.localservices import Service, free_port
from workers.commands import DeployCommand
from workers.config import Environment, Settings
from workers.jobs import Job, Stage, State
from workers.oci import image, reference
from workers.oci.push import push
from workers.stages import StageContext, StageError
from workers.stages import deploy as deploy_stage
from workers.store import SqliteStore

CRDS = TESTDATA / "k8s"


def settings_for(tmp: Path, kube: KubeServer | None, **env: object) -> Settings:
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


def test_first_deploy_creates_a_pinned_wasmplugin(kube: KubeServer, registry: Service, tmp_path: Path) -> None:
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
    # One server-side apply; the authoriser asks for create as well when the apply creates.
    assert [(w.verb, w.name) for w in kube.writes] == [("patch", "add-header"), ("create", "add-header")]
    assert [m["manager"] for m in stored["metadata"]["managedFields"]] == ["wasmbot"]


def test_redeploying_a_new_digest_changes_one_object(kube: KubeServer, registry: Service, tmp_path: Path) -> None:
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


def test_dry_run_prints_the_yaml_and_changes_nothing(kube: KubeServer, registry: Service, tmp_path: Path) -> None:
    ref = pushed(registry, tmp_path, "deploy/dry:v1")
    log: list[str] = []
    result = deploy(settings_for(tmp_path, kube), ref, tmp_path, log, dry_run=True)
    assert result["dry_run"] == "true" and kube.objects == {}
    assert [w.verb for w in kube.writes] == ["patch", "create"]  # sent, validated, stored nowhere
    assert log[0].startswith("dry run: this would be applied to staging:\napiVersion: extensions.istio.io/v1alpha1")
    assert "sha256: " + ref.split("@sha256:")[1] in log[0]


def test_an_abi_the_platform_does_not_run_is_refused(kube: KubeServer, registry: Service, tmp_path: Path) -> None:
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


def test_the_api_server_refuses_what_the_crd_forbids(kube: KubeServer, registry: Service, tmp_path: Path) -> None:
    ref = pushed(registry, tmp_path, "deploy/wild:v1")
    with pytest.raises(StageError) as caught:
        deploy(settings_for(tmp_path, kube, selector={"app*": "x"}), ref, tmp_path)
    assert "the cluster refused to apply WasmPlugin wild" in str(caught.value)
    assert ('spec.selector.matchLabels: Invalid value: "object": wildcard not allowed in label key match '
            "(HTTP 422)") in str(caught.value)
    assert kube.objects == {}


def test_an_unreachable_cluster_is_reported_clearly(registry: Service, tmp_path: Path) -> None:
    ref = pushed(registry, tmp_path, "deploy/away:v1")
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "away",
        "clusters": [{"name": "away", "cluster": {"server": url}}], "users": [{"name": "away", "user": {}}],
        "contexts": [{"name": "away", "context": {"cluster": "away", "user": "away"}}]}))
    with pytest.raises(StageError) as caught:
        deploy(settings_for(tmp_path, None), ref, tmp_path)
    assert str(caught.value).startswith(f"environment staging: the cluster at {url} is unreachable (")
    assert str(caught.value).endswith("nothing was changed. Check the kubeconfig and that the API server is up, "
                                      "then retry")


def test_deploy_by_job_id_uses_the_digest_the_job_pushed(kube: KubeServer, registry: Service, tmp_path: Path) -> None:
    ref = pushed(registry, tmp_path, "deploy/from-job:v1")
    settings = settings_for(tmp_path, kube)
    store = SqliteStore(settings.data_dir / "jobs.sqlite")
    job = Job(requester="t", origin="t", text="", source_root="/", command={"name": "build", "source": "."}, stages=[Stage(name="push")],
              state=State.SUCCEEDED, artifacts={"image": ref.split("@")[0], "digest": ref.split("@")[1]})
    store.create(job)
    result = deploy(settings, job.id, tmp_path)
    assert result["deployed_digest"] == ref.split("@")[1]
    with pytest.raises(StageError, match="pushed no image"):
        failed = Job(requester="t", origin="t", text="", source_root="/", command={"name": "build", "source": "."},
                     stages=[Stage(name="push")])
        store.create(failed)
        deploy(settings, failed.id, tmp_path)


def test_protected_and_unknown_environments(kube: KubeServer, registry: Service, tmp_path: Path) -> None:
    ref = pushed(registry, tmp_path, "deploy/guarded:v1")
    with pytest.raises(StageError, match="environment staging is protected: this change needs an approval first"):
        deploy(settings_for(tmp_path, kube, protected=True), ref, tmp_path)
    assert deploy(settings_for(tmp_path, kube, protected=True), ref, tmp_path, dry_run=True)["dry_run"] == "true"
    settings = settings_for(tmp_path, kube)
    command = DeployCommand(target=ref, env="prod")
    job = Job(requester="t", origin="t", text="", source_root="/", command=command.model_dump(), stages=[])
    with pytest.raises(StageError, match="no environment 'prod' \\(known: staging\\)"):
        deploy_stage.run(StageContext(job=job, settings=settings, workdir=tmp_path, log=print))


def run_job(settings: Settings, command: object, tmp: Path, log: list[str] | None = None) -> dict[str, str]:
    """Run the command's one stage as the pipeline would, recording the job (the deploy history)."""
    from workers.commands import SPECS
    from workers.pipeline import STAGES
    from workers.store import open_store

    store = open_store(settings)
    name = SPECS[command.name].stages[0]  # type: ignore[attr-defined]
    job = Job(requester="slack:W111", origin="t", text="", source_root="/",
              command=command.model_dump(), stages=[Stage(name=name)])  # type: ignore[attr-defined]
    store.create(job)
    result = STAGES[name](StageContext(job=job, settings=settings, workdir=tmp,
                                       log=(log.append if log is not None else print)))

    def finish(stored: Job) -> None:
        stored.state, stored.artifacts = State.SUCCEEDED, result
    store.update(job.id, finish)
    return result


def test_rollback_redeploys_the_previous_digest(kube: KubeServer, registry: Service, tmp_path: Path) -> None:
    from workers.commands import RollbackCommand

    settings = settings_for(tmp_path, kube)
    first = pushed(registry, tmp_path, "deploy/roll:v1", module_bytes(padding=30))
    second = pushed(registry, tmp_path, "deploy/roll:v2", module_bytes(padding=40))
    with pytest.raises(StageError, match="nothing was deployed to staging as roll by wasmbot yet"):
        run_job(settings, RollbackCommand(env="staging", filter="roll"), tmp_path)
    run_job(settings, DeployCommand(target=first, env="staging"), tmp_path)
    run_job(settings, DeployCommand(target=second, env="staging"), tmp_path)
    log: list[str] = []
    result = run_job(settings, RollbackCommand(env="staging", filter="roll"), tmp_path, log)
    assert result["deployed_digest"] == first.split("@")[1]
    assert kube.objects[("wasmplugins", "shop", "roll")]["spec"]["sha256"] == first.split("@sha256:")[1]
    assert any(line.startswith(f"rolling roll in staging back from {second.split('@')[1]} to {first.split('@')[1]}")
               for line in log)
    # The history is the deploy record, not the job list: it holds who did what, newest first.
    lines = history_text(settings, "staging", "roll").splitlines()
    assert [line.split()[2] for line in lines] == ["rollback", "deploy", "deploy"]
    assert [line.split()[4] for line in lines] == [first.split("@")[1], second.split("@")[1], first.split("@")[1]]
    assert all(line.endswith("by slack:W111") for line in lines)
    assert re.fullmatch(rf"staging: roll at {first.split('@')[1]} \({re.escape(first)}; job "
                        rf"{lines[0].split()[-3]}, \d+s ago\)", status_text(settings)), status_text(settings)


def test_undeploy_removes_only_wasmbots_plugin(kube: KubeServer, registry: Service, tmp_path: Path) -> None:
    from workers.commands import UndeployCommand

    settings = settings_for(tmp_path, kube)
    run_job(settings, DeployCommand(target=pushed(registry, tmp_path, "deploy/gone:v1"), env="staging"), tmp_path)
    run_job(settings, DeployCommand(target=pushed(registry, tmp_path, "deploy/stays:v1"), env="staging"), tmp_path)
    kube.put({"apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin",
              "metadata": {"name": "hand-made", "namespace": "shop"}, "spec": {"url": "oci://example.com/x:v1"}})
    result = run_job(settings, UndeployCommand(env="staging", filter="gone"), tmp_path)
    assert result["removed"] == "WasmPlugin shop/gone"
    assert sorted(n for _, _, n in kube.objects) == ["hand-made", "stays"]
    with pytest.raises(StageError, match="WasmPlugin hand-made in staging was not deployed by wasmbot; it is left alone"):
        run_job(settings, UndeployCommand(env="staging", filter="hand-made"), tmp_path)
    from workers.commands import RollbackCommand

    with pytest.raises(StageError, match=r"gone was undeployed from staging by job [0-9a-f]{12}: deploy it again"):
        run_job(settings, RollbackCommand(env="staging", filter="gone"), tmp_path)
    assert [line.split(":")[1].split()[0] for line in status_text(settings, "staging").splitlines()] == ["stays"]
    assert history_text(settings, "staging", "gone").splitlines()[0].split()[2:5] == ["undeploy", "gone", "removed"]


GATEWAY = {
    "apiVersion": "gateway.solo.io/v1", "kind": "Gateway",
    "metadata": {"name": "gateway-proxy", "namespace": "gloo-system", "labels": {"app": "gloo"}},
    "spec": {"bindAddress": "::", "bindPort": 8080, "proxyNames": ["gateway-proxy"], "useProxyProto": False,
             "httpGateway": {"options": {
                 "gzip": {"compressionLevel": "BEST"},
                 "wasm": {"filters": [{"name": "someone-elses", "image": "webassemblyhub.io/team/auth:v3",
                                       "rootId": "auth", "config": {"@type": "x", "value": "{}"}}]}}}},
}


def gloo_settings(tmp: Path, kube: KubeServer) -> Settings:
    return Settings(data_dir=tmp / "data", docker_config=tmp / "none.json", environments={"edge": Environment(
        platform="gloo", platform_version="1.18", kubeconfig=kube.kubeconfig(tmp / "kubeconfig"),
        namespace="gloo-system", gateways=["gateway-proxy"], fail_strategy="FAIL_OPEN")})


def test_gloo_gateway_keeps_everything_else_and_retries_a_conflict(
        kube: KubeServer, registry: Service, tmp_path: Path) -> None:
    import copy

    from workers.commands import UndeployCommand

    kube.put(copy.deepcopy(GATEWAY), "gloo")
    settings = gloo_settings(tmp_path, kube)
    solo = push(client(registry, tmp_path), reference.parse(f"{host_of(registry)}/edge/add-header:v1"),
                built("oci")).pinned
    def someone_else_writes() -> None:  # between wasmbot's read and its write: a real 409 follows
        answer = kube.request("PATCH", "/apis/gateway.solo.io/v1/namespaces/gloo-system/gateways/gateway-proxy"
                              "?fieldManager=kubectl-label", token="someone-else-token", json={
                                  "metadata": {"labels": {"touched": "yes"}}},
                              headers={"Content-Type": "application/merge-patch+json"})
        assert answer.status_code == 200, answer.text
    kube.core.before[("patch", "gateways", "gateway-proxy")] = someone_else_writes
    result = run_job(settings, DeployCommand(target=solo, env="edge", config='{"header": "x-edge"}'), tmp_path)
    assert result["resource"] == "filter add-header in Gateway gloo-system/gateway-proxy"
    stored = kube.objects[("gateways", "gloo-system", "gateway-proxy")]
    filters = stored["spec"]["httpGateway"]["options"]["wasm"]["filters"]
    assert filters[0] == GATEWAY["spec"]["httpGateway"]["options"]["wasm"]["filters"][0]  # type: ignore[index]
    assert filters[1] == {"name": "add-header", "image": f"{host_of(registry)}/edge/add-header@{solo.split('@')[1]}",
                          "rootId": "add-header", "vmType": "V8",
                          "filterStage": {"stage": "AuthNStage", "predicate": "After"}, "failOpen": True,
                          "config": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                     "value": '{"header": "x-edge"}'}}
    assert stored["spec"]["httpGateway"]["options"]["gzip"] == {"compressionLevel": "BEST"}
    assert {k: v for k, v in stored["spec"].items() if k != "httpGateway"} == \
        {k: v for k, v in GATEWAY["spec"].items() if k != "httpGateway"}  # type: ignore[attr-defined]
    assert [w.verb for w in kube.writes] == ["patch", "patch"]  # a 409, read again, then it landed
    assert kube.core.before == {} and stored["metadata"]["labels"] == {"app": "gloo", "touched": "yes"}

    run_job(settings, DeployCommand(target=solo, env="edge"), tmp_path)  # replaces, never duplicates
    assert [f["name"] for f in kube.objects[("gateways", "gloo-system", "gateway-proxy")]["spec"]["httpGateway"]
            ["options"]["wasm"]["filters"]] == ["someone-elses", "add-header"]
    run_job(settings, UndeployCommand(env="edge", filter="add-header"), tmp_path)
    left = kube.objects[("gateways", "gloo-system", "gateway-proxy")]["spec"]["httpGateway"]["options"]
    assert left["wasm"]["filters"] == GATEWAY["spec"]["httpGateway"]["options"]["wasm"]["filters"]  # type: ignore[index]
    assert left["gzip"] == {"compressionLevel": "BEST"}


def test_gloo_refuses_the_compat_layout(kube: KubeServer, registry: Service, tmp_path: Path) -> None:
    import copy

    kube.put(copy.deepcopy(GATEWAY), "gloo")
    compat = pushed(registry, tmp_path, "edge/compat:v1")
    with pytest.raises(StageError, match=re.escape("is in the compat layout, but Gloo pulls the solo.io layout")):
        run_job(gloo_settings(tmp_path, kube), DeployCommand(target=compat, env="edge"), tmp_path)
    assert kube.writes == []


def test_deploy_envoy_writes_a_bootstrap_with_the_filter_before_the_router(registry: Service, tmp_path: Path) -> None:
    import yaml

    module = module_bytes(padding=77)
    ref = pushed(registry, tmp_path, "deploy/local:v1", module)
    settings = Settings(data_dir=tmp_path / "data", docker_config=tmp_path / "none.json")
    command = DeployCommand(target=ref, env="envoy", config='{"header": "x-local"}')
    job = Job(requester="t", origin="t", text="", source_root="/", command=command.model_dump(), stages=[])
    workdir = tmp_path / "job"
    result = deploy_stage.run(StageContext(job=job, settings=settings, workdir=workdir, log=print))
    assert result["resource"] == f"Envoy bootstrap {workdir / 'envoy.yaml'}"
    assert (workdir / "plugin.wasm").read_bytes() == module
    boot = yaml.safe_load((workdir / "envoy.yaml").read_text())
    manager = boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    names = [f["name"] for f in manager["http_filters"]]
    assert names == ["envoy.filters.http.wasm", "envoy.filters.http.router"]
    plugin = manager["http_filters"][0]["typed_config"]["config"]
    assert plugin["root_id"] == "add-header" and plugin["vm_config"]["runtime"] == "envoy.wasm.runtime.v8"
    assert plugin["vm_config"]["code"]["local"]["filename"] == str(workdir / "plugin.wasm")
    assert json.loads(plugin["configuration"]["value"]) == {"header": "x-local"}
    assert yaml.safe_load((workdir / "envoy-filter.yaml").read_text()) == manager["http_filters"][0]
