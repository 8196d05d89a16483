"""Build stage: compile a C source directory into ``filter.wasm`` in the sandbox."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from workers import sandbox
from workers.stages import StageContext, StageError

TOOLCHAIN_SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "toolchains" / "build-image.sh"
C_FLAGS = ("--target=wasm32-wasi", "-O2", "-mexec-model=reactor", "-I/src")


def source_dir(ctx: StageContext) -> Path:
    """The job's source directory, refusing anything outside the front end's source root."""
    root = Path(ctx.job.source_root).resolve()
    path: Path = (root / str(ctx.job.command["source"])).resolve()
    if path != root and root not in path.parents:
        raise StageError(f"source {ctx.job.command['source']!r} leaves the source root")
    if not path.is_dir():
        raise StageError(f"source {ctx.job.command['source']!r} is not a directory under {root}")
    return path


def toolchain_image(ctx: StageContext, lang: str) -> str:
    """The toolchain image for ``lang``: configured, or built (once) from its recipe."""
    if ctx.settings.toolchain_image_c:
        return ctx.settings.toolchain_image_c
    proc = subprocess.run(["bash", str(TOOLCHAIN_SCRIPT), lang], capture_output=True, text=True,
                          env=sandbox.podman_env(), check=False, timeout=1800)
    if proc.returncode != 0:
        raise StageError(f"could not make the {lang} toolchain image:\n{proc.stderr[-2000:]}")
    return proc.stdout.strip().splitlines()[-1]


def root_ids(source: Path) -> list[str]:
    """Root ids from the source's ``runtime-config.json`` (either spelling), else its name."""
    config = source / "runtime-config.json"
    if config.is_file():
        try:
            data = json.loads(config.read_text())
            inner = data.get("config", {})
            ids = inner.get("rootIds", inner.get("root_ids"))
            if isinstance(ids, list) and all(isinstance(i, str) for i in ids) and ids:
                return ids
        except (ValueError, AttributeError) as exc:
            raise StageError(f"runtime-config.json is not valid: {exc}") from None
        raise StageError("runtime-config.json has no config.rootIds list of strings")
    return [source.name]


def run(ctx: StageContext) -> dict[str, str]:
    source = source_dir(ctx)
    lang = ctx.job.command.get("lang") or "c"
    sources = sorted(p.name for p in source.glob("*.c"))
    if not sources:
        raise StageError(f"no C sources (*.c) in {ctx.job.command['source']}")
    image = toolchain_image(ctx, lang)
    ctx.log(f"toolchain {image}")
    s = ctx.settings
    limits = sandbox.Limits(timeout=s.build_timeout, memory=s.build_memory, cpus=s.build_cpus,
                            pids=s.build_pids)
    argv = ["clang", *C_FLAGS, "-o", "/out/filter.wasm", *sources]
    ctx.log("$ " + " ".join(argv))
    with tempfile.TemporaryDirectory(prefix="wasmbot-out-") as out:
        try:
            code = sandbox.run(f"wasmbot-{ctx.job.id}-build", image, argv, source=source,
                               output=Path(out), limits=limits, on_line=ctx.log)
        except sandbox.SandboxTimeout as exc:
            raise StageError(f"build {exc}; the container was stopped and removed") from None
        except sandbox.SandboxError as exc:
            raise StageError(str(exc)) from None
        built = Path(out) / "filter.wasm"
        if code != 0:
            raise StageError(f"compiler exited with status {code}; see the log above")
        if not built.is_file():
            raise StageError("the build produced no filter.wasm")
        ctx.workdir.mkdir(parents=True, exist_ok=True)
        module = ctx.workdir / "filter.wasm"
        shutil.copyfile(built, module)
    digest = hashlib.sha256(module.read_bytes()).hexdigest()
    ctx.log(f"filter.wasm: {module.stat().st_size} bytes, sha256:{digest}")
    return {
        "module": str(module),
        "module_sha256": f"sha256:{digest}",
        "root_ids": ",".join(root_ids(source)),
    }
