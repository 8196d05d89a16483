"""Benchmark: how long the CLI takes before it does any work.

    python3 bench/startup.py [--runs 20]

Each command runs as a fresh process, as a user's shell would start it: ``python3 -c pass``
(the interpreter alone, the baseline), ``wasmbot --help``, ``wasmbot --version`` and
``wasmbot pull`` of an invalid reference (settings and the registry client load, then it exits
2 before any request).  Prints best and median wall time and the median's ratio to the
baseline of the same run.  Target: ``wasmbot --help`` under 0.15 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

COMMANDS = {
    "python3 -c pass": [sys.executable, "-c", "pass"],
    "wasmbot --help": [sys.executable, "-m", "bot.cli", "--help"],
    "wasmbot --version": [sys.executable, "-m", "bot.cli", "--version"],
    "wasmbot pull BAD": [sys.executable, "-m", "bot.cli", "pull", "NOT A REFERENCE"],
}


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wasmbot-bench-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WASMBOT_")}
        env |= {"WASMBOT_DATA_DIR": tmp, "WASMBOT_CONFIG": str(Path(tmp) / "none.toml")}
        samples: dict[str, list[float]] = {name: [] for name in COMMANDS}
        for _ in range(args.runs):  # interleaved, so that load changes hit every command alike
            for name, argv in COMMANDS.items():
                samples[name].append(timed(argv, env))
    base = statistics.median(samples["python3 -c pass"])
    print(f"wasmbot CLI start-up, {args.runs} runs each (seconds)")
    print(f"{'':<20}{'best':>8}{'median':>8}{'ratio':>8}")
    for name, values in samples.items():
        median = statistics.median(values)
        print(f"{name:<20}{min(values):>8.3f}{median:>8.3f}{median / base:>8.2f}")


if __name__ == "__main__":
    main()
