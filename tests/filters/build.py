"""Build the test filters from source with their real toolchains (no binaries in the repository).

``python3 tests/filters/build.py go`` prints the module's path.  Each recipe is what the
filter's README would tell an engineer to run; the build stage runs the same recipes in
toolchain containers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

RECIPES: dict[str, list[list[str]]] = {
    "assemblyscript": [["npm", "ci", "--no-audit", "--no-fund"], ["npm", "run", "asbuild"]],
    "go": [["go", "build", "-buildmode=c-shared", "-o", "build/filter.wasm", "."]],
    "go-properties": [["go", "build", "-buildmode=c-shared", "-o", "build/filter.wasm", "."]],
    "c": [["clang", "--target=wasm32-wasi", "-O2", "-mexec-model=reactor", "-o", "build/filter.wasm",
           "filter.c"]],
    "c-features": [["clang", "--target=wasm32-wasi", "-O2", "-mexec-model=reactor", "-o",
                    "build/filter.wasm", "filter.c"]],
}
ENV = {"go": {"GOOS": "wasip1", "GOARCH": "wasm"}, "go-properties": {"GOOS": "wasip1", "GOARCH": "wasm"}}


def build(name: str) -> Path:
    folder = HERE / name
    (folder / "build").mkdir(exist_ok=True)
    env = os.environ | ENV.get(name, {})
    for argv in RECIPES[name]:
        proc = subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed in {folder}:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return folder / "build" / "filter.wasm"


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(build(arg))
