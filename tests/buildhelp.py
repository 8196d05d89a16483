"""Run the build stage in this process against real toolchain containers, for build tests."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workers import artifacts
from workers.config import Settings
from workers.jobs import Job, Stage
from workers.stages import StageContext, StageError, build
from workers.store import open_store


@dataclass
class BuildRun:
    result: dict[str, str] | None
    error: str | None
    log: list[str] = field(default_factory=list)
    module: bytes = b""  # what the build kept for the later stages

    @property
    def text(self) -> str:
        return "\n".join(self.log)


def run_build(source: Path, data_dir: Path, lang: str | None = None, **settings: Any) -> BuildRun:
    job = Job(requester="test", origin="test", command={"name": "build", "source": source.name, "lang": lang},
              text="", source_root=str(source.parent), stages=[Stage(name="build")])
    log: list[str] = []
    ctx = StageContext(job=job, settings=Settings(data_dir=data_dir, **settings),
                       workdir=Path(tempfile.mkdtemp(prefix="wasmbot-build-test-")), log=log.append)
    try:
        result = build.run(ctx)
        return BuildRun(result, None, log, artifacts.get(ctx.settings, open_store(ctx.settings), result["module"]))
    except StageError as exc:
        return BuildRun(None, str(exc), log)
