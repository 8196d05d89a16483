"""Changes to a protected environment wait for an approval by someone else, expire, and deploy
only the digest that was approved.  Driven through the CLI with a real worker, a real registry
and the Kubernetes stand-in."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import Wasmbot
from kubeserver import KubeServer
from ocihelp import built, client, host_of, module_bytes

from bot.localservices import Service
from workers.jobs import State
from workers.oci import reference
from workers.oci.push import push


def protected(bot: Wasmbot, kube: KubeServer, ttl: float = 3600) -> dict[str, str]:
    kubeconfig = kube.kubeconfig(bot.workdir / "kubeconfig")
    return {"WASMBOT_ENVIRONMENTS": json.dumps({"prod": {"kubeconfig": str(kubeconfig), "namespace": "shop",
                                                         "protected": True}}),
            "WASMBOT_APPROVAL_TTL": str(ttl), "LOGNAME": "alice"}


def ask(bot: Wasmbot, env: dict[str, str], ref: str) -> str:
    asked = bot.cli("run", f"/wasm deploy {ref} --env prod", env=env)
    assert asked.returncode == 0, asked.stderr
    match = re.search(r"job ([0-9a-f]{12}) waits for an approval: someone else allowed to approve:prod "
                      r"answers /wasm approve \1", asked.stdout)
    assert match, asked.stdout
    # The approver sees the server-side dry run: the whole WasmPlugin it creates, and where.
    assert re.search(r"--- in the cluster now: no WasmPlugin shop/\S+\n"
                     r"\+\+\+ after this deploy: WasmPlugin shop/\S+ is created", asked.stdout), asked.stdout
    assert re.search(r"^\+  url: oci://", asked.stdout, re.M) or re.search(r"^\+url: oci://", asked.stdout, re.M)
    return match.group(1)


@pytest.mark.parametrize("wasmbot", ["sqlite"], indirect=True)
def test_approval_by_someone_else_deploys_the_approved_digest(
        wasmbot: Wasmbot, kube: KubeServer, registry: Service, tmp_path: Path) -> None:
    ref = push(client(registry, tmp_path), reference.parse(f"{host_of(registry)}/guarded/filter:v1"), built()).pinned
    env = protected(wasmbot, kube)
    job_id = ask(wasmbot, env, ref.split("@")[0])
    job = wasmbot.store.get(job_id)
    assert job is not None and job.state is State.PENDING and job.approval["digest"] == ref.split("@")[1]
    assert [w.verb for w in kube.writes] == ["patch", "create"]  # the preview's dry run, stored nowhere
    assert kube.objects == {}

    own = wasmbot.cli("run", f"/wasm approve {job_id}", env=env)
    assert own.returncode == 1
    assert "you asked for this change: someone else who may approve must approve it" in own.stderr
    assert wasmbot.store.get(job_id).state is State.PENDING  # type: ignore[union-attr]

    approved = wasmbot.cli("run", f"/wasm approve {job_id}", env=env | {"LOGNAME": "bob"})
    assert approved.returncode == 0, approved.stdout + approved.stderr
    job = wasmbot.store.get(job_id)
    assert job is not None and job.state is State.SUCCEEDED and job.approval["approved_by"] == "bob"
    assert kube.objects[("wasmplugins", "shop", "filter")]["spec"]["sha256"] == ref.split("@sha256:")[1]
    history = wasmbot.cli("run", "/wasm history prod", env=env)
    assert history.returncode == 0, history.stderr
    assert re.fullmatch(rf"\d+s ago  deploy   filter {ref.split('@')[1]} \({re.escape(ref)}\)  job {job_id} by "
                        r"alice, approved by bob\n", history.stdout), history.stdout


@pytest.mark.parametrize("wasmbot", ["sqlite"], indirect=True)
def test_an_expired_approval_is_refused(wasmbot: Wasmbot, kube: KubeServer, registry: Service,
                                       tmp_path: Path) -> None:
    ref = push(client(registry, tmp_path), reference.parse(f"{host_of(registry)}/guarded/late:v1"), built()).pinned
    env = protected(wasmbot, kube, ttl=0.001)
    job_id = ask(wasmbot, env, ref)
    late = wasmbot.cli("run", f"/wasm approve {job_id}", env=env | {"LOGNAME": "bob"})
    assert late.returncode == 1 and f"the approval request for job {job_id} expired; ask again" in late.stderr
    assert wasmbot.store.get(job_id).state is State.CANCELLED  # type: ignore[union-attr]
    assert kube.objects == {}


@pytest.mark.parametrize("wasmbot", ["sqlite"], indirect=True)
def test_a_tag_moved_after_approval_is_not_deployed(wasmbot: Wasmbot, kube: KubeServer, registry: Service,
                                                   tmp_path: Path) -> None:
    registry_client = client(registry, tmp_path)
    first = push(registry_client, reference.parse(f"{host_of(registry)}/guarded/moving:v1"),
                 built("compat", module_bytes(padding=50)))
    env = protected(wasmbot, kube)
    job_id = ask(wasmbot, env, first.reference)
    moved = push(registry_client, reference.parse(first.reference), built("compat", module_bytes(padding=60)))
    approved = wasmbot.cli("run", f"/wasm approve {job_id}", env=env | {"LOGNAME": "bob"})
    assert approved.returncode == 1
    job = wasmbot.store.get(job_id)
    assert job is not None and job.state is State.FAILED
    assert job.stage("deploy").error == (
        f"{first.reference} is now {moved.digest}, not the {first.digest} that bob approved: nothing was "
        "deployed; ask again")
    assert kube.objects == {}


@pytest.mark.parametrize("wasmbot", ["sqlite"], indirect=True)
def test_a_protected_envoy_environment_asks_for_an_approval(wasmbot: Wasmbot, registry: Service,
                                                            tmp_path: Path) -> None:
    """An ``envoy`` environment has no cluster: its preview is the filter config the deploy
    writes (the preview used to load a Kubernetes configuration for every platform and fail)."""
    ref = push(client(registry, tmp_path), reference.parse(f"{host_of(registry)}/edge/filter:v1"), built()).pinned
    env = {"WASMBOT_ENVIRONMENTS": json.dumps({"edge": {"platform": "envoy", "protected": True}}),
           "LOGNAME": "alice"}
    asked = wasmbot.cli("run", f"/wasm deploy {ref.split('@')[0]} --env edge", env=env)
    assert asked.returncode == 0, asked.stdout + asked.stderr
    match = re.search(r"job ([0-9a-f]{12}) waits for an approval", asked.stdout)
    assert match, asked.stdout
    assert "+++ after this deploy: the Envoy filter config is written" in asked.stdout, asked.stdout
    assert re.search(r"^\+\s+root_id: ", asked.stdout, re.M), asked.stdout
    approved = wasmbot.cli("run", f"/wasm approve {match.group(1)}", env=env | {"LOGNAME": "bob"})
    assert approved.returncode == 0, approved.stdout + approved.stderr
    job = wasmbot.store.get(match.group(1))
    assert job is not None and job.state is State.SUCCEEDED and job.approval["approved_by"] == "bob"
