"""Settings from the environment and an optional ``wasmbot.toml``, validated once at start.

Environment variables win over the file (``WASMBOT_<FIELD>``; ``REDIS_URL`` is also accepted).
With no Redis configured wasmbot runs on an embedded store under ``data_dir`` so that the
quick start needs no server.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from workers.configsource import ConfigError
from workers.configsource import config_file as _config_file
from workers.configsource import default_data_dir as _default_data_dir
from workers.oci.config import HostSettings, OciSettings, Variant


class RegistryConfig(BaseModel):
    """How to reach one registry.  Secrets stay in ``SecretStr`` so they never print."""

    model_config = ConfigDict(extra="forbid")

    plain_http: bool | None = None  # default: plain HTTP for loopback hosts only
    ca_bundle: Path | None = None  # PEM file of the CAs that sign the registry's certificate
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None  # read at use, so a mounted secret can rotate
    variant: Variant | None = None

    @model_validator(mode="after")
    def _one_password(self) -> RegistryConfig:
        if self.password is not None and self.password_file is not None:
            raise ValueError("give password or password_file, not both")
        if (self.password is not None or self.password_file is not None) and not self.username:
            raise ValueError("a password needs a username")
        return self


class Environment(BaseModel):
    """Where ``/wasm deploy --env NAME`` puts a filter (workers/deploy/, docs/deploy.md)."""

    model_config = ConfigDict(extra="forbid")

    platform: Literal["istio", "gloo", "envoy"] = "istio"
    platform_version: str | None = None  # for the ABI check; default: the newest wasmbot knows
    kubeconfig: Path | None = None  # None: the in-cluster service account
    context: str | None = None
    namespace: str = "default"
    # Istio: at most one of selector (workload labels) and target_refs.
    selector: dict[str, str] = {}
    target_refs: list[dict[str, str]] = []
    # Gloo: the Gateway resources to add the filter to, by name, and where in the chain.
    gateways: list[str] = []
    gloo_stage: str = "AuthNStage"
    gloo_predicate: Literal["During", "Before", "After"] = "After"
    phase: Literal["UNSPECIFIED_PHASE", "AUTHN", "AUTHZ", "STATS"] | None = None
    priority: int | None = None
    fail_strategy: Literal["FAIL_CLOSE", "FAIL_OPEN", "FAIL_RELOAD"] | None = None
    pull_policy: Literal["UNSPECIFIED_POLICY", "IfNotPresent", "Always"] | None = None
    pull_secret: str | None = None
    protected: bool = False  # deploys wait for an approval
    # Seconds to connect to the API server, and to wait for each answer: a hung server is given
    # up on, and what is known then is reported, rather than waiting on it.
    api_timeout: float = Field(default=5.0, gt=0, le=300)

    @model_validator(mode="after")
    def _one_target(self) -> Environment:
        if self.selector and self.target_refs:
            raise ValueError("give selector or target_refs, not both (Istio allows one)")
        return self


def _named(env: str, default: Any = None) -> Any:
    """A setting read from its service's own variable (``SLACK_BOT_TOKEN``), also with our prefix."""
    return Field(default=default, validation_alias=AliasChoices(env, f"WASMBOT_{env}", env.lower()))


class Settings(BaseSettings):
    """Everything wasmbot can be configured with; see README "Configuration"."""

    model_config = SettingsConfigDict(env_prefix="WASMBOT_", extra="forbid")

    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("WASMBOT_REDIS_URL", "REDIS_URL", "redis_url")
    )
    data_dir: Path = Field(default_factory=_default_data_dir)

    # Build sandbox.  Toolchain images by toolchain name (c, cpp, go, tinygo, rust,
    # assemblyscript); a toolchain without one is built by deploy/toolchains/build-image.sh.
    container_engine: Literal["podman", "docker"] = "podman"
    toolchain_images: dict[str, str] = {}
    build_timeout: float = Field(default=300.0, gt=0)
    fetch_timeout: float = Field(default=600.0, gt=0)
    build_memory: str = Field(default="2g", pattern=r"^[0-9]+[bkmg]?$")
    build_cache_mb: int = Field(default=1024, gt=0)
    build_output_mb: int = Field(default=64, gt=0)  # /out of a build (and a precompiled module)
    deps_cache_mb: int = Field(default=8192, gt=0)
    # CA bundle mounted into dependency fetches (registries behind a TLS-inspecting proxy).
    build_ca_bundle: Path | None = Path("/etc/ssl/certs/ca-certificates.crt")
    build_cpus: float = Field(default=1.0, gt=0)
    build_pids: int = Field(default=256, gt=0)

    # Test stage (ABI harness): wasmtime fuel (about one unit per instruction) and wall-clock
    # seconds for each callback, the cap on a module's linear memory, the largest module, and
    # the time and memory its compilation (in a child process) may take.
    test_fuel: int = Field(default=1_000_000_000, gt=0)
    test_callback_seconds: float = Field(default=10.0, gt=0)
    test_memory_mb: int = Field(default=256, gt=0)
    test_max_module_mb: int = Field(default=256, gt=0)
    test_compile_seconds: float = Field(default=30.0, gt=0)
    test_compile_memory_mb: int = Field(default=1024, ge=256)

    # Registries (workers/oci, docs/registries.md).  Keys are hosts (``ghcr.io``,
    # ``registry.internal:5000``) or fnmatch patterns (``*.corp.example``); the exact key wins.
    registries: dict[str, RegistryConfig] = {}
    # Docker's config.json (``auths``, ``credHelpers``, ``credsStore``) for registries that
    # have no username here; default: $DOCKER_CONFIG/config.json, then ~/.docker/config.json.
    docker_config: Path | None = None
    # Where `/wasm search` and `wasmbot search` look when no registry is named.
    default_registry: str | None = None
    registry_timeout: float = Field(default=60.0, gt=0)
    registry_retries: int = Field(default=3, ge=0, le=10)
    # Image layout where a registry does not choose one: "compat" (a standard image whose one
    # tar+gzip layer holds plugin.wasm: Istio and every OCI tool), "oci" (the solo.io variant:
    # Gloo, WebAssembly Hub, Istio) or "both" ("oci" under TAG + oci_tag_suffix).
    push_variant: Variant = "compat"
    oci_tag_suffix: str = Field(default="-oci", pattern=r"^[A-Za-z0-9._-]{1,20}$")

    # Stage outputs a later stage or a front end reads (workers/artifacts.py, docs/architecture.md
    # "Data between stages"): large ones (the built module, a GitHub checkout) go to a scratch
    # repository of ``artifact_registry`` ("HOST[/REPOSITORY]", default repository
    # wasmbot-scratch), small ones (test reports) and, with no registry, every one up to
    # ``artifact_store_max_mb`` to the job store.  Each is deleted ``artifact_ttl`` seconds after
    # it was made: a retry or ``/wasm push JOB`` after that builds again.
    artifact_registry: str | None = None
    artifact_ttl: float = Field(default=7 * 86400.0, gt=0)
    artifact_store_max_mb: int = Field(default=64, gt=0)

    # Durability: a running stage holds a lease it renews; a lease older than this is a lost
    # worker, and the stage is queued again.  A queued stage not started within
    # ``requeue_after`` seconds is queued again (duplicates are harmless: stages are idempotent).
    lease_ttl: float = Field(default=30.0, gt=0)
    requeue_after: float = Field(default=900.0, gt=0)
    visibility_timeout: int = Field(default=3600, gt=0)
    worker_concurrency: int = Field(default=2, gt=0)

    environments: dict[str, Environment] = {}
    approval_ttl: float = Field(default=3600.0, gt=0)  # seconds an approval request stays open
    # Chat front ends.  SOURCE paths in chat commands resolve below ``source_root`` (default:
    # DATA_DIR/sources), where /wasm init also creates new filters.
    source_root: Path | None = None
    permissions: dict[str, list[str]] = {}  # bot/permissions.py
    people: dict[str, list[str]] = {}  # one person's ids on each front end (bot/permissions.py)
    # Slack (bot/slack/).  The SLACK_* names are Slack's own conventions.
    slack_signing_secret: SecretStr | None = _named("SLACK_SIGNING_SECRET")
    slack_bot_token: SecretStr | None = _named("SLACK_BOT_TOKEN")
    slack_api_url: str = _named("SLACK_API_URL", "https://slack.com/api/")
    slack_client_id: str | None = _named("SLACK_CLIENT_ID")
    slack_client_secret: SecretStr | None = _named("SLACK_CLIENT_SECRET")
    slack_app_token: SecretStr | None = _named("SLACK_APP_TOKEN")  # Socket Mode
    slack_announce_channel: str = "#wasm"
    slack_update_interval: float = Field(default=1.0, ge=0)  # least seconds between message edits
    public_url: str | None = None  # where wasmbot serve is reachable, for links to job logs
    # The key log links are signed with (bot/loglinks.py), the same on every server replica;
    # or a file holding it (read at use: a mounted secret).  Required with Redis.
    log_link_key: SecretStr | None = None
    log_link_key_file: Path | None = None
    log_link_ttl: float = Field(default=30 * 86400.0, gt=0)  # seconds a log link stays valid
    # Seconds the web hub's module catalogue (read from default_registry) is shown before it is
    # read again in the background (bot/hub/catalogue.py).
    hub_catalogue_refresh: float = Field(default=120.0, gt=0)
    # GitHub (bot/github/, docs/github.md).  The GITHUB_* names follow GitHub's conventions.
    github_webhook_secret: SecretStr | None = _named("GITHUB_WEBHOOK_SECRET")
    github_token: SecretStr | None = _named("GITHUB_TOKEN")
    github_app_id: int | None = _named("GITHUB_APP_ID")
    github_app_private_key: SecretStr | None = _named("GITHUB_APP_PRIVATE_KEY")
    github_api_url: str = _named("GITHUB_API_URL", "https://api.github.com")
    # Where /wasm init creates repositories (an organisation, or the token user's login);
    # None: it creates none.
    github_repo_owner: str | None = None
    # Tags whose push runs the release pipeline (an fnmatch pattern such as "v*"), for
    # repositories that tag without publishing GitHub releases; None: releases only.
    github_release_tags: str | None = None
    # PR authors trusted to have their code built without `/wasm ok-to-test`, and the
    # commenters who may say it (GitHub's author_association values).
    github_trusted: list[str] = ["OWNER", "MEMBER", "COLLABORATOR"]
    github_retries: int = Field(default=3, ge=0, le=10)
    github_backoff: float = Field(default=1.0, ge=0)  # seconds, doubled on each retry
    # Least seconds between writes, as GitHub asks of integrations to avoid secondary limits.
    github_write_interval: float = Field(default=1.0, ge=0)
    # Seconds to wait after a secondary rate limit that names no Retry-After (GitHub: a minute or more).
    github_secondary_wait: float = Field(default=60.0, ge=0)
    github_update_interval: float = Field(default=1.0, ge=0)  # least seconds between check run edits
    # Web hub (bot/hub/, docs/hub.md): sign-in with a GitHub OAuth app (its client id and secret;
    # ``github_web_url`` is where its /login/oauth pages are), signed session cookies that expire
    # after ``hub_session_ttl`` seconds (key: ``hub_session_secret``, else the
    # log-link key every replica shares), and whether pages are readable, read-only, without signing in.
    github_client_id: str | None = _named("GITHUB_CLIENT_ID")
    github_client_secret: SecretStr | None = _named("GITHUB_CLIENT_SECRET")
    github_web_url: str = _named("GITHUB_WEB_URL", "https://github.com")
    hub_session_secret: SecretStr | None = None
    hub_session_ttl: float = Field(default=8 * 3600.0, gt=0)
    hub_anonymous_read: bool = False

    web_host: str = "127.0.0.1"
    web_port: int = Field(default=8080, ge=0, le=65535)
    # Limits of `wasmbot serve` (bot/serving.py, docs/security.md "Web endpoints"): seconds a
    # connection may take to send a complete request head (also the idle keep-alive time),
    # seconds a handler waits for a body, open connections at most, the listen backlog, and
    # the largest body each webhook takes (GitHub caps payloads at 25 MB; Slack's are small).
    web_header_timeout: float = Field(default=10.0, gt=0)
    web_body_timeout: float = Field(default=30.0, gt=0)
    web_max_connections: int = Field(default=1024, gt=0)
    web_backlog: int = Field(default=512, gt=0)
    web_github_max_body: int = Field(default=25 * 2**20, gt=0)
    web_slack_max_body: int = Field(default=2**20, gt=0)
    # The server's event loop: uvloop (libuv, in C) takes about a tenth less CPU per webhook
    # delivery than asyncio's own loop (bench/github.py); "asyncio" is the fallback.
    web_event_loop: Literal["uvloop", "asyncio"] = "uvloop"

    # Process logs (workers/logsetup.py, docs/logging.md); ``--log-level``/``--log-format`` win.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    # Retention (workers/retention.py): finished jobs, their logs and artifacts older than
    # ``retention_days`` are pruned every ``gc_interval`` seconds, and the data directory is
    # kept under ``data_dir_max_mb`` by dropping the oldest artifacts, then cache entries.
    retention_days: float = Field(default=30.0, gt=0)
    data_dir_max_mb: int = Field(default=10240, gt=0)
    gc_interval: float = Field(default=3600.0, gt=0)
    # Job log caps (workers/logcap.py): bytes kept of each line (the rest is cut, with a
    # marker), and MiB kept of each job's log (the first quarter and the newest lines; the
    # middle is dropped, with a marker).  State changes are never dropped.
    log_line_max: int = Field(default=8192, ge=256)
    job_log_max_mb: int = Field(default=4, gt=0)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("redis_url")
    @classmethod
    def _one_redis_endpoint(cls, value: str | None) -> str | None:
        # The URL serves Celery's broker and the job store (redis-py's from_url), which takes
        # only these schemes: a sentinel:// URL would pass kombu and fail at the first store call.
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("wasmbot needs one Redis endpoint: a redis://, rediss:// or unix:// URL "
                             "(Sentinel: see docs/operations.md, \"Redis\")")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _config_file()
        if path.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)

    def oci(self) -> OciSettings:
        """The settings ``workers.oci`` reads (``connect``, credentials, the CLI's push and pull)."""
        return OciSettings(
            data_dir=self.data_dir, docker_config=self.docker_config, push_variant=self.push_variant,
            oci_tag_suffix=self.oci_tag_suffix, registry_timeout=self.registry_timeout,
            registry_retries=self.registry_retries, test_max_module_mb=self.test_max_module_mb,
            test_compile_seconds=self.test_compile_seconds,
            test_compile_memory_mb=self.test_compile_memory_mb,
            registries={host: HostSettings(
                plain_http=c.plain_http, ca_bundle=c.ca_bundle, username=c.username,
                password=c.password.get_secret_value() if c.password is not None else None,
                password_file=c.password_file, variant=c.variant) for host, c in self.registries.items()})

    def uses_plain_http(self, host: str) -> bool:
        return self.oci().uses_plain_http(host)

    def variant_for(self, host: str) -> Variant:
        return self.oci().variant_for(host)

    @property
    def broker_url(self) -> str:
        # workers/broker.py: kombu's SQLAlchemy transport, woken by SQLite's commit counter
        return self.redis_url or f"wasmbot-sqla+sqlite:///{self.data_dir / 'broker.sqlite'}"

    @property
    def chat_source_root(self) -> Path:
        return self.source_root or self.data_dir / "sources"

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir / "artifacts"

    def secret_values(self) -> list[str]:
        """Every credential configured: SecretStr fields, registry passwords and password files."""
        found = [v.get_secret_value() for v in self.__dict__.values() if isinstance(v, SecretStr)]
        for registry in self.registries.values():
            if registry.password is not None:
                found.append(registry.password.get_secret_value())
            if registry.password_file is not None:
                with contextlib.suppress(OSError):  # the push that needs it says so
                    found.append(registry.password_file.read_text())
        if self.log_link_key_file is not None:
            with contextlib.suppress(OSError):  # serve says so at its start
                found.append(self.log_link_key_file.read_text().strip())
        return found


def load_settings(**overrides: Any) -> Settings:
    """Load and validate settings, turning validation errors into one readable message."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        where = _config_file() if _config_file().is_file() else "environment"
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(settings)'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid configuration ({where}): {problems}") from None
    except ValueError as exc:  # e.g. TOML syntax errors
        raise ConfigError(f"invalid configuration file {_config_file()}: {exc}") from None
