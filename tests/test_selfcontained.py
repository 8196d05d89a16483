"""The project stands alone: a clone with no sibling folders must pass its own tests."""

from __future__ import annotations

import subprocess

from conftest import ROOT

# Built from parts so that this file does not name the paths it looks for.
SIBLING = ".." + "/shared"
FORBIDDEN = (SIBLING, "shared" + "/testdata", "shared" + "/reference")


def tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [name for name in out.decode().split("\0") if name]


def test_nothing_names_a_sibling_folder() -> None:
    files = tracked_files()
    assert "tests/conftest.py" in files  # the listing works, so an empty result means something
    offenders = []
    for name in files:
        path = ROOT / name
        if not path.is_file():
            continue
        text = path.read_bytes().decode("utf-8", errors="replace")
        offenders += [f"{name}: {needle}" for needle in FORBIDDEN if needle in text]
    assert offenders == []


def test_vendored_test_data_says_where_it_came_from() -> None:
    readme = (ROOT / "tests" / "testdata" / "README.md").read_text()
    for folder in ("github", "slack", "k8s", "oci"):
        assert (ROOT / "tests" / "testdata" / folder).is_dir()
        assert f"`{folder}/`" in readme
    for licence in ("MIT", "Apache-2.0"):
        assert licence in readme
    assert (ROOT / "LICENSE").read_text().startswith("\n                                 Apache License")
