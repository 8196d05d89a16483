"""Process logs: JSON lines with the job id, and no secret in any line or in a job's stored log.

The end-to-end test runs a real `wasmbot serve` (with the Slack front end) and a real
`wasmbot worker` with tokens in the environment and a registry password in wasmbot.toml, and
submits a build whose compiler error quotes those secrets, so that every path that could leak
them (compiler output in the job log, the stage error in the worker's log and in Slack, the
access log of the signed log link) is exercised.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import Wasmbot, log_link
from hypothesis import given, settings
from hypothesis import strategies as st
from slackapi import SlackStandIn
from test_slack import final_message, start_slackbot

from workers import logsetup
from workers.config import Settings
from workers.store import SqliteStore

GITHUB_TOKEN = "ghp_" + "L0gT3st" * 5
SLACK_TOKEN = "xoxb-4242-1717-" + "wasmbotlogs" * 2
PASSWORD = "registry-pa55word-for-logs"  # no token shape: only its configured value can hide it
SECRETS = (GITHUB_TOKEN, SLACK_TOKEN, PASSWORD)


@pytest.fixture
def json_log() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger writing through wasmbot's JSON handler into a buffer."""
    out = io.StringIO()
    logger = logging.getLogger("tests.logging")
    handler = logsetup.make_handler("json", out)
    logger.addHandler(handler)
    logger.propagate, logger.level = False, logging.DEBUG
    yield logger, out
    logger.removeHandler(handler)


def lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_redaction_covers_args_f_strings_exceptions_and_token_shapes(
        json_log: tuple[logging.Logger, io.StringIO], tmp_path: Path) -> None:
    logger, out = json_log
    (tmp_path / "pw").write_text("file-held-secret-77\n")
    key = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAlogtest\nZZ9k2logtest==\n-----END RSA PRIVATE KEY-----\n"
    settings = Settings(registries={"r.example": {"username": "u", "password": "configured-pw-42"},
                                    "f.example": {"username": "u", "password_file": tmp_path / "pw"}},
                        github_app_id=1, github_app_private_key=key)
    found = settings.secret_values()
    assert {"configured-pw-42", "file-held-secret-77\n", key} <= set(found)
    logsetup.add_secrets(found)

    logger.info("login with %s failed", "configured-pw-42")
    logger.warning(f"password file says {'file-held-secret-77'}")
    try:
        raise RuntimeError("key line ZZ9k2logtest== rejected")
    except RuntimeError:
        logger.exception("signing failed for %r", {"Authorization": "Basic dXNlcjpwYXNz"})
    logger.info("unknown tokens: xoxp-1234-5678-abcdef ghs_%s github_pat_%s", "a1" * 10, "B2_" * 8)
    logger.info("headers: Authorization: Bearer eyJhbGciOi.J9.sig and redis://:hunter22@127.0.0.1:6379/0")
    logger.info("GET /jobs/0123456789ab/log?sig=00ff00ff00ff&x=1")
    logger.info("Basic authentication failed: the token provided was not accepted")  # prose stays
    with logsetup.job_context("0123456789ab", "push"):
        logger.info("pushing")
    logger.info("too few arguments %s %s", "configured-pw-42")  # still one masked line
    logged = lines(out)
    text = out.getvalue()
    for secret in ("configured-pw-42", "file-held-secret-77", "ZZ9k2logtest", "dXNlcjpwYXNz", "xoxp-1234",
                   "a1a1a1a1", "B2_B2_", "eyJhbGciOi", "hunter22", "00ff00ff"):
        assert secret not in text, secret
    assert logged[0]["message"] == "login with *** failed"
    assert logged[1]["message"] == "password file says ***"
    assert logged[2]["message"] == "signing failed for {'Authorization': 'Basic ***'}"
    assert logged[2]["exception"].startswith("Traceback") and "key line *** rejected" in logged[2]["exception"]
    assert logged[3]["message"] == "unknown tokens: *** *** ***"
    assert logged[4]["message"] == "headers: Authorization: Bearer *** and redis://:***@127.0.0.1:6379/0"
    assert logged[5]["message"] == "GET /jobs/0123456789ab/log?sig=***&x=1"
    assert logged[6]["message"] == "Basic authentication failed: the token provided was not accepted"
    assert {"job_id", "stage"} & set(logged[0]) == set()
    assert logged[7]["job_id"] == "0123456789ab" and logged[7]["stage"] == "push"
    assert logged[8]["message"] == "'too few arguments %s %s' % ('***',)"
    for line in logged:
        assert set(line) <= {"time", "level", "logger", "message", "exception", "job_id", "stage"}
        assert line["logger"] == "tests.logging"
        assert datetime.fromisoformat(line["time"].replace("Z", "+00:00")).utcoffset() == UTC.utcoffset(None)


def test_text_format_names_the_job_and_masks_too() -> None:
    out = io.StringIO()
    logger = logging.getLogger("tests.logging.text")
    logger.addHandler(logsetup.make_handler("text", out))
    logger.propagate = False
    with logsetup.job_context("0123456789ab", "build"):
        logger.warning("token %s", "xoxb-1-2-abcdefgh")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z WARNING tests.logging.text "
                        r"\[job 0123456789ab build\] token \*\*\*\n", out.getvalue()), out.getvalue()


def test_job_log_lines_are_redacted_in_the_store(tmp_path: Path) -> None:
    logsetup.add_secrets(["store-secret-value"])
    store = SqliteStore(tmp_path / "jobs.sqlite")
    store.log("0123456789ab", "build", "using store-secret-value and ghp_" + "x" * 20)
    assert [e.text for e in store.events("0123456789ab")] == ["using *** and ***"]


def test_bad_log_level_names_the_setting(wasmbot_cli: Any) -> None:
    proc = wasmbot_cli("serve", env={"WASMBOT_LOG_LEVEL": "LOUD"})
    assert proc.returncode == 2 and "log_level" in proc.stderr


def json_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of a process's output, each of which must be one JSON object."""
    out = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"{path.name} line {number} is not JSON: {line!r}") from None
        assert {"time", "level", "logger", "message"} <= set(out[-1]), line
    return out


def test_json_logs_carry_the_job_id_and_no_secret(wasmbot: Wasmbot, source_dir: Path, tmp_path: Path) -> None:
    config = Path(wasmbot.env["WASMBOT_CONFIG"])
    config.write_text(f'[registries."127.0.0.1:9"]\nusername = "wasmbot"\npassword = "{PASSWORD}"\n')
    wasmbot.env.update(WASMBOT_LOG_FORMAT="json", GITHUB_TOKEN=GITHUB_TOKEN)
    # A source that quotes the secrets: the compiler repeats them in its error.
    (source_dir / "leak.c").write_text(f'#error "{GITHUB_TOKEN} {SLACK_TOKEN} {PASSWORD}"\n')
    api = SlackStandIn(token=SLACK_TOKEN)
    api.start()
    try:
        wasmbot.start_worker()
        # The server at DEBUG: slack_sdk then logs each request it sends, headers and all.
        slackbot = start_slackbot(wasmbot, api, tmp_path, SLACK_BOT_TOKEN=SLACK_TOKEN, WASMBOT_LOG_LEVEL="DEBUG")
        assert slackbot.command(f"build tests/.sources/{source_dir.name} --tag 127.0.0.1:9/leak:v1").ok
        final_message(api, "failed")
        job = wasmbot.store.recent(1)[0]
        link = log_link(wasmbot, slackbot.url, job.id)
        page = requests.get(link, timeout=10)
        assert page.status_code == 200
        slackbot.process.terminate()
        slackbot.process.wait(30)
    finally:
        api.stop()
    wasmbot.stop_workers()

    error = job.stage("build").error or ""
    assert error.count('"*** *** ***"') >= 1, error  # the secrets were there, and were masked
    stored = json.dumps([e.model_dump() for e in wasmbot.store.events(job.id)]) + job.model_dump_json()
    slack_saw = json.dumps([c.args for c in api.calls])
    for where, text in (("worker output", (wasmbot.workdir / "worker-0.log").read_text()),
                        ("server output", (wasmbot.workdir / "serve.log").read_text()),
                        ("stored job log", stored), ("Slack messages", slack_saw), ("log page", page.text)):
        for secret in SECRETS:
            assert secret not in text, f"{secret[:8]}… in the {where}"

    for name, stage_lines in (("worker-0.log", True), ("serve.log", False)):
        logged = json_lines(wasmbot.workdir / name)
        about = [line for line in logged if job.id in line["message"]]
        assert about, f"{name} has no line about job {job.id}"
        for line in about:
            assert line.get("job_id") == job.id, line
        if stage_lines:
            built = [line for line in logged if line.get("stage") == "build" and line.get("job_id") == job.id]
            assert any(line["logger"] == "celery.app.trace" for line in built), "Celery's own task line"
            assert any("failed" in line["message"] and "***" in line["message"] for line in built)
    access = [line for line in json_lines(wasmbot.workdir / "serve.log") if line["logger"] == "aiohttp.access"]
    assert any(line.get("job_id") == job.id and "sig=***" in line["message"] for line in access), access


_FRAGMENTS = ("xoxb-", "xapp-", "ghp_", "gho_", "github_pat_", "-----BEGIN RSA PRIVATE KEY-----",
              "-----END RSA PRIVATE KEY-----", "Authorization", "AUTHORIZATION: ", "proxy-authorization=",
              "Bearer ", "Basic ", "bearer ", "?sig=", "&token=", "code=", "://", "user:", "@", "redis://:",
              "'", '"', " ", "\n", ":", "=", "_", "-", "/", "A1b2C3d4E5f6G7h8", "abcdefgh", "0123", "İ", "K")


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(_FRAGMENTS) | st.text(max_size=6), max_size=14).map("".join))
def test_redaction_skips_only_shapes_a_line_cannot_hold(text: str) -> None:
    """The redactor scans a line for a token shape only when the line holds a text every match of
    it contains; that masks exactly what scanning for every shape masks."""
    everything = text
    for shape, replacement, _needles in logsetup._SHAPES:
        everything = shape.sub(replacement, everything)
    assert logsetup.Redactor()(text) == everything
