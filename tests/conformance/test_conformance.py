"""The SDKs' own examples, which no one here wrote, under ``wasmbot abi-test`` (issue 21).

Every example folder has a ``wasm-tests.yaml`` written from the example's documented
behaviour.  An example the harness cannot run yet is in ``CANNOT_RUN`` with the reason and a
pattern its failure must match: it must fail, and fail that way, so that a fix (or a new,
different failure) shows up here instead of hiding behind a skip.  Examples not built at all
are in ``NOT_BUILT``.  docs/abi-testing.md lists every one of them.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from build_examples import CACHE, SDKS, build, examples  # noqa: E402

DOCS = HERE.parent.parent / "docs" / "abi-testing.md"
ALL = [f"{sdk}/{name}" for sdk in SDKS for name in examples(sdk)]

# example -> (why the harness cannot run it yet, a regex the JSON report's failures must match)
CANNOT_RUN: dict[str, tuple[str, str]] = {
    "go/shared_queue/sender": ("needs the receiver module in a second VM (vm_id `receiver`); "
                               "the harness runs one module in one VM", r"error queueing"),
    "go/network": ("a TCP filter: the harness drives HTTP streams only",
                   r"invalid context on proxy_on_request_headers"),
}

# upstream examples that are not built, and why
NOT_BUILT: dict[str, str] = {
    "rust/envoy_tcp_routing": "a TCP (network) filter, and its build needs protoc; the harness "
                              "drives HTTP streams only",
}

Cli = Callable[..., CompletedProcess[str]]


@pytest.fixture(scope="session")
def modules() -> dict[str, Path]:
    """Every example module, built once per source hash (tests/conformance/build_examples.py)."""
    return {f"{sdk}/{name}": path for sdk in SDKS for name, path in build(sdk).items()}


def failures(report: dict[str, Any]) -> list[str]:
    found = [f"{p['name']}: {p['message']}" for p in report["problems"]]
    for case in report["cases"]:
        found += [f"{case['name']}: {d['field']}: expected {d['expected']}, got {d['got']}"
                  for d in case["differences"]]
    return found


@pytest.mark.parametrize("example", ALL)
def test_example_under_abi_test(example: str, modules: dict[str, Path], wasmbot_cli: Cli) -> None:
    proc = wasmbot_cli("abi-test", str(modules[example]), "--cases", str(HERE / example / "wasm-tests.yaml"),
                       "--format", "json", env={"WASMBOT_DATA_DIR": str(CACHE / "data")})
    assert proc.returncode in (0, 1, 2), proc.stderr
    # exit 2: the cases file does not validate (a feature the harness lacks yet)
    found = failures(json.loads(proc.stdout)) if proc.returncode != 2 else [proc.stderr.strip()]
    if example not in CANNOT_RUN:
        assert proc.returncode == 0 and not found, "\n".join(found) or proc.stdout
        return
    reason, pattern = CANNOT_RUN[example]
    assert found, f"{example} now passes: take it off CANNOT_RUN ({reason}) and docs/abi-testing.md"
    assert any(re.search(pattern, f) for f in found), (
        f"{example} fails differently from what CANNOT_RUN expects ({reason}; /{pattern}/):\n" + "\n".join(found))


def test_every_example_is_accounted_for() -> None:
    assert ALL, "no examples found under tests/conformance"
    assert not set(NOT_BUILT) & set(ALL)
    assert set(CANNOT_RUN) <= set(ALL), set(CANNOT_RUN) - set(ALL)
    for example in ALL:
        assert (HERE / example / "wasm-tests.yaml").is_file(), f"{example} has no wasm-tests.yaml"
    docs = DOCS.read_text()
    for example in [*ALL, *NOT_BUILT]:
        assert f"`{example}`" in docs, f"docs/abi-testing.md does not list {example}"


def test_a_second_build_builds_nothing(modules: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import build_examples

    def refuse(out: Path) -> None:
        raise AssertionError("rebuilt although the sources did not change")
    monkeypatch.setattr(build_examples, "BUILDERS", dict.fromkeys(SDKS, refuse))
    again = {f"{sdk}/{name}": path for sdk in SDKS for name, path in build(sdk).items()}
    assert again == modules and all(p.is_file() for p in again.values())
