"""The build keeps the cases where .wasmbot.yaml says, and only from inside the source tree;
the test stage runs what the build kept."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from workers import artifacts, repoconfig
from workers.config import Settings
from workers.jobs import Job, Stage, State
from workers.stages import StageContext, StageError
from workers.stages import build as build_stage
from workers.stages import test as test_stage
from workers.store import open_store

FILTERS = Path(__file__).resolve().parent / "filters"


def context(source: Path, module: Path, log: list[str]) -> StageContext:
    build = Stage(name="build", state=State.SUCCEEDED, result={"root_ids": "add-header"})
    job = Job(requester="t", origin="t", text="", source_root=str(source.parent),
              command={"name": "test", "source": source.name}, stages=[build, Stage(name="test")])
    settings = Settings(data_dir=source.parent / "data")
    build.result["module"] = artifacts.put(settings, open_store(settings), job.id, "filter.wasm", module.read_bytes())
    return StageContext(job=job, settings=settings, workdir=source.parent / "work", log=log.append)


def run_with_kept_cases(ctx: StageContext) -> dict[str, str]:
    """The test stage's result, after the build's part: it keeps the source's cases."""
    source = build_stage.source_dir(ctx)
    ctx.job.stage("build").result |= build_stage.test_cases(ctx, source, repoconfig.load(source))
    return test_stage.run(ctx)


def test_cases_path_from_wasmbot_yaml(tmp_path: Path, filter_module) -> None:
    source = tmp_path / "src"
    (source / "qa").mkdir(parents=True)
    shutil.copy(FILTERS / "c" / "wasm-tests.yaml", source / "qa" / "cases.yaml")
    (source / ".wasmbot.yaml").write_text("test: {cases: qa/cases.yaml}\n")
    (tmp_path / "work").mkdir()
    log: list[str] = []
    result = run_with_kept_cases(context(source, filter_module("c"), log))
    assert result["cases"] == "3/3" and "  cases from cases.yaml" in log


def test_cases_outside_the_source_are_refused(tmp_path: Path, filter_module) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (tmp_path / "secret.yaml").write_text("cases: [{name: x}]\n")
    (source / "wasm-tests.yaml").symlink_to(tmp_path / "secret.yaml")
    (tmp_path / "work").mkdir()
    # workers/sourcetree.py refuses the link before the test stage reads anything.
    with pytest.raises(StageError, match=r"wasm-tests\.yaml is a symbolic link to an absolute path"):
        run_with_kept_cases(context(source, filter_module("c"), []))
    (source / "wasm-tests.yaml").unlink()
    (source / "wasm-tests.yaml").symlink_to(Path("..") / "secret.yaml")
    with pytest.raises(StageError, match=r"wasm-tests\.yaml is a symbolic link that leaves the source"):
        run_with_kept_cases(context(source, filter_module("c"), []))
    (source / "wasm-tests.yaml").unlink()
    (source / ".wasmbot.yaml").write_text("test: {cases: ../secret.yaml}\n")
    with pytest.raises(repoconfig.RepoConfigError, match=r"test\.cases: String should match pattern"):
        run_with_kept_cases(context(source, filter_module("c"), []))
