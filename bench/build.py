"""Benchmark: cold and cached build time per language, in the real toolchain containers.

    python3 bench/build.py [--langs c,assemblyscript,go,rust] [--runs 3]

For each language a template (or the C test filter) is scaffolded and built with a fresh data
directory: "cold" fetches dependencies and compiles; "cached" builds the same tree again and is
served from the build cache without starting a container. Each figure is the median of
``--runs`` rounds; the cached/cold ratio is from the same run.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from buildhelp import run_build  # noqa: E402

from workers import sandbox  # noqa: E402
from workers.scaffold import LocalDirectory, render  # noqa: E402


def source_for(lang: str, work: Path) -> Path:
    if lang == "c":
        source = work / "c"
        shutil.copytree(ROOT / "tests" / "filters" / "c", source, ignore=shutil.ignore_patterns("build"))
        return source
    source = work / f"bench-{lang}"
    LocalDirectory(source).create(render(source.name, lang, "istio"))
    return source


def measure(lang: str, runs: int) -> tuple[float, float, float]:
    cold, warm, deps_warm = [], [], []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            source = source_for(lang, work)
            for bucket, data in ((cold, work / "cold"), (warm, work / "cold")):
                started = time.perf_counter()
                before = sandbox.containers_started
                result = run_build(source, data)
                bucket.append(time.perf_counter() - started)
                assert result.result is not None, result.error
                if bucket is warm:
                    assert sandbox.containers_started == before, "cached build started a container"
            # compile-only: dependencies cached, module not (a one-byte source change)
            marker = next(p for p in sorted(source.rglob("*")) if p.suffix in {".c", ".go", ".rs", ".ts"})
            marker.write_text(marker.read_text() + "\n")
            started = time.perf_counter()
            assert run_build(source, work / "cold").result is not None
            deps_warm.append(time.perf_counter() - started)
    return statistics.median(cold), statistics.median(deps_warm), statistics.median(warm)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--langs", default="c,assemblyscript,go,rust")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"{'language':<16}{'cold s':>9}{'deps cached s':>15}{'cache hit s':>13}{'hit/cold':>10}")
    for lang in args.langs.split(","):
        cold, compile_only, hit = measure(lang, args.runs)
        print(f"{lang:<16}{cold:>9.2f}{compile_only:>15.2f}{hit:>13.3f}{hit / cold:>10.4f}")


if __name__ == "__main__":
    main()
