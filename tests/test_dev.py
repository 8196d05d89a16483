"""`wasmbot dev`: registry, worker and web app in one process tree, stopped by Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import requests
from conftest import ROOT

from bot.localservices import free_port


def _answers(url: str, timeout: float = 30) -> requests.Response:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return requests.get(url, timeout=2)
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)  # a listening socket sends no event to wait on


def test_dev_starts_everything_and_ctrl_c_stops_it_all(tmp_path: Path, toolchain_image: str) -> None:
    registry_port, web_port = free_port(), free_port()
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path),
           "WASMBOT_DATA_DIR": str(tmp_path / "data"), "WASMBOT_WEB_PORT": str(web_port),
           "WASMBOT_CONFIG": str(tmp_path / "none.toml")}
    proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "dev", "--registry-port", str(registry_port)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline() + proc.stdout.readline()
        assert f"registry: http://127.0.0.1:{registry_port}" in banner
        assert "Ctrl-C stops everything" in banner
        assert _answers(f"http://127.0.0.1:{registry_port}/v2/").status_code == 200
        assert _answers(f"http://127.0.0.1:{web_port}/healthz").json() == {"status": "ok"}
        tree = psutil.Process(proc.pid).children(recursive=True)
        assert len(tree) >= 3  # registry, worker (and its pool), web app
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert out.rstrip().endswith("stopped")
    assert not [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
