"""A ``Registry`` for a host, configured from settings: scheme, CA bundle, credentials, limits."""

from __future__ import annotations

import time
from collections.abc import Callable

from workers.oci import credentials
from workers.oci.config import HasOciSettings
from workers.oci.registry import Endpoint, Registry, RegistryError


def connect(configured: HasOciSettings, host: str, *, sleep: Callable[[float], None] = time.sleep
            ) -> Registry:
    settings = configured.oci()
    config = settings.registry(host)
    verify: bool | str = True
    if config.ca_bundle is not None:
        if not config.ca_bundle.is_file():
            raise RegistryError(f"ca_bundle for registry {host} does not exist: {config.ca_bundle}")
        verify = str(config.ca_bundle)
    try:
        found = credentials.lookup(settings, host)
    except credentials.CredentialsError as exc:
        raise RegistryError(str(exc)) from None
    endpoint = Endpoint(host, settings.uses_plain_http(host), verify, found,
                        settings.registry_timeout, settings.registry_retries)
    return Registry(endpoint, sleep=sleep)
