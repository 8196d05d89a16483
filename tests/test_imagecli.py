"""``wasmbot push|pull|inspect|tag`` as a person runs them, against docker-registry: references
with digests, one-line errors (``--debug`` adds the traceback), and a TLS registry reached over
plain HTTP."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from ocihelp import host_of, log_lines, module_bytes
from registries import start_secure_registry

from bot.localservices import Service

WRONG = "sha256:" + "0" * 64
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def one_line_error(proc: subprocess.CompletedProcess[str], code: int) -> str:
    """The single ``wasmbot: …`` line of a failed command (no traceback), checked."""
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("wasmbot: "), proc.stderr
    assert proc.stdout == ""
    return lines[0]


def module_file(tmp_path: Path) -> Path:
    path = tmp_path / "add-header.wasm"
    path.write_bytes(module_bytes())
    return path


def pushed_digest(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stderr
    found = DIGEST.findall(proc.stdout)
    assert len(found) == 1, proc.stdout  # printed once, after the reference
    return found[0]


def test_push_to_a_digest_pushes_by_digest_or_refuses_before_uploading(
        registry: Service, tmp_path: Path, wasmbot_cli) -> None:
    host, module = host_of(registry), module_file(tmp_path)
    refused = one_line_error(wasmbot_cli("push", str(module), f"{host}/bydigest/a@{WRONG}"), 1)
    assert f"is {WRONG}" not in refused and WRONG in refused
    assert log_lines(registry, r"^(POST|PUT) /v2/bydigest/a/") == []  # nothing was uploaded
    actual = DIGEST.findall(refused.replace(WRONG, ""))
    assert len(actual) == 1, refused  # the message names the module's real digest
    done = wasmbot_cli("push", str(module), f"{host}/bydigest/a@{actual[0]}")
    assert pushed_digest(done) == actual[0]
    assert done.stdout.startswith(f"pushed {host}/bydigest/a@{actual[0]} (compat variant")
    assert log_lines(registry, r"^PUT /v2/bydigest/a/manifests/") == [
        f"PUT /v2/bydigest/a/manifests/{actual[0]} 201"]  # no tag, not even latest
    pulled = tmp_path / "pulled.wasm"
    assert wasmbot_cli("pull", f"{host}/bydigest/a@{actual[0]}", "-o", str(pulled)).returncode == 0
    assert pulled.read_bytes() == module.read_bytes()


def test_push_to_a_tag_and_digest_verifies_the_digest(registry: Service, tmp_path: Path, wasmbot_cli) -> None:
    host, module = host_of(registry), module_file(tmp_path)
    digest = pushed_digest(wasmbot_cli("push", str(module), f"{host}/tagdigest/first:v1"))
    refused = one_line_error(wasmbot_cli("push", str(module), f"{host}/tagdigest/second:v1@{WRONG}"), 1)
    assert WRONG in refused and digest in refused
    assert log_lines(registry, r"/v2/tagdigest/second/(blobs/uploads|manifests)") == []
    done = wasmbot_cli("push", str(module), f"{host}/tagdigest/second:v1@{digest}")
    assert pushed_digest(done) == digest
    assert done.stdout.startswith(f"pushed {host}/tagdigest/second:v1@{digest} (compat variant")
    both = wasmbot_cli("push", str(module), f"{host}/tagdigest/third:v1@{digest}", "--variant", "both")
    assert "--variant" in one_line_error(both, 2)
    assert log_lines(registry, r"/v2/tagdigest/third/") == []


def test_pull_and_inspect_by_digest_print_it_once_and_the_digest_wins(
        registry: Service, tmp_path: Path, wasmbot_cli) -> None:
    host, module = host_of(registry), module_file(tmp_path)
    digest = pushed_digest(wasmbot_cli("push", str(module), f"{host}/pinned/a:v1"))
    other = tmp_path / "other.wasm"
    other.write_bytes(module_bytes(padding=100))
    pushed_digest(wasmbot_cli("push", str(other), f"{host}/pinned/a:v2"))
    out = tmp_path / "out.wasm"
    for text in (f"{host}/pinned/a@{digest}", f"{host}/pinned/a:v2@{digest}"):
        pulled = wasmbot_cli("pull", text, "-o", str(out))
        assert pulled.returncode == 0, pulled.stderr
        assert pulled.stdout.startswith(f"pulled {text} (compat variant"), pulled.stdout
        assert pulled.stdout.count(digest) == 1, pulled.stdout
        assert out.read_bytes() == module.read_bytes()  # v2 is another module: the digest won
        shown = wasmbot_cli("inspect", text)
        assert shown.returncode == 0 and shown.stdout.count(digest) == 1, shown.stdout + shown.stderr


def test_pull_into_a_missing_directory_is_one_line_and_asks_nothing(
        registry: Service, tmp_path: Path, wasmbot_cli) -> None:
    host = host_of(registry)
    pushed_digest(wasmbot_cli("push", str(module_file(tmp_path)), f"{host}/outdir/a:v1"))
    before = log_lines(registry, r"/v2/outdir/")
    missing = tmp_path / "missing" / "dir" / "x.wasm"
    line = one_line_error(wasmbot_cli("pull", f"{host}/outdir/a:v1", "-o", str(missing)), 2)
    assert line == f"wasmbot: cannot write {missing}: the directory {missing.parent} does not exist"
    assert log_lines(registry, r"/v2/outdir/") == before
    line = one_line_error(wasmbot_cli("pull", f"{host}/outdir/a:v1", "-o", str(tmp_path)), 1)
    assert line.startswith(f"wasmbot: cannot write {tmp_path}: ")


def test_debug_shows_the_traceback_of_an_error(registry: Service, tmp_path: Path, wasmbot_cli) -> None:
    host = host_of(registry)
    plain = one_line_error(wasmbot_cli("inspect", f"{host}/nobody/here:v1"), 1)
    debug = wasmbot_cli("inspect", "--debug", f"{host}/nobody/here:v1")
    assert debug.returncode == 1
    assert debug.stderr.startswith("Traceback (most recent call last):"), debug.stderr
    assert "NotFound" in debug.stderr and debug.stderr.splitlines()[-1] == plain


def test_a_tls_registry_reached_over_http_says_how_to_configure_it(tmp_path: Path, wasmbot_cli) -> None:
    service, tls = start_secure_registry(tmp_path / "tls", {"alice": "correct horse"})
    try:
        host = host_of(service)  # loopback: plain HTTP unless configured
        line = one_line_error(wasmbot_cli("inspect", f"{host}/team/a:v1"), 1)
        assert line.startswith(f"wasmbot: the registry at {host} speaks TLS; use https://"), line
        assert f'set plain_http = false under [registries."{host}"]' in line
        config = (f'[registries."{host}"]\nplain_http = false\nca_bundle = "{tls.ca}"\n'
                  'username = "alice"\npassword = "correct horse"\n')
        line = one_line_error(wasmbot_cli("inspect", f"{host}/team/a:v1", config=config), 1)
        assert line == (f"wasmbot: registry {host} has no repository 'team/a': check the name, "
                        "or push an image there first")
    finally:
        service.stop()
