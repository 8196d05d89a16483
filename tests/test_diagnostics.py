"""Compiler diagnostics read from real toolchain output (clang, rustc, go on this machine): every
error and warning, with its whole message, its place, and its excerpt as details."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from workers.diagnostics import parse

LONG = "a deliberately long explanation, " * 15  # 495 characters


def run(argv: list[str], cwd: Path) -> list[str]:
    assert shutil.which(argv[0]), f"{argv[0]} is missing: deploy/setup.sh installs or requires it"
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode != 0, proc.stderr  # each sample fails to build
    return (proc.stdout + proc.stderr).splitlines()


def test_clang(tmp_path: Path) -> None:
    source = "".join(f'#warning "note {n}: {LONG}"\n' for n in range(40))
    source += "".join(f"int f{n}(void) {{ return missing_{n}; }}\n" for n in range(30))
    (tmp_path / "filter.c").write_text(source)
    found = parse(run(["clang", "-ferror-limit=0", "-c", "./filter.c", "-o", "/dev/null"], tmp_path))
    warnings = [d for d in found if d.level == "warning"]
    errors = [d for d in found if d.level == "error"]
    assert len(warnings) == 40 and len(errors) == 30
    assert all(LONG.strip() in d.message and d.path == "./filter.c" for d in warnings)
    assert [d.line for d in warnings] == list(range(1, 41)) and warnings[0].column == 2
    assert errors[7].message == "use of undeclared identifier 'missing_7'" and errors[7].line == 48
    assert errors[7].details[0] == "int f7(void) { return missing_7; }"  # the excerpt, not a diagnostic


def test_rustc(tmp_path: Path) -> None:
    source = "".join(f"pub fn f{n}() {{ let unused_{n} = {n}; }}\n" for n in range(45))
    source += "".join(f"pub fn g{n}() -> i32 {{ missing_{n} }}\n" for n in range(10))
    (tmp_path / "lib.rs").write_text(source)
    found = parse(run(["rustc", "--crate-type", "lib", "--edition", "2021", "lib.rs", "-o", "/dev/null"],
                      tmp_path))
    warnings = [d for d in found if d.level == "warning"]
    errors = [d for d in found if d.level == "error"]
    assert len(found) == 55 and len(errors) == 10, [d.message for d in found]
    assert errors[3].code == "E0425" and "missing_3" in errors[3].message and errors[3].line == 49
    assert warnings[0].message == "unused variable: `unused_0`" and warnings[0].column is not None
    assert any("help:" in line for line in warnings[0].details)


def test_go(tmp_path: Path) -> None:
    body = "".join(f"\tv{n} := {n}\n" for n in range(52))
    (tmp_path / "main.go").write_text(f"package main\n\nfunc main() {{\n{body}}}\n")
    (tmp_path / "go.mod").write_text("module example.com/filter\n\ngo 1.21\n")
    found = parse(run(["go", "build", "-gcflags=-e", "-o", "/dev/null", "."], tmp_path))
    assert len(found) == 52 and all(d.level == "error" for d in found)
    assert found[51].message == "declared and not used: v51" and found[51].line == 55
    assert found[0].path == "./main.go"


def test_assemblyscript_format() -> None:
    """asc 0.27's layout: the place a few lines below the message (a copy of its output)."""
    output = [
        "ERROR TS2304: Cannot find name 'missing'.",
        "    :",
        " 12 │ return missing;",
        "    │        ~~~~~~~",
        "    └─ in assembly/index.ts(12,10)",
        "",
        "WARNING AS235: Only variables, functions and enums become WebAssembly module exports.",
        "    :",
        " 3 │ export class Filter {}",
        "    └─ in assembly/index.ts(3,1)",
        "",
        "FAILURE 1 compile error(s)",
    ]
    [error, warning] = parse(output)
    assert (error.path, error.line, error.column, error.code) == ("assembly/index.ts", 12, 10, "TS2304")
    assert error.message == "Cannot find name 'missing'." and error.details[1] == " 12 │ return missing;"
    assert warning.level == "warning" and warning.line == 3


def test_log_lines_that_are_not_diagnostics() -> None:
    assert parse(["$ exec clang --target=wasm32-wasi ./*.c", "main.go:12: a log line",
                  "filter.wasm: 1234 bytes, sha256:ab", "In file included from ./filter.c:3:",
                  "error: aborting due to 1 previous error", "1 warning and 2 errors generated."]) == []
