"""The Kubernetes API for one environment, through the official ``kubernetes`` client.

Writes are server-side apply (``application/apply-patch+yaml``) under the field manager
``wasmbot``, so wasmbot owns the fields it sets and nothing else; every apply is read back.
API errors become messages naming the environment, the object and what the server said.
"""

from __future__ import annotations

import json
from typing import Any

import urllib3
from kubernetes import client as k8s
from kubernetes import config as kubeconfig
from kubernetes.client.rest import ApiException

from workers.config import Environment
from workers.deploy.target import DeployError

FIELD_MANAGER = "wasmbot"


class Conflict(DeployError):
    """Someone else changed the object since it was read (HTTP 409): read it again and retry."""


class Cluster:
    def __init__(self, env_name: str, env: Environment, timeout: float = 30.0) -> None:
        self.env_name, self.env, self.timeout = env_name, env, timeout
        try:
            if env.kubeconfig is not None:
                api_client = kubeconfig.new_client_from_config(
                    config_file=str(env.kubeconfig), context=env.context
                )
            else:
                configuration = k8s.Configuration()
                kubeconfig.load_incluster_config(client_configuration=configuration)
                api_client = k8s.ApiClient(configuration)
        except (kubeconfig.ConfigException, OSError) as exc:
            raise DeployError(
                f"environment {env_name}: cannot load its cluster configuration: {exc}"
            ) from None
        api_client.configuration.retries = 1  # a cluster that is down is reported, not waited for
        self.server = api_client.configuration.host
        self.api = k8s.CustomObjectsApi(api_client)

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, _request_timeout=self.timeout, **kwargs)
        except ApiException as exc:
            kind = Conflict if exc.status == 409 else DeployError
            raise kind(
                f"environment {self.env_name}: the cluster refused to {what}: {_reason(exc)}"
            ) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._unreachable(exc) from None

    def _unreachable(self, exc: Exception) -> DeployError:
        return DeployError(
            f"environment {self.env_name}: the cluster at {self.server} is unreachable "
            f"({type(exc).__name__}); nothing was changed. Check the kubeconfig and that "
            "the API server is up, then retry"
        )

    def get(self, group: str, version: str, plural: str, name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self.api.get_namespaced_custom_object(
                group, version, self.env.namespace, plural, name, _request_timeout=self.timeout
            )
            return found
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise DeployError(
                f"environment {self.env_name}: cannot read {plural}/{name}: {_reason(exc)}"
            ) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._unreachable(exc) from None

    def apply(
        self, obj: dict[str, Any], group: str, version: str, plural: str, *, dry_run: bool = False
    ) -> dict[str, Any] | None:
        name = obj["metadata"]["name"]
        kwargs: dict[str, Any] = {
            "field_manager": FIELD_MANAGER,
            "force": True,
            "_content_type": "application/apply-patch+yaml",
        }
        if dry_run:
            kwargs["dry_run"] = "All"
        stored: dict[str, Any] | None = self._call(
            f"apply {obj['kind']} {name}",
            self.api.patch_namespaced_custom_object,
            group,
            version,
            self.env.namespace,
            plural,
            name,
            obj,
            **kwargs,
        )
        return stored

    def replace(
        self, obj: dict[str, Any], group: str, version: str, plural: str, *, dry_run: bool = False
    ) -> dict[str, Any]:
        """PUT the object back; its ``metadata.resourceVersion`` makes the write conditional."""
        name = obj["metadata"]["name"]
        kwargs: dict[str, Any] = {"dry_run": "All"} if dry_run else {}
        stored: dict[str, Any] = self._call(
            f"update {obj['kind']} {name}",
            self.api.replace_namespaced_custom_object,
            group,
            version,
            self.env.namespace,
            plural,
            name,
            obj,
            **kwargs,
        )
        return stored

    def delete(self, group: str, version: str, plural: str, name: str) -> None:
        self._call(
            f"delete {plural}/{name}",
            self.api.delete_namespaced_custom_object,
            group,
            version,
            self.env.namespace,
            plural,
            name,
        )


def _reason(exc: ApiException) -> str:
    try:
        status = json.loads(exc.body or "{}")
        return f"{status.get('message') or exc.reason} (HTTP {exc.status})"
    except ValueError:
        return f"HTTP {exc.status} {exc.reason}"
