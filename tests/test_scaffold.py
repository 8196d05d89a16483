"""Templates render for every language and platform the table allows, and never overwrite."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from workers import platforms, repoconfig
from workers.abitest import cases
from workers.jobs import Job, Stage
from workers.scaffold import LANGUAGES, LocalDirectory, ScaffoldError, render
from workers.stages import StageContext, StageError
from workers.stages import scaffold as scaffold_stage

COMBINATIONS = [(lang, r.platform, r.version) for lang in LANGUAGES
                for rs in platforms.PLATFORMS.values() for r in rs
                if r.envoy >= platforms.SDKS[lang].min_envoy]


def test_the_table_allows_every_language_somewhere_and_refuses_with_alternatives() -> None:
    assert {lang for lang, _, _ in COMBINATIONS} == set(LANGUAGES)
    with pytest.raises(platforms.PlatformError, match=re.escape("It works on istio 1.25, 1.26, 1.27, 1.28")):
        platforms.choose("go", "istio", "1.24")


@pytest.mark.parametrize(("lang", "platform", "version"), COMBINATIONS)
def test_every_allowed_combination_renders_completely(lang: str, platform: str, version: str,
                                                      tmp_path: Path) -> None:
    files = render("edge-filter", lang, platform, version)
    for rel, content in files.items():
        assert b"@@" not in content, rel
    text = {rel: content.decode() for rel, content in files.items()}
    config = json.loads(text["runtime-config.json"])
    assert config == {"type": "envoy_proxy", "abiVersions": [platforms.SDKS[lang].abi_version],
                      "config": {"rootIds": ["edge-filter"]}}
    workflow = yaml.safe_load(text[".github/workflows/wasmbot.yml"])
    assert workflow["jobs"]["build"]["steps"][1]["name"] == "Build filter.wasm"
    LocalDirectory(tmp_path / "edge-filter").create(files)
    repo = repoconfig.load(tmp_path / "edge-filter")
    assert (repo.name, repo.root_id, repo.build.lang, repo.deploy.platform) == (
        "edge-filter", "edge-filter", lang, f"{platform}:{version}")
    suite = cases.load(tmp_path / "edge-filter" / "wasm-tests.yaml", "x")
    assert suite.root_id == "edge-filter" and len(suite.cases) == 2
    if lang == "rust":
        cargo = tomllib.loads(text["Cargo.toml"])
        assert cargo["package"]["name"] == "edge-filter"
        assert cargo["dependencies"]["proxy-wasm"] == f"={platforms.SDKS['rust'].version}"
        assert 'name = "edge-filter"' in text["Cargo.lock"]
    if lang == "assemblyscript":
        package, lock = json.loads(text["package.json"]), json.loads(text["package-lock.json"])
        assert package["devDependencies"] == lock["packages"][""]["devDependencies"] == {
            "@solo-io/proxy-runtime": "0.1.8", "assemblyscript": "0.14.13"}
        assert '"edge-filter");' in text["assembly/index.ts"]
    if lang == "go":
        assert text["go.mod"].startswith("module edge-filter\n\ngo 1.24\n")
        assert platforms.SDKS["go"].version in text["go.sum"]


@pytest.mark.parametrize("name", ["Upper", "under_score", "-lead", "trail-", "1digit", "a" * 64, "", "a.b"])
def test_names_must_be_dns_labels(name: str) -> None:
    with pytest.raises(ScaffoldError, match="use a DNS label"):
        render(name, "rust", "istio")


def test_existing_destinations_are_never_overwritten(tmp_path: Path) -> None:
    files = render("taken", "go", "istio")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("precious")
    with pytest.raises(ScaffoldError, match="already exists; wasmbot never overwrites a destination"):
        LocalDirectory(tmp_path / "taken").create(files)
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["mine.txt"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ScaffoldError):
        LocalDirectory(tmp_path / "empty").create(files)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ScaffoldError):
        LocalDirectory(tmp_path / "file").create(files)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no scratch left behind


def _ctx(tmp_path: Path, log: list[str]) -> StageContext:
    from workers.config import Settings
    job = Job(requester="t", origin="t", text="", source_root=str(tmp_path), stages=[Stage(name="scaffold")],
              command={"name": "init", "filter": "again", "lang": "rust", "platform": "istio",
                       "platform_version": "1.26", "source": "again"})
    return StageContext(job=job, settings=Settings(data_dir=tmp_path / "data"), workdir=tmp_path / "w",
                        log=log.append)


def test_scaffold_stage_is_idempotent_for_its_own_files_only(tmp_path: Path) -> None:
    log: list[str] = []
    result = scaffold_stage.run(_ctx(tmp_path, log))
    assert result["path"] == str(tmp_path / "again") and result["platform"] == "istio:1.26"
    assert "rust filter again for istio 1.26 (Envoy 1.34, ABI 0.2.1) with proxy-wasm 0.2.5" in log
    assert scaffold_stage.run(_ctx(tmp_path, log))["files"] == result["files"]  # a redelivery
    assert any("already holds this scaffold" in line for line in log)
    (tmp_path / "again" / "src" / "lib.rs").write_text("// edited by a person")
    with pytest.raises(StageError, match="already exists"):
        scaffold_stage.run(_ctx(tmp_path, log))
    assert (tmp_path / "again" / "src" / "lib.rs").read_text() == "// edited by a person"
