"""The Kubernetes API for one environment, through the official ``kubernetes`` client.

Writes are server-side apply (``application/apply-patch+yaml``) under the field manager
``wasmbot``, so wasmbot owns the fields it sets and nothing else; every apply is read back.
API errors become messages naming the environment, the object and what the server said.

Each call is tried once, with the environment's ``api_timeout`` to connect and to answer.  A
write whose answer does not come is followed by a read: the report says what that read shows
(applied, not applied), or that it is unknown — never a guess.
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


class NotFound(DeployError):
    """There is no such object (HTTP 404)."""


class NoAnswer(DeployError):
    """The server took the request but did not answer in time: whether it acted is unknown."""


class Cluster:
    def __init__(self, env_name: str, env: Environment) -> None:
        self.env_name, self.env = env_name, env
        self.timeout = (env.api_timeout, env.api_timeout)  # (connect, read)
        configuration = k8s.Configuration()
        try:
            if env.kubeconfig is not None:
                kubeconfig.load_kube_config(config_file=str(env.kubeconfig), context=env.context,
                                            client_configuration=configuration, persist_config=False)
            else:
                kubeconfig.load_incluster_config(client_configuration=configuration)
        except (kubeconfig.ConfigException, OSError) as exc:
            raise DeployError(
                f"environment {env_name}: cannot load its cluster configuration: {exc}"
            ) from None
        configuration.retries = False  # before the pool is built: one try, and its error as it is
        self.server = configuration.host
        self.api = k8s.CustomObjectsApi(k8s.ApiClient(configuration))

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, _request_timeout=self.timeout, **kwargs)
        except ApiException as exc:
            kind = {409: Conflict, 404: NotFound}.get(exc.status, DeployError)
            raise kind(
                f"environment {self.env_name}: the cluster refused to {what}: {_reason(exc)}"
            ) from None
        except (urllib3.exceptions.ConnectTimeoutError, OSError) as exc:  # nothing was sent
            raise self._unreachable(exc) from None
        except urllib3.exceptions.HTTPError as exc:  # sent, and then no (whole) answer
            raise NoAnswer(
                f"environment {self.env_name}: the cluster at {self.server} did not answer within "
                f"{self.env.api_timeout:g}s ({type(exc).__name__}) when asked to {what}"
            ) from None

    def _unreachable(self, exc: Exception) -> DeployError:
        return DeployError(
            f"environment {self.env_name}: the cluster at {self.server} is unreachable "
            f"({type(exc).__name__}); nothing was changed. Check the kubeconfig and that "
            "the API server is up, then retry"
        )

    def get(self, group: str, version: str, plural: str, name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self._call(f"read {plural}/{name}", self.api.get_namespaced_custom_object,
                                               group, version, self.env.namespace, plural, name)
            return found
        except NotFound:
            return None
        except NoAnswer as lost:  # a read: whatever else is unknown, it changed nothing
            raise NoAnswer(f"{lost}; nothing was changed (that was a read): retry later") from None

    def apply(
        self, obj: dict[str, Any], group: str, version: str, plural: str, *, dry_run: bool = False,
        force: bool = False,
    ) -> dict[str, Any] | None:
        """Server-side apply; a field another manager owns is a conflict unless ``force``."""
        name = obj["metadata"]["name"]
        kwargs: dict[str, Any] = {
            "field_manager": FIELD_MANAGER,
            "force": force,
            "_content_type": "application/apply-patch+yaml",
        }
        if dry_run:
            kwargs["dry_run"] = "All"
        try:
            stored: dict[str, Any] | None = self._call(
                f"apply {obj['kind']} {name}", self.api.patch_namespaced_custom_object,
                group, version, self.env.namespace, plural, name, obj, **kwargs)
            return stored
        except Conflict as conflict:  # the server names the manager and the fields
            if force:  # no field conflicts when forced: a resourceVersion precondition failed
                raise
            raise DeployError(f"{conflict}; nothing was changed: deploy with --force to take these fields "
                              "over, or set them back") from None
        except NoAnswer as lost:
            if dry_run:
                raise
            return self._found_after(lost, obj, group, version, plural)

    def _found_after(self, lost: NoAnswer, obj: dict[str, Any], group: str, version: str,
                     plural: str) -> dict[str, Any]:
        """After a lost answer, read the object: it holds what was sent (applied), or not."""
        name = obj["metadata"]["name"]
        try:
            stored = self.get(group, version, plural, name)
        except DeployError:
            raise NoAnswer(f"{lost}; it is unknown whether it was applied (a read did not get an answer "
                           f"either): check with kubectl get {plural} {name} -n {self.env.namespace}, "
                           "then retry") from None
        if stored is None or differing(obj.get("spec", {}), stored.get("spec", {})):
            raise DeployError(f"{lost}; it was not applied (the cluster holds the earlier {plural}/{name}): "
                              "retry") from None
        return stored

    def replace(
        self, obj: dict[str, Any], group: str, version: str, plural: str, *, dry_run: bool = False
    ) -> dict[str, Any]:
        """PUT the object back; its ``metadata.resourceVersion`` makes the write conditional."""
        name = obj["metadata"]["name"]
        kwargs: dict[str, Any] = {"field_manager": FIELD_MANAGER} | ({"dry_run": "All"} if dry_run else {})
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


def differing(sent: dict[str, Any], stored: dict[str, Any], path: str = "spec") -> list[str]:
    """The fields of ``sent`` that ``stored`` holds another value for (fields only others set are
    theirs, and not compared)."""
    found = []
    for key, value in sent.items():
        there = stored.get(key)
        if isinstance(value, dict) and isinstance(there, dict):
            found += differing(value, there, f"{path}.{key}")
        elif there != value:
            found.append(f"{path}.{key}")
    return found


def unmanaged(sent: dict[str, Any], stored: dict[str, Any], manager: str) -> list[str]:
    """The top-level spec fields of ``sent`` that the stored object's managedFields do not record
    ``manager`` as owning (server-side apply's own record of who set what)."""
    owned: set[str] = set()
    for entry in stored.get("metadata", {}).get("managedFields") or []:
        if entry.get("manager") == manager and entry.get("operation") == "Apply":
            owned |= {key.removeprefix("f:") for key in (entry.get("fieldsV1") or {}).get("f:spec", {})}
    return [f"spec.{key}" for key in sent if key not in owned]
