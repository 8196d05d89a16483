"""/wasm test, push JOB, jobs and status: the rest of the commands every front end shares."""

from __future__ import annotations

import re

import pytest
from conftest import Wasmbot, manifest_puts, registry_host

from bot.localservices import Service
from workers.commands import CommandError, ListCommand, PushCommand, SearchCommand, TestCommand, parse
from workers.jobs import State


def test_parser_accepts_the_new_commands() -> None:
    assert parse("/wasm test examples/hello-c") == TestCommand(source="examples/hello-c")
    assert parse("/wasm push 0123456789ab --tag localhost:5000/x:v1 --release") == PushCommand(
        job="0123456789ab", tag="localhost:5000/x:v1", release=True)
    assert parse("/wasm jobs") == ListCommand(name="jobs")
    assert parse("/wasm status prod") == ListCommand(name="status", env="prod")
    assert parse("/wasm history prod add-header") == ListCommand(name="history", env="prod", filter="add-header")
    with pytest.raises(CommandError, match="history takes ENV and an optional FILTER"):
        parse("/wasm history")
    assert parse("/wasm list add-header") == SearchCommand(text="add-header")


@pytest.mark.parametrize("wasmbot", ["sqlite"], indirect=True)
def test_test_then_push_the_tested_module(wasmbot: Wasmbot, registry: Service) -> None:
    tested = wasmbot.cli("run", "/wasm test examples/hello-c")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    job_id = re.search(r"job ([0-9a-f]{12}) submitted", tested.stdout).group(1)  # type: ignore[union-attr]
    job = wasmbot.store.get(job_id)
    assert job is not None and [s.name for s in job.stages] == ["build", "test"] and job.state is State.SUCCEEDED

    ref = f"{registry_host(registry)}/chat/pushed:v1"
    pushed = wasmbot.cli("run", f"/wasm push {job_id} --tag {ref}")
    assert pushed.returncode == 0, pushed.stdout + pushed.stderr
    push_id = re.search(r"job ([0-9a-f]{12}) submitted", pushed.stdout).group(1)  # type: ignore[union-attr]
    push_job = wasmbot.store.get(push_id)
    assert push_job is not None and push_job.state is State.SUCCEEDED
    assert [(s.name, s.attempts) for s in push_job.stages] == [("build", 1), ("test", 1), ("push", 1)]
    assert push_job.stage("build").result == job.stage("build").result  # the same module, not a rebuild
    assert manifest_puts(registry, "chat/pushed") == 1

    missing = next(i for i in ("000000000000", "111111111111") if i not in (job_id, push_id))
    refused = wasmbot.cli("run", f"/wasm push {missing} --tag {ref}")
    assert refused.returncode == 1 and "no job" in refused.stderr

    listed = wasmbot.cli("run", "/wasm jobs")
    assert listed.returncode == 0 and job_id in listed.stdout and push_id in listed.stdout
    status = wasmbot.cli("run", "/wasm status")
    assert status.stdout.strip() == "wasmbot has nothing deployed anywhere"
