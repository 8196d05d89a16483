"""The Helm chart (deploy/helm/wasmbot): real `helm lint` and `helm template`, every rendered object
checked against the Kubernetes OpenAPI schemas, and the properties users rely on."""

from __future__ import annotations

import base64
import copy
import json
import os
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT
from k8sschema import errors

from bot.cli import build_parser
from workers import routing
from workers.config import Settings

# The first run builds Helm from source (minutes, once per version); later runs reuse it.
pytestmark = pytest.mark.timeout(900)

CHART = ROOT / "deploy" / "helm" / "wasmbot"
Obj = dict[str, Any]

SECRET_VALUES = {  # distinctive, so a leak anywhere in the rendered output is found
    "slack": {"signingSecret": "sig-Zq81x", "botToken": "xoxb-Zq82x", "appToken": "xapp-Zq83x"},
    "github": {"webhookSecret": "hook-Zq84x", "token": "ghp_Zq85x"},
}

FULL: Obj = {  # every optional feature on, secrets by reference
    "image": {"repository": "localhost/wasmbot", "tag": "latest"},
    "dataDir": "/srv/wasmbot",
    "imagePullSecrets": [{"name": "pull"}],
    "config": {
        "public_url": "https://wasmbot.example.com",
        "worker_concurrency": 4,
        "toolchain_images": {"c": "registry.example.com/toolchain-c:1"},
        "registries": {"registry.example.com": {"ca_bundle": "/etc/ssl/certs/ca-certificates.crt"}},
        "environments": {"prod": {"namespace": "mesh", "protected": True, "priority": 10}},
    },
    "redis": {"existingSecret": "redis-url"},
    "logLinkKey": {"existingSecret": "log-link", "existingSecretKey": "key"},
    "slack": {"enabled": True, "existingSecret": "slack-creds"},
    "github": {"enabled": True, "auth": "app", "appId": 12345, "existingSecret": "github-creds"},
    "registry": {
        "dockerConfigSecret": "registry-dockercfg",
        "passwords": [{"host": "registry.example.com", "username": "bot",
                       "existingSecret": "registry-password", "key": "password"}],
    },
    "serviceAccount": {"automountToken": True},
    "rbac": {"deployNamespaces": ["mesh", "gloo-system"]},
    "podLabels": {"team": "wasm"},
    "server": {"replicas": 2, "dataVolume": {"persistentVolumeClaim": {"claimName": "wasmbot-server"}}},
    "worker": {"replicas": 3, "runtime": {"mode": "hostSocket", "socketGroup": 998}},
    "ingress": {"enabled": True, "className": "nginx",
                "tls": [{"secretName": "wasmbot-tls", "hosts": ["wasmbot.example.com"]}]},
    "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
}
CREATED_SECRETS: Obj = {
    "slack": {"enabled": True, **SECRET_VALUES["slack"]},
    "github": {"enabled": True, **SECRET_VALUES["github"]},
}
REMOTE_DOCKER: Obj = {"worker": {"runtime": {"mode": "remote", "engine": "docker", "url": "tcp://docker.builds:2375"}}}
POOLS: Obj = {  # N servers, M workers in pools by toolchain
    "server": {"replicas": 3},
    "worker": {"concurrency": 3, "nodeSelector": {"pool": "builds"}, "pools": {
        "general": {"toolchains": ["none"], "replicas": 2},
        "c-go": {"toolchains": ["c", "cpp", "go", "tinygo"], "replicas": 4},
        "rust": {"toolchains": ["rust"], "replicas": 0, "concurrency": 1,
                 "resources": {"limits": {"memory": "8Gi"}}, "nodeSelector": {"size": "large"}},
    }},
}
VALUE_SETS = {"default": {}, "full": FULL, "created-secrets": CREATED_SECRETS, "remote-docker": REMOTE_DOCKER,
              "pools": POOLS}


@pytest.fixture(scope="session")
def helm() -> str:
    """Helm built from the Go module proxy by deploy/tools/helm.sh (cached after the first build)."""
    proc = subprocess.run(["bash", str(ROOT / "deploy/tools/helm.sh")], capture_output=True, text=True, check=True)
    return proc.stdout.strip()


def run_helm(helm: str, tmp_path: Path, command: str, values: Obj) -> subprocess.CompletedProcess[str]:
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    args = ["lint", "--strict"] if command == "lint" else ["template", "demo", "--namespace", "bots"]
    return subprocess.run([helm, *args, str(CHART), "-f", str(values_file)], capture_output=True, text=True)


def render(helm: str, tmp_path: Path, values: Obj) -> list[Obj]:
    proc = run_helm(helm, tmp_path, "template", values)
    assert proc.returncode == 0, proc.stderr
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def one(objects: list[Obj], kind: str, suffix: str = "") -> Obj:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"].endswith(suffix)]
    assert len(found) == 1, [o["metadata"]["name"] for o in found]
    return found[0]


def container(deployment: Obj) -> Obj:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def env_of(deployment: Obj) -> dict[str, Obj]:
    return {e["name"]: e for e in container(deployment)["env"]}


@pytest.mark.parametrize("name", VALUE_SETS)
def test_lint_is_clean(helm: str, tmp_path: Path, name: str) -> None:
    proc = run_helm(helm, tmp_path, "lint", VALUE_SETS[name])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout


@pytest.mark.parametrize("name", VALUE_SETS)
def test_rendered_objects_match_the_kubernetes_schemas(helm: str, tmp_path: Path, name: str) -> None:
    objects = render(helm, tmp_path, VALUE_SETS[name])
    kinds = sorted(o["kind"] for o in objects)
    pools = VALUE_SETS[name].get("worker", {}).get("pools", {"": None})
    assert {"ConfigMap", "Service", "ServiceAccount"} <= set(kinds) and kinds.count("Deployment") == 1 + len(pools)
    problems = [(o["kind"], o["metadata"]["name"], e) for o in objects for e in errors(o)]
    assert problems == []
    for obj in objects:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "wasmbot" and labels["app.kubernetes.io/instance"] == "demo"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"


def test_the_validator_reports_what_the_api_server_would_reject(helm: str, tmp_path: Path) -> None:
    objects = render(helm, tmp_path, FULL)
    broken = copy.deepcopy(one(objects, "Deployment", "-server"))
    spec = broken["spec"]
    del spec["selector"]
    spec["replicas"] = "two"
    pod = spec["template"]["spec"]
    pod["containers"][0]["imagePullPolicyy"] = "Always"
    pod["containers"][0]["ports"][0]["containerPort"] = "8080"
    pod["containers"][0]["livenessProbe"]["httpGet"]["port"] = 1.5  # IntOrString: neither
    pod["containers"][0]["env"].append({"name": "HOME", "value": "/root"})
    assert errors(broken) == [
        'missing required field "spec.selector"',
        "spec.replicas: 'two' is not of type 'integer'",
        'unknown field "spec.template.spec.containers[0].imagePullPolicyy"',
        "spec.template.spec.containers[0].env: duplicate entry for key {'name': 'HOME'}",
        "spec.template.spec.containers[0].livenessProbe.httpGet.port: 1.5 is not valid under any of the given schemas",
        "spec.template.spec.containers[0].ports[0].containerPort: '8080' is not of type 'integer'",
    ]
    monitor = copy.deepcopy(one(objects, "ServiceMonitor"))
    monitor["metadata"]["lables"] = {}
    monitor["spec"]["endpoints"][0]["scheme"] = "htttp"
    assert errors(monitor) == [
        'unknown field "metadata.lables"',
        "spec.endpoints[0].scheme: 'htttp' is not one of ['http', 'https', 'HTTP', 'HTTPS']",
    ]
    service = copy.deepcopy(one(objects, "Service"))
    service["spec"]["ports"][0]["targetPort"] = 8080  # IntOrString: an int is fine too
    assert errors(service) == []
    assert errors({"apiVersion": "example.com/v1", "kind": "Widget"}) == [
        "no schema for apiVersion 'example.com/v1' kind 'Widget'"]


def test_server_and_worker_run_their_commands(helm: str, tmp_path: Path) -> None:
    objects = render(helm, tmp_path, {"worker": {"concurrency": 3}})
    server, worker = one(objects, "Deployment", "-server"), one(objects, "Deployment", "-worker")
    for deployment in (server, worker):
        assert container(deployment)["image"] == "ghcr.io/wasmbot/wasmbot:0.1.0"  # the appVersion
        assert "command" not in container(deployment)  # the image's entrypoint: wasmbot
    assert container(server)["args"] == ["serve", "--host", "0.0.0.0", "--port", "8080"]
    assert container(worker)["args"] == ["worker", "--concurrency", "3"]
    assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > 300  # a build may finish
    go = one(render(helm, tmp_path, {"worker": {"toolchains": ["go", "tinygo"]}}), "Deployment", "-worker")
    assert container(go)["args"] == ["worker", "--concurrency", "2", "--toolchains", "go,tinygo"]
    assert build_parser().parse_args(container(go)["args"]).toolchains == "go,tinygo"
    schema = json.loads((ROOT / "deploy/helm/wasmbot/values.schema.json").read_text())
    offered = schema["properties"]["worker"]["properties"]["toolchains"]["items"]["enum"]
    assert set(offered) == {*routing.TOOLCHAINS, routing.NO_TOOLCHAINS}  # the chart offers what workers know
    selector = server["spec"]["selector"]["matchLabels"]
    assert selector["app.kubernetes.io/component"] == "server"
    assert worker["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == "worker"
    assert one(objects, "Service")["spec"]["selector"] == selector
    for deployment in (server, worker):  # the API server rejects a selector its pods do not match
        matched = deployment["spec"]["selector"]["matchLabels"]
        assert matched.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
        assert "app.kubernetes.io/version" not in matched  # selectors are immutable across upgrades


@pytest.mark.parametrize("port", [8080, 9090])
def test_probes_hit_health_endpoints_on_the_container_port(helm: str, tmp_path: Path, port: int) -> None:
    objects = render(helm, tmp_path, {"server": {"port": port}})
    server = container(one(objects, "Deployment", "-server"))
    ports = {p["name"]: p["containerPort"] for p in server["ports"]}
    assert ports == {"http": port} and server["args"][-2:] == ["--port", str(port)]
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = server[probe]["httpGet"]
        assert get["path"] == path and ports[get["port"]] == port
    service_port = one(objects, "Service")["spec"]["ports"][0]
    assert service_port["targetPort"] == "http" and service_port["name"] == "http"


def test_pods_run_as_non_root_with_no_capabilities(helm: str, tmp_path: Path) -> None:
    for deployment in (d for d in render(helm, tmp_path, FULL) if d["kind"] == "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
        context = container(deployment)["securityContext"]
        assert context["capabilities"]["drop"] == ["ALL"] and context["allowPrivilegeEscalation"] is False
        assert context["readOnlyRootFilesystem"] is True
        assert {"requests", "limits"} <= set(container(deployment)["resources"])
        mounts = {m["mountPath"] for m in container(deployment)["volumeMounts"]}
        assert {"/tmp", "/etc/wasmbot/config"} <= mounts  # and data_dir: see the ConfigMap test


def test_secrets_come_from_secret_references(helm: str, tmp_path: Path) -> None:
    objects = render(helm, tmp_path, FULL)
    assert not [o for o in objects if o["kind"] == "Secret"]  # existing Secrets: the chart makes none
    for deployment in (one(objects, "Deployment", "-server"), one(objects, "Deployment", "-worker")):
        env = env_of(deployment)
        refs = {name: e["valueFrom"]["secretKeyRef"] for name, e in env.items() if "valueFrom" in e}
        if deployment["metadata"]["name"].endswith("-server"):  # only the server signs log links
            assert refs.pop("WASMBOT_LOG_LINK_KEY") == {"name": "log-link", "key": "key"}
        assert refs == {
            "REDIS_URL": {"name": "redis-url", "key": "REDIS_URL"},
            "SLACK_SIGNING_SECRET": {"name": "slack-creds", "key": "SLACK_SIGNING_SECRET"},
            "SLACK_BOT_TOKEN": {"name": "slack-creds", "key": "SLACK_BOT_TOKEN"},
            "SLACK_APP_TOKEN": {"name": "slack-creds", "key": "SLACK_APP_TOKEN", "optional": True},
            "GITHUB_WEBHOOK_SECRET": {"name": "github-creds", "key": "GITHUB_WEBHOOK_SECRET"},
            "GITHUB_APP_PRIVATE_KEY": {"name": "github-creds", "key": "GITHUB_APP_PRIVATE_KEY"},
        }
        assert "GITHUB_TOKEN" not in env  # app auth
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        assert volumes["docker-config"]["secret"]["secretName"] == "registry-dockercfg"
        assert volumes["registry-password-0"]["secret"] == {
            "secretName": "registry-password", "items": [{"key": "password", "path": "password"}]}


def test_secret_values_given_to_the_chart_stay_in_its_secrets(helm: str, tmp_path: Path) -> None:
    objects = render(helm, tmp_path, CREATED_SECRETS)
    secrets = {o["metadata"]["name"]: o["stringData"] for o in objects if o["kind"] == "Secret" and "stringData" in o}
    assert secrets == {
        "demo-wasmbot-slack": {"SLACK_SIGNING_SECRET": "sig-Zq81x", "SLACK_BOT_TOKEN": "xoxb-Zq82x",
                               "SLACK_APP_TOKEN": "xapp-Zq83x"},
        "demo-wasmbot-github": {"GITHUB_WEBHOOK_SECRET": "hook-Zq84x", "GITHUB_TOKEN": "ghp_Zq85x"},
    }
    others = yaml.safe_dump_all([o for o in objects if o["kind"] != "Secret"])
    leaked = [v for group in SECRET_VALUES.values() for v in group.values() if v in others]
    assert leaked == []
    env = env_of(one(objects, "Deployment", "-server"))
    assert env["GITHUB_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "demo-wasmbot-github", "key": "GITHUB_TOKEN"}


def test_worker_pools_are_deployments_with_their_own_toolchains_and_replicas(helm: str, tmp_path: Path) -> None:
    objects = render(helm, tmp_path, POOLS)
    assert one(objects, "Deployment", "-server")["spec"]["replicas"] == 3
    workers = {d["metadata"]["name"]: d for d in objects if d["kind"] == "Deployment" and "-worker" in d["metadata"]["name"]}
    assert set(workers) == {"demo-wasmbot-worker-general", "demo-wasmbot-worker-c-go", "demo-wasmbot-worker-rust"}
    served = {}
    for name, deployment in workers.items():
        args = build_parser().parse_args(container(deployment)["args"])  # a real `wasmbot worker` command line
        served[name] = (deployment["spec"]["replicas"], args.concurrency, routing.parse(args.toolchains))
    assert served == {
        "demo-wasmbot-worker-general": (2, 3, ()),  # the stages that need no toolchain
        "demo-wasmbot-worker-c-go": (4, 3, ("c", "cpp", "go", "tinygo")),
        "demo-wasmbot-worker-rust": (0, 1, ("rust",)),
    }
    # What a pool leaves out comes from worker.*; what it sets replaces worker.*'s.
    pods = {name: d["spec"]["template"]["spec"] for name, d in workers.items()}
    assert pods["demo-wasmbot-worker-c-go"]["nodeSelector"] == {"pool": "builds"}
    assert pods["demo-wasmbot-worker-rust"]["nodeSelector"] == {"size": "large"}
    assert container(workers["demo-wasmbot-worker-rust"])["resources"] == {"limits": {"memory": "8Gi"}}
    assert container(workers["demo-wasmbot-worker-general"])["resources"]["requests"] == {"cpu": "500m", "memory": "1Gi"}
    # Every pool reaches the same Redis and config; no Deployment's selector takes another's pods.
    for deployment in workers.values():
        assert env_of(deployment)["REDIS_URL"] == {"name": "REDIS_URL", "value": "redis://redis:6379/0"}
        assert "WASMBOT_LOG_LINK_KEY" not in env_of(deployment)
    deployments = [d for d in objects if d["kind"] == "Deployment"]
    for deployment in deployments:
        selector = deployment["spec"]["selector"]["matchLabels"].items()
        taken = [d["metadata"]["name"] for d in deployments if selector <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert taken == [deployment["metadata"]["name"]]
    # Without pools, the one worker Deployment keeps its name and selector (immutable on upgrade).
    default = one(render(helm, tmp_path, {}), "Deployment", "-worker")
    assert default["metadata"]["name"] == "demo-wasmbot-worker"
    assert default["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "wasmbot",
                                                          "app.kubernetes.io/instance": "demo",
                                                          "app.kubernetes.io/component": "worker"}


def test_server_replicas_share_one_log_link_key(helm: str, tmp_path: Path) -> None:
    objects = render(helm, tmp_path, POOLS)
    [secret] = [o for o in objects if o["kind"] == "Secret"]
    key = base64.b64decode(secret["data"]["WASMBOT_LOG_LINK_KEY"]).decode()
    assert len(key) == 64 and int(key, 16) >= 0  # 256 bits, hex
    server = one(objects, "Deployment", "-server")
    assert server["spec"]["replicas"] == 3  # one pod template: every replica reads the same Secret
    assert env_of(server)["WASMBOT_LOG_LINK_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": secret["metadata"]["name"], "key": "WASMBOT_LOG_LINK_KEY"}
    again = next(o for o in render(helm, tmp_path, POOLS) if o["kind"] == "Secret")
    assert again["data"] != secret["data"]  # a fresh key per render: nothing fixed in the chart
    mine = render(helm, tmp_path, {"logLinkKey": {"existingSecret": "mine"}})
    assert not [o for o in mine if o["kind"] == "Secret"]
    assert env_of(one(mine, "Deployment", "-server"))["WASMBOT_LOG_LINK_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "mine", "key": "WASMBOT_LOG_LINK_KEY"}


def settings_in(deployment: Obj, config: Obj, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The settings wasmbot starts with in this container: its literal environment, the rendered file."""
    config_file = tmp_path / "wasmbot.toml"
    config_file.write_text(config["data"]["wasmbot.toml"])
    for name in [n for n in os.environ if n.startswith(("WASMBOT_", "SLACK_", "GITHUB_", "REDIS_"))]:
        monkeypatch.delenv(name)
    for name, entry in env_of(deployment).items():
        if "value" in entry:
            monkeypatch.setenv(name, entry["value"])
    monkeypatch.setenv("WASMBOT_CONFIG", str(config_file))
    return Settings()  # extra="forbid": a setting name wasmbot does not know fails here


def test_configmap_is_a_wasmbot_toml_that_wasmbot_accepts(helm: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    objects = render(helm, tmp_path, FULL)
    config = one(objects, "ConfigMap")
    text = config["data"]["wasmbot.toml"]
    assert "password =" not in text and "token" not in text
    parsed = tomllib.loads(text)  # Helm reads values' numbers as floats; the file keeps integers
    assert type(parsed["worker_concurrency"]) is int and type(parsed["environments"]["prod"]["priority"]) is int
    for deployment in (one(objects, "Deployment", "-server"), one(objects, "Deployment", "-worker")):
        settings = settings_in(deployment, config, tmp_path, monkeypatch)
        assert settings.worker_concurrency == 4 and settings.github_app_id == 12345
        assert settings.container_engine == "podman" and settings.environments["prod"].protected is True
        assert settings.docker_config == Path("/etc/wasmbot/docker/config.json")
        registry = settings.oci().registry("registry.example.com")
        assert registry.username == "bot" and registry.ca_bundle == Path("/etc/ssl/certs/ca-certificates.crt")
        assert tomllib.loads(text)["registries"]["registry.example.com"]["password_file"] == str(registry.password_file)
        # Every path wasmbot uses is inside a volume this container mounts.
        mounts = [m["mountPath"] for m in container(deployment)["volumeMounts"]]
        config_path = env_of(deployment)["WASMBOT_CONFIG"]["value"]
        for path in (config_path, str(settings.docker_config), str(registry.password_file), str(settings.data_dir)):
            assert any(path == m or path.startswith(m + "/") for m in mounts), path
        # One path in both: a job's source_root (set by the server) names the worker's directory.
        assert settings.data_dir == Path("/srv/wasmbot")


def test_servicemonitor_exists_only_when_enabled_and_selects_the_service(helm: str, tmp_path: Path) -> None:
    assert not [o for o in render(helm, tmp_path, {}) if o["kind"] == "ServiceMonitor"]
    objects = render(helm, tmp_path, FULL)
    monitor, service = one(objects, "ServiceMonitor"), one(objects, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["bots"]}
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics" and endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    # The worker pods are not behind the Service: its selector picks the server only.
    worker = one(objects, "Deployment", "-worker")["spec"]["template"]["metadata"]["labels"]
    assert not service["spec"]["selector"].items() <= worker.items()


def test_ingress_routes_to_the_service(helm: str, tmp_path: Path) -> None:
    assert not [o for o in render(helm, tmp_path, {}) if o["kind"] == "Ingress"]
    objects = render(helm, tmp_path, FULL)
    ingress, service = one(objects, "Ingress"), one(objects, "Service")
    [rule] = ingress["spec"]["rules"]
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == service["metadata"]["name"]
    assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
    assert ingress["spec"]["ingressClassName"] == "nginx" and ingress["spec"]["tls"][0]["secretName"] == "wasmbot-tls"


def test_deploy_rbac_binds_the_service_account_where_asked(helm: str, tmp_path: Path) -> None:
    assert not [o for o in render(helm, tmp_path, {}) if o["kind"] in {"Role", "RoleBinding"}]
    objects = render(helm, tmp_path, FULL)
    account = one(objects, "ServiceAccount")
    roles = {o["metadata"]["namespace"]: o for o in objects if o["kind"] == "Role"}
    bindings = {o["metadata"]["namespace"]: o for o in objects if o["kind"] == "RoleBinding"}
    assert set(roles) == set(bindings) == {"mesh", "gloo-system"}
    for namespace, binding in bindings.items():
        assert binding["roleRef"]["name"] == roles[namespace]["metadata"]["name"]
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": "bots"}]
        rules = {(group, resource): set(rule["verbs"]) for rule in roles[namespace]["rules"]
                 for group in rule["apiGroups"] for resource in rule["resources"]}
        # workers/deploy: server-side apply, read back, rollback and undeploy.
        assert {"get", "patch", "delete"} <= rules[("extensions.istio.io", "wasmplugins")]
        assert {"get", "update"} <= rules[("gateway.solo.io", "gateways")]
    worker = one(objects, "Deployment", "-worker")["spec"]["template"]["spec"]
    assert worker["serviceAccountName"] == account["metadata"]["name"] and worker["automountServiceAccountToken"] is True


def test_worker_runtime_access_is_what_was_chosen(helm: str, tmp_path: Path) -> None:
    default = one(render(helm, tmp_path, {}), "Deployment", "-worker")
    assert not [v for v in default["spec"]["template"]["spec"]["volumes"] if "hostPath" in v]
    assert not {"CONTAINER_HOST", "DOCKER_HOST"} & set(env_of(default))

    socket = one(render(helm, tmp_path, FULL), "Deployment", "-worker")
    pod = socket["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in container(socket)["volumeMounts"]}
    assert volumes["container-socket"]["hostPath"] == {"path": "/run/podman/podman.sock", "type": "Socket"}
    assert env_of(socket)["CONTAINER_HOST"]["value"] == "unix://" + mounts["container-socket"]
    assert pod["securityContext"]["supplementalGroups"] == [998]
    # Build steps bind-mount paths under data_dir, which the node's runtime resolves on the node.
    assert volumes["data"]["hostPath"] == {"path": "/srv/wasmbot", "type": "Directory"}
    assert mounts["data"] == "/srv/wasmbot"
    server = one(render(helm, tmp_path, FULL), "Deployment", "-server")["spec"]["template"]["spec"]
    assert not [v for v in server["volumes"] if "hostPath" in v]  # only the worker gets the socket

    remote = one(render(helm, tmp_path, REMOTE_DOCKER), "Deployment", "-worker")
    assert env_of(remote)["DOCKER_HOST"]["value"] == "tcp://docker.builds:2375"
    config = one(render(helm, tmp_path, REMOTE_DOCKER), "ConfigMap")["data"]["wasmbot.toml"]
    assert tomllib.loads(config)["container_engine"] == "docker"


def test_notes_render_and_say_how_to_check_the_install(helm: str, tmp_path: Path) -> None:
    # `helm install` renders NOTES.txt; without a cluster, render it as a template of a copy.
    chart = tmp_path / "chart"
    shutil.copytree(CHART, chart)
    notes = (chart / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "NOTES.txt").unlink()
    (chart / "templates" / "_notes.tpl").write_text('{{- define "notes" -}}\n' + notes + "{{- end }}\n")
    (chart / "templates" / "notes.yaml").write_text('notes: {{ include "notes" . | toJson }}\n')
    for values, says, not_says in (({}, "Worker: 1 x `wasmbot worker --concurrency 2`", "ServiceMonitor"),
                                   ({}, "builds will fail", "Worker pool"),
                                   (FULL, "ServiceMonitor demo-wasmbot", "builds will fail"),
                                   (POOLS, "Worker pool rust: 0 x `wasmbot worker --concurrency 1 --toolchains rust`",
                                    "Worker:")):
        (tmp_path / "values.yaml").write_text(yaml.safe_dump(values))
        proc = subprocess.run([helm, "template", "demo", str(chart), "-n", "bots", "-f", str(tmp_path / "values.yaml"),
                               "--show-only", "templates/notes.yaml"], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        text = yaml.safe_load(proc.stdout)["notes"]
        assert "port-forward svc/demo-wasmbot 8080:8080" in text and "/readyz" in text
        assert says in text and not_says not in text


BAD_VALUES = [
    ({"server": {"replicas": -1}}, "at '/server/replicas': minimum: got -1, want 0"),
    ({"image": {"repository": ""}}, "at '/image/repository': minLength: got 0, want 1"),
    ({"image": {"repository": None}}, "at '/image': missing property 'repository'"),
    ({"worker": {"replicass": 2}}, "at '/worker': additional properties 'replicass' not allowed"),
    ({"worker": {"runtime": {"mode": "socket"}}}, "at '/worker/runtime/mode': value must be one of 'none', 'hostSocket', 'remote'"),
    ({"server": {"port": "http"}}, "at '/server/port': got string, want integer"),
    ({"redis": {"url": "localhost:6379"}}, "at '/redis/url'"),
    # Secrets and data_dir are refused in config (false schemas), whatever their value.
    ({"config": {"slack_bot_token": "xoxb-1"}}, "at '/config/slack_bot_token': false schema"),
    ({"config": {"data_dir": "/srv"}}, "at '/config/data_dir': false schema"),
    ({"config": {"registries": {"r.example": {"password": "p"}}}}, "at '/config/registries/r.example/password': false schema"),
    ({"slack": {"enabled": True}}, "at '/slack/signingSecret': minLength: got 0, want 1"),
    ({"slack": {"enabled": True, "existingSecret": "s", "botToken": "x"}}, "at '/slack/botToken': maxLength: got 1, want 0"),
    ({"github": {"enabled": True, "existingSecret": "g", "auth": "app"}}, "at '/github/appId': got null, want integer"),
    ({"github": {"enabled": True, "webhookSecret": "w"}}, "at '/github/token': minLength: got 0, want 1"),
    ({"worker": {"runtime": {"mode": "remote"}}}, "at '/worker/runtime/url': minLength: got 0, want 1"),
    ({"rbac": {"deployNamespaces": ["mesh"]}}, "at '/serviceAccount/automountToken': value must be true"),
    ({"worker": {"pools": {"Rust_1": {}}}}, "at '/worker/pools': additional properties 'Rust_1' not allowed"),
    ({"worker": {"pools": {"go": {"toolchains": ["golang"]}}}}, "at '/worker/pools/go/toolchains/0'"),
    ({"worker": {"pools": {"go": {"runtime": {}}}}}, "at '/worker/pools/go': additional properties 'runtime' not allowed"),
]


@pytest.mark.parametrize(("values", "message"), BAD_VALUES, ids=[m.split("'")[1] for _, m in BAD_VALUES])
@pytest.mark.parametrize("command", ["lint", "template"])
def test_bad_values_fail_with_a_clear_message(helm: str, tmp_path: Path, command: str, values: Obj,
                                              message: str) -> None:
    proc = run_helm(helm, tmp_path, command, values)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
