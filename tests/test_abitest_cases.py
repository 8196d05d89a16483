"""wasm-tests.yaml: the schema, errors that point at the case and field, and the reports."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest
import wasmtime
from test_abitest import BASE

from workers import abitest
from workers.abitest import cases
from workers.abitest.report import render_markdown, render_slack, render_text, to_junit

ROOT = Path(__file__).resolve().parents[1]


def test_schema_is_valid_and_every_shipped_cases_file_follows_it() -> None:
    jsonschema.Draft202012Validator.check_schema(cases.schema())
    files = sorted([*(ROOT / "tests" / "filters").glob("*/wasm-tests.yaml"),
                    *(ROOT / "examples").glob("*/wasm-tests.yaml")])
    assert len(files) == 7
    for path in files:
        suite = cases.load(path, "x")
        assert suite.cases, path


def problems(data: object) -> list[str]:
    with pytest.raises(cases.CasesError) as info:
        cases.parse(data, "root", source="wasm-tests.yaml")
    return str(info.value).splitlines()[1:]


def test_errors_name_the_case_and_the_field() -> None:
    lines = problems({"cases": [
        {"name": "ok"},
        {"name": "denies", "expect": {"local_response": {"code": "403"}}},
        {"name": "typo", "requets": {}},
    ]})
    assert len(lines) == 2
    assert lines[0].startswith("- case 2 'denies' → expect.local_response: ")
    assert lines[1] == (
        "- case 3 'typo': Additional properties are not allowed ('requets' was unexpected); allowed here: "
        "expect, grpc_calls, http_calls, name, plugin_config, properties, request, response, root_id, start_after_ticks, "
        "streams, "
        "ticks")


def test_local_response_error_mentions_both_allowed_forms() -> None:
    [line] = problems({"cases": [{"name": "denies", "expect": {"local_response": {"code": "403"}}}]})
    assert line.startswith("- case 1 'denies' → expect.local_response: ")
    assert "'403' is not of type 'integer'" in line and "is not of type 'null'" in line


def test_missing_and_wrong_top_level_fields() -> None:
    assert problems({}) == ["- (top level): 'cases' is a required property"]
    assert problems({"cases": []}) == ["- cases: [] should be non-empty"]
    assert problems({"cases": [{"request": {}}]}) == ["- case 1: 'name' is a required property"]
    with pytest.raises(cases.CasesError, match="top level must be a mapping"):
        cases.parse(["a"], "root")


def test_nested_list_positions_are_shown() -> None:
    assert problems({"cases": [{"name": "x", "expect": {"logs": [{"matches": "a"}, {"level": "loud"}]}}]}) == [
        "- case 1 'x' → expect.logs[1]: 'matches' is a required property",
        "- case 1 'x' → expect.logs[1].level: 'loud' is not one of ['trace', 'debug', 'info', 'warn', "
        "'error', 'critical']"]


def test_bad_regular_expressions_and_duplicate_names() -> None:
    assert problems({"cases": [{"name": "a", "expect": {"logs": [{"matches": "("}], "trap": "[x"}},
                               {"name": "a"}]}) == [
        "- case 1 'a' → expect.logs[0].matches: not a valid regular expression (missing ), unterminated "
        "subpattern at position 0)",
        "- case 1 'a' → expect.trap: not a valid regular expression (unterminated character set at position 0)",
        "- case name 'a' is used more than once"]


def test_yaml_syntax_errors_give_the_line(tmp_path: Path) -> None:
    path = tmp_path / "wasm-tests.yaml"
    path.write_text("cases:\n  - name: a\n    request: {headers: [\n")
    with pytest.raises(cases.CasesError, match=r"wasm-tests.yaml is not valid YAML at line 4, column 1"):
        cases.load(path, "root")
    with pytest.raises(cases.CasesError, match="cannot read"):
        cases.load(tmp_path / "missing.yaml", "root")


def test_defaults_and_configuration_encoding() -> None:
    suite = cases.parse({"plugin_config": {"header": "x"}, "vm_config": "raw", "cases": [
        {"name": "a", "request": {"headers": [["x-dup", "1"], ["x-dup", 2]], "body": ["a", "b"]}},
        {"name": "b", "plugin_config": None, "root_id": "other"}]}, "dir-name")
    a, b = suite.cases
    assert suite.root_id == "dir-name" and suite.root_ids == ["dir-name", "other"]
    assert suite.vm_config == b"raw" and a.plugin_config == b'{"header":"x"}' and b.plugin_config == b""
    assert a.request.headers[:4] == [(b":method", b"GET"), (b":path", b"/"), (b":authority", b"example.com"),
                                     (b":scheme", b"http")]
    assert a.request.headers[4:] == [(b"x-dup", b"1"), (b"x-dup", b"2")]
    assert a.request.body == [b"a", b"b"] and a.response.headers == [(b":status", b"200")]
    overridden = suite.with_plugin_config(b"cli").with_root_id("cli-root")
    assert [c.plugin_config for c in overridden.cases] == [b"cli", b""]
    assert [c.root_id for c in overridden.cases] == ["cli-root", "other"]


# -- reports ---------------------------------------------------------------------------------

def _report() -> abitest.Report:
    wasm = wasmtime.wat2wasm(BASE)
    suite = cases.parse({"cases": [
        {"name": "passes", "expect": {"logs": [{"matches": "request seen"}]}},
        {"name": "fails <&>", "expect": {"response": {"headers": {"equal": {"x-a": "b"}}}}}]}, "root")
    return abitest.run(wasm, suite, name="t.wasm")


def test_junit_xml_is_well_formed_and_counts_failures() -> None:
    report = _report()
    root = ET.fromstring(to_junit(report))
    assert root.tag == "testsuite" and root.get("tests") == "3" and root.get("failures") == "1"
    names = [tc.get("name") for tc in root.iter("testcase")]
    assert names == ["module loads in Envoy", "passes", "fails <&>"]
    failure = root.findall("testcase")[2].find("failure")
    assert failure is not None and failure.get("message") == "response.headers['x-a']: expected 'b', got no such header"


def test_text_markdown_slack_and_json_renderings() -> None:
    report = _report()
    text = render_text(report)
    assert text.splitlines()[0] == "t.wasm: ABI 0.2.0, 1/2 cases passed — FAILED"
    assert "        expected: 'b'\n        got:      no such header" in text
    md = render_markdown(report)
    assert md.startswith("### ❌ ABI test:") and "| fails <&> | ❌ fail | response.headers['x-a']: expected 'b'" in md
    assert "<details><summary>log of <b>fails <&></b></summary>" in md
    slack = render_slack(report)
    assert slack.startswith(":x: *t.wasm: ABI 0.2.0, 1/2 cases passed") and "• :x: *fails <&>*" in slack
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ok"] is False and [c["passed"] for c in data["cases"]] == [True, False]
    restored = abitest.Report.from_dict(data)
    assert restored == report and render_markdown(restored) == md


# -- the command line ---------------------------------------------------------------------------

def wasmbot(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env={"WASMBOT_DATA_DIR": str(cwd / "data"), "PATH": "/usr/bin:/bin"})


def test_cli_exit_codes_junit_and_formats(tmp_path: Path) -> None:
    module = tmp_path / "filter.wasm"
    module.write_bytes(wasmtime.wat2wasm(BASE))
    ok = wasmbot("abi-test", str(module), cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("filter.wasm: ABI 0.2.0, 1/1 cases passed — passed")
    (tmp_path / "wasm-tests.yaml").write_text(
        "cases:\n  - name: needs a header\n    expect: {response: {headers: {present: [x-nope]}}}\n")
    failed = wasmbot("abi-test", str(module), "--junit", str(tmp_path / "out.xml"), "--format", "json", cwd=tmp_path)
    assert failed.returncode == 1, failed.stderr
    assert json.loads(failed.stdout)["cases"][0]["differences"][0]["field"] == "response.headers['x-nope']"
    assert ET.parse(tmp_path / "out.xml").getroot().get("failures") == "1"
    (tmp_path / "wasm-tests.yaml").write_text("cases:\n  - nme: typo\n")
    bad = wasmbot("abi-test", str(module), cwd=tmp_path)
    assert bad.returncode == 2 and "case 1: 'name' is a required property" in bad.stderr
    missing = wasmbot("abi-test", str(tmp_path / "nope.wasm"), cwd=tmp_path)
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    broken = tmp_path / "a" / "b" / "broken.wasm"  # no cases file beside it or one level up
    broken.parent.mkdir(parents=True)
    broken.write_bytes(wasmtime.wat2wasm(BASE.replace('(func (export "proxy_abi_version_0_2_0"))', "")))
    refused = wasmbot("abi-test", str(broken), "--cases", str(tmp_path / "none.yaml"), cwd=tmp_path)
    assert refused.returncode == 2  # the cases file named on the command line must exist
    refused = wasmbot("abi-test", str(broken), "--root-id", "r", "--config", '{"a":1}', cwd=tmp_path)
    assert refused.returncode == 1 and "would not load in Envoy" in refused.stdout
