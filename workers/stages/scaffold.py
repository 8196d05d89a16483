"""Scaffold stage: render the language's template into a new filter directory.

The destination is ``NAME`` below the front end's source root (a GitHub repository when the
GitHub front end creates one; see workers.scaffold.Destination).  An existing destination is
never overwritten, except that a re-delivered stage finding exactly the files it renders
knows they are its own and carries on.
"""

from __future__ import annotations

from pathlib import Path

from workers import platforms, scaffold
from workers.commands import InitCommand
from workers.stages import StageContext, StageError


def _already_ours(path: Path, files: dict[str, bytes]) -> bool:
    try:
        return all((path / rel).read_bytes() == content for rel, content in files.items())
    except OSError:
        return False


def refuse_existing(source_root: str, name: str) -> None:
    """An existing destination is refused, named as the user gave it; submission checks this
    too, so such a job is never queued."""
    if scaffold.LocalDirectory(Path(source_root) / name).exists():
        raise StageError(f"{name} already exists; wasmbot never overwrites a destination: choose "
                         "another NAME")


def run(ctx: StageContext) -> dict[str, str]:
    cmd = ctx.job.command
    if not isinstance(cmd, InitCommand):
        raise StageError(f"a {cmd.name} job has nothing to scaffold")
    name, lang = cmd.filter, cmd.lang
    try:
        release, sdk = platforms.choose(lang, cmd.platform, cmd.platform_version)
        files = scaffold.render(name, lang, release.platform, release.version)
    except (platforms.PlatformError, scaffold.ScaffoldError) as exc:
        raise StageError(str(exc)) from None
    destination = scaffold.LocalDirectory(Path(ctx.job.source_root) / name)
    if destination.exists() and _already_ours(destination.path, files):
        ctx.log(f"{destination.describe()} already holds this scaffold (an earlier attempt)")
    else:
        refuse_existing(ctx.job.source_root, name)
        try:
            destination.create(files)
        except scaffold.ScaffoldError as exc:
            raise StageError(str(exc)) from None
    ctx.log(f"{lang} filter {name} for {release.platform} {release.version} (Envoy "
            f"{release.envoy[0]}.{release.envoy[1]}, ABI {sdk.abi_version}) with {sdk.package} "
            f"{sdk.version}")
    for rel in sorted(files):
        ctx.log(f"  {rel}")
    ctx.log(f"next: edit {name}/, then /wasm build {name} --tag REGISTRY/{name}:v1 to test and push it")
    return {"path": destination.describe(), "files": str(len(files)), "sdk": f"{sdk.package}@{sdk.version}",
            "platform": f"{release.platform}:{release.version}", "abi_version": sdk.abi_version}
