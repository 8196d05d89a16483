"""The harness's verdict and its renderings: terminal, GitHub (Markdown), Slack, JUnit, JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from workers.abitest.expect import Difference
from workers.abitest.validate import Problem


@dataclass
class CaseResult:
    name: str
    differences: list[Difference] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.differences


@dataclass
class Report:
    module: str
    size: int
    sha256: str
    abi_version: str | None = None
    allocator: str | None = None
    root_ids: list[str] = field(default_factory=list)
    imports: list[str] = field(default_factory=list)
    imports_used: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    cases: list[CaseResult] = field(default_factory=list)
    cases_source: str = ""
    compile_source: str = ""
    seconds: float = 0.0

    @property
    def passed(self) -> list[CaseResult]:
        return [c for c in self.cases if c.passed]

    @property
    def failed(self) -> list[CaseResult]:
        return [c for c in self.cases if not c.passed]

    @property
    def ok(self) -> bool:
        return not self.problems and not self.failed and bool(self.cases)

    def headline(self) -> str:
        if self.problems:
            return f"{self.module} would not load in Envoy: {len(self.problems)} problem(s)"
        verdict = "passed" if self.ok else "FAILED"
        return (f"{self.module}: ABI {self.abi_version}, {len(self.passed)}/{len(self.cases)} "
                f"cases passed — {verdict}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        """The inverse of ``to_dict``: front ends render a stored report without the module."""
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        fields["problems"] = [Problem(**p) for p in data.get("problems", [])]
        fields["warnings"] = [Problem(**p) for p in data.get("warnings", [])]
        fields["cases"] = [
            CaseResult(c["name"], [Difference(**d) for d in c["differences"]], c["notes"], c["logs"],
                       c["seconds"]) for c in data.get("cases", [])]
        return cls(**fields)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ok"] = self.ok
        data["problems"] = [asdict(p) for p in self.problems]
        data["warnings"] = [asdict(p) for p in self.warnings]
        for case, result in zip(data["cases"], self.cases, strict=True):
            case["passed"] = result.passed
        return data


def _size(n: int) -> str:
    return f"{n / 1024:.1f} KiB" if n < 2**20 else f"{n / 2**20:.1f} MiB"


def _first(c: CaseResult) -> str:
    return str(c.differences[0]) if c.differences else ""


def render_text(r: Report, verbose: bool = False) -> str:
    lines = [r.headline(), f"  module  {_size(r.size)}  sha256:{r.sha256[:16]}…  allocator "
             f"{r.allocator or '-'}  compiled: {r.compile_source or '-'}"]
    if r.root_ids:
        lines.append(f"  root ids  {', '.join(r.root_ids)}")
    if r.imports_used:
        lines.append(f"  host calls used  {', '.join(r.imports_used)}")
    for p in r.problems:
        lines.append(f"  ✗ {p.name}: {p.message}")
        lines.append(f"      Envoy: {p.envoy}")
    for p in r.warnings:
        lines.append(f"  ! {p.name}: {p.message} ({p.envoy})")
    if r.cases_source:
        lines.append(f"  cases from {r.cases_source}")
    for c in r.cases:
        lines.append(f"  {'✓' if c.passed else '✗'} {c.name}  ({c.seconds * 1000:.1f} ms)")
        for d in c.differences:
            lines.append(f"      {d.field}")
            lines.append(f"        expected: {d.expected}")
            lines.append(f"        got:      {d.got}")
        for note in c.notes:
            lines.append(f"      note: {note}")
        if (verbose or not c.passed) and c.logs:
            lines.append("      log:")
            lines += [f"        {line}" for line in c.logs[-10:]]
    return "\n".join(lines)


def render_markdown(r: Report) -> str:
    """For a GitHub check run summary or PR comment."""
    icon = "✅" if r.ok else "❌"
    out = [f"### {icon} ABI test: {r.headline()}", "",
           "| | |", "|---|---|",
           f"| ABI version | `{r.abi_version or 'none'}` |",
           f"| root ids | {', '.join(f'`{i}`' for i in r.root_ids) or '-'} |",
           f"| module size | {_size(r.size)} |",
           f"| host calls used | {len(r.imports_used)} |", ""]
    if r.problems:
        out += ["**Would not load in Envoy:**", ""]
        out += [f"- `{p.name}`: {p.message} — *{p.envoy}*" for p in r.problems]
        out.append("")
    if r.warnings:
        out += ["**Warnings:**", ""]
        out += [f"- `{p.name}`: {p.message} — *{p.envoy}*" for p in r.warnings]
        out.append("")
    if r.cases:
        out += ["| case | result | first difference |", "|---|---|---|"]
        for c in r.cases:
            diff = _first(c).replace("|", "\\|")
            out.append(f"| {c.name} | {'✅ pass' if c.passed else '❌ fail'} | {diff} |")
        failed_logs = [c for c in r.failed if c.logs]
        for c in failed_logs[:3]:
            out += ["", f"<details><summary>log of <b>{c.name}</b></summary>", "", "```"]
            out += c.logs[-20:]
            out += ["```", "</details>"]
    return "\n".join(out)


def render_slack(r: Report) -> str:
    """Slack mrkdwn: short enough for a message section."""
    icon = ":white_check_mark:" if r.ok else ":x:"
    out = [f"{icon} *{r.headline()}*",
           f"ABI `{r.abi_version or 'none'}` · root ids {', '.join(r.root_ids) or '-'} · {_size(r.size)}"]
    out += [f"• `{p.name}`: {p.message} _({p.envoy})_" for p in r.problems]
    for c in r.failed[:5]:
        out.append(f"• :x: *{c.name}*: {_first(c)}")
    if len(r.failed) > 5:
        out.append(f"…and {len(r.failed) - 5} more failed cases")
    return "\n".join(out)


def to_junit(r: Report) -> str:
    import xml.etree.ElementTree as ET  # only for --junit

    suite = ET.Element("testsuite", name=f"abi-test {r.module}", tests=str(len(r.cases) + 1),
                       failures=str(len(r.failed) + (1 if r.problems else 0)), errors="0",
                       time=f"{r.seconds:.3f}")
    load = ET.SubElement(suite, "testcase", classname="wasmbot.abi", name="module loads in Envoy")
    if r.problems:
        failure = ET.SubElement(load, "failure", message=f"{len(r.problems)} load problem(s)")
        failure.text = "\n".join(str(p) for p in r.problems)
    for c in r.cases:
        case = ET.SubElement(suite, "testcase", classname="wasmbot.cases", name=c.name,
                             time=f"{c.seconds:.4f}")
        if not c.passed:
            failure = ET.SubElement(case, "failure", message=_first(c))
            failure.text = "\n".join(str(d) for d in c.differences)
        if c.logs:
            ET.SubElement(case, "system-out").text = "\n".join(c.logs)
    ET.indent(suite)
    return ET.tostring(suite, encoding="unicode", xml_declaration=True)
