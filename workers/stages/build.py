"""Build stage: turn a source tree (or a precompiled module) into ``filter.wasm``.

source → language (``--lang``, ``.wasmbot.yaml``, or detected) → recipe → cached module, or
a dependency fetch (network, cached by lock file) and a compile (no network, read-only
source) in the language's toolchain container → ``filter.wasm``, kept for the later stages in
shared storage (workers/artifacts.py: the registry's scratch repository, or the job store).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from workers import buildcache, lease, logcap, recipes, repoconfig, sandbox, sourcetree
from workers.commands import Command, lang_of, source_of
from workers.recipes import Recipe
from workers.stages import StageContext, StageError, checkout, keep, relative_paths

TOOLCHAIN_SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "toolchains" / "build-image.sh"
MAX_CASES = 4 * 2**20  # a test cases file is a page of YAML, not a data set
ERROR_LINE = re.compile(r"\berror\b|\bpanic\b|cannot find|undefined|not found", re.IGNORECASE)
# The compile's wrapper: once the recipe has finished, /out (a size-capped tmpfs) must hold only
# regular files, and filter.wasm goes to the container's stdout, of which the worker reads at
# most the quota.  The worker never opens a path the build made, so a link cannot reach it.
EMIT_MODULE = """exec 3>&1 1>&2
/bin/sh -c "$1" 3>&- || exit
odd=$(find /out -mindepth 1 ! -type f -print -quit)
[ -z "$odd" ] || { echo "wasmbot: $odd is not a regular file: /out may hold only regular files"; exit 70; }
[ -e /out/filter.wasm ] || { echo "wasmbot: the build produced no filter.wasm"; exit 70; }
exec cat /out/filter.wasm >&3
"""
WRAPPER_ERROR = 70


def source_dir(ctx: StageContext) -> Path:
    """The job's source directory, refusing anything outside the front end's source root; a
    GitHub job's checkout is first unpacked on this worker if it was fetched on another."""
    source = source_of(ctx.job.command)
    if source is None:
        raise StageError(f"a {ctx.job.command.name} job has no source to build")
    checkout.ensure(ctx)
    path = locate(ctx.job.source_root, source)
    try:
        sourcetree.check(path)
    except sourcetree.UnsafeSource as exc:
        raise StageError(str(exc)) from None
    return path


def locate(source_root: str, source: str) -> Path:
    """``source``, a directory below ``source_root``; the error names it as the user gave it,
    relative to the root.  Submission checks this too, so a missing source is never queued."""
    root = Path(source_root).resolve()
    path: Path = (root / source).resolve()
    if path != root and root not in path.parents:
        raise StageError(f"source {source!r} leaves the source root")
    if not path.is_dir():
        raise StageError(f"source {source!r} is not a directory under the source root")
    return path


def toolchain_image(ctx: StageContext, toolchain: str) -> str:
    """The toolchain image: configured, or built (once per recipe) from deploy/toolchains."""
    configured = ctx.settings.toolchain_images.get(toolchain)
    if configured:
        return configured
    proc = subprocess.run(["bash", str(TOOLCHAIN_SCRIPT), toolchain], capture_output=True, text=True,
                          env=sandbox.engine_env(), check=False, timeout=3600)
    if proc.returncode != 0:
        raise StageError(f"no {toolchain} toolchain image: set toolchain_images.{toolchain}, or "
                         f"build one with deploy/toolchains/build-image.sh:\n{proc.stderr[-1500:]}")
    return proc.stdout.strip().splitlines()[-1]


def filter_name(ctx: StageContext, source: Path, config: repoconfig.RepoConfig) -> str:
    """What the filter is called: as .wasmbot.yaml says, else its GitHub repository (whose
    checkout directory says nothing), else its source directory."""
    repository = ctx.job.reports.get("github", {}).get("repo", "")
    return repoconfig.filter_name(config, repository.rsplit("/", 1)[-1] or source.name)


def language(command: Command, source: Path, config: repoconfig.RepoConfig) -> str:
    """The language to build ``source`` as: the command's ``--lang``, ``.wasmbot.yaml``'s
    ``build.lang``, else detected from its files."""
    lang = lang_of(command) or config.build.lang
    if lang:
        return str(lang)
    try:
        return recipes.detect(source)
    except recipes.DetectError as exc:
        raise StageError(str(exc)) from None


def run(ctx: StageContext) -> dict[str, str]:
    source = source_dir(ctx)
    try:
        config = repoconfig.load(source)
        name = filter_name(ctx, source, config)
        roots = repoconfig.root_ids(source, config, name)
    except repoconfig.RepoConfigError as exc:
        raise StageError(str(exc)) from None
    # As routed (workers/routing.py): this worker was chosen for that language's toolchain.
    lang = ctx.job.artifacts.get("lang") or language(ctx.job.command, source, config)
    ctx.workdir.mkdir(parents=True, exist_ok=True)
    cached: dict[str, str] = {}
    if lang == recipes.PRECOMPILED:
        found = sorted(source.glob("*.wasm"))
        if len(found) != 1:
            raise StageError(f"a precompiled source holds exactly one *.wasm; found {len(found)}")
        quota = ctx.settings.build_output_mb * 2**20
        with found[0].open("rb") as f:
            data = f.read(quota + 1)
        if len(data) > quota:
            raise StageError(f"{found[0].name} is over {ctx.settings.build_output_mb} MiB")
        if not data.startswith(b"\0asm"):
            raise StageError(f"{found[0].name} is not a WebAssembly module (no \\0asm header)")
        module = data
        ctx.log(f"precompiled module {found[0].name}: nothing to build")
    else:
        module, hit = build(ctx, recipes.RECIPES[lang], source)
        cached["build_cache"] = "hit" if hit else "miss"
    digest = hashlib.sha256(module).hexdigest()
    ctx.log(f"filter.wasm: {len(module)} bytes, sha256:{digest}")
    return {"module": keep(ctx, "filter.wasm", module, large=True), "module_sha256": f"sha256:{digest}",
            "lang": lang, "module_size": str(len(module)), "name": name, "root_ids": ",".join(roots)
            } | cached | test_cases(ctx, source, config) | revision(source)


def test_cases(ctx: StageContext, source: Path, config: repoconfig.RepoConfig) -> dict[str, str]:
    """The source's test cases, kept with the module: the test stage may run where the source
    is not (a terminal's or chat's source is a directory on the host it was submitted to), and
    tests what was built, not the source as it is by then.  ``test_cases`` is "" without one."""
    cases = source / config.test.cases
    if cases.exists() and not cases.resolve().is_relative_to(source.resolve()):
        raise StageError(f"{cases.name} points outside the source tree")
    if not cases.is_file():
        return {"test_cases": "", "test_cases_name": cases.name}
    if cases.stat().st_size > MAX_CASES:
        raise StageError(f"{cases.name} is over {MAX_CASES // 2**20} MiB")
    return {"test_cases": keep(ctx, "test-cases.yaml", cases.read_bytes()), "test_cases_name": cases.name}


def revision(source: Path) -> dict[str, str]:
    """Where the source came from, as git says (its remote, without credentials; its commit
    and that commit's time), for the image's provenance annotations; nothing outside git."""
    url = _git(source, "remote", "get-url", "origin") or ""
    commit = _git(source, "rev-parse", "HEAD") or ""
    committed = _git(source, "log", "-1", "--format=%ct", commit) if commit else None
    found = {"source_url": _without_userinfo(url), "revision": commit,
             "committed": committed if committed and committed.isdigit() else ""}
    return {key: value for key, value in found.items() if value}


def _without_userinfo(url: str) -> str:
    """``https://user:token@host/x`` must not end up in a public annotation."""
    return re.sub(r"^([a-z][a-z0-9+.-]*://)[^/@]*@", r"\1", url)


def _git(folder: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def build(ctx: StageContext, recipe: Recipe, source: Path) -> tuple[bytes, bool]:
    """The module, and whether it came from the build cache."""
    s = ctx.settings
    image = toolchain_image(ctx, recipe.toolchain)
    image_id = sandbox.image_id(image, s.container_engine)
    ctx.log(f"{recipe.lang}: {recipe.summary}; toolchain {image}")
    cache_root = s.data_dir / "cache"
    builds = buildcache.Cache(cache_root / "builds", s.build_cache_mb * 2**20)
    build_key = buildcache.key("build", recipe.fetch or "", recipe.compile, json.dumps(recipe.env),
                               image_id, buildcache.source_digest(source))
    hit = builds.get(build_key)
    if hit is not None:
        ctx.log(f"build cache hit {build_key[:12]}: unchanged source, recipe and toolchain; "
                "no container started")
        return (hit / "filter.wasm").read_bytes(), True
    deps = fetch(ctx, recipe, source, image, image_id) if recipe.fetch else None
    mounts = [sandbox.Mount(source, "/src")]
    if deps is not None:
        mounts.append(sandbox.Mount(deps, "/deps"))
    ctx.log("compiling (no network, read-only source)")
    # Named by its owner, so that a worker starting after this one was killed removes it.
    fd, name = tempfile.mkstemp(prefix=f"wasmbot-out-{lease.path_tag()}.", suffix=".wasm", dir=ctx.workdir)
    os.close(fd)
    built = Path(name)
    try:
        step(ctx, recipe, image, "build", recipe.compile, mounts, network=False, timeout=s.build_timeout,
             capture=sandbox.Capture(built, s.build_output_mb * 2**20),
             tmpfs={"/out": f"{s.build_output_mb}m"})
        if built.stat().st_size <= builds.max_bytes:  # an entry larger than the whole cache is not kept
            with builds.filling(build_key) as entry:
                shutil.copyfile(built, entry / "filter.wasm")
        return built.read_bytes(), False
    finally:
        built.unlink(missing_ok=True)


def fetch(ctx: StageContext, recipe: Recipe, source: Path, image: str, image_id: str) -> Path:
    """The dependency cache directory for this lock file, fetched (with network) if new."""
    assert recipe.lockfile
    lock = source / recipe.lockfile
    if not lock.is_file():
        raise StageError(f"{recipe.lockfile} is missing: builds use locked dependencies, so "
                         f"commit {recipe.lockfile} with the source")
    s = ctx.settings
    deps = buildcache.Cache(s.data_dir / "cache" / "deps", s.deps_cache_mb * 2**20)
    deps_key = buildcache.key("deps", recipe.lang, recipe.fetch or "", image_id, lock.read_text())
    hit = deps.get(deps_key)
    if hit is not None:
        ctx.log(f"dependencies from cache {deps_key[:12]} ({recipe.lockfile} unchanged)")
        return hit
    ctx.log(f"fetching dependencies for {recipe.lockfile} (network allowed, writes only /deps)")
    with deps.filling(deps_key) as scratch:
        mounts = [sandbox.Mount(source, "/src"), sandbox.Mount(scratch, "/deps", writable=True)]
        if s.build_ca_bundle and s.build_ca_bundle.is_file():
            mounts.append(sandbox.Mount(s.build_ca_bundle, "/etc/ssl/certs/ca-certificates.crt"))
        step(ctx, recipe, image, "fetch", recipe.fetch or "", mounts, network=True,
             timeout=s.fetch_timeout)
    fetched = deps.get(deps_key)
    if fetched is None:
        raise StageError("the dependency cache entry vanished right after it was filled")
    return fetched


def step(ctx: StageContext, recipe: Recipe, image: str, phase: str, script: str,
         mounts: list[sandbox.Mount], *, network: bool, timeout: float,
         capture: sandbox.Capture | None = None, tmpfs: dict[str, str] | None = None) -> None:
    """Run one phase; with ``capture``, through EMIT_MODULE, which writes the module there."""
    s = ctx.settings
    limits = sandbox.Limits(timeout=timeout, memory=s.build_memory, cpus=s.build_cpus, pids=s.build_pids)
    excerpt = logcap.Excerpt(lambda line: bool(ERROR_LINE.search(line)))  # not the whole output
    relative = relative_paths((directory, "") for directory in recipes.CONTAINER_SOURCES)

    def on_line(line: str) -> None:
        line = relative(line)  # "/src/lib.rs:3" is "lib.rs:3" in the engineer's tree
        excerpt.add(line)
        ctx.log(line)

    ctx.log(f"$ {script}")
    argv = ["/bin/sh", "-c", EMIT_MODULE, "wasmbot-build", script] if capture else ["/bin/sh", "-c", script]
    try:
        code = sandbox.run(f"wasmbot-{ctx.job.id}-{phase}", image, argv, mounts=mounts, limits=limits,
                           on_line=on_line, network=network, env=recipe.env, engine=s.container_engine,
                           tmpfs=tmpfs, capture=capture, line_max=s.log_line_max)
    except sandbox.SandboxTimeout as exc:
        raise StageError(f"{phase} {exc}; the container was stopped and removed") from None
    except (sandbox.SandboxError, sandbox.OutputTooLarge) as exc:
        raise StageError(str(exc)) from None
    last = excerpt.last[-1] if excerpt.last else ""
    if capture and code == WRAPPER_ERROR and last.startswith("wasmbot: "):
        raise StageError(last.removeprefix("wasmbot: "))
    if code != 0:
        what = "compiler" if phase == "build" else "dependency fetch"
        raise StageError(f"{what} exited with status {code}:\n" + "\n".join(
            f"  {line}" for line in excerpt.lines()))
