"""From command to job to stages: submission, the stage task, retries.

A job runs as ``wasmbot.stage`` tasks, one per stage: each stage, once done, queues the next
on that stage's queue (workers/routing.py: a build goes to its toolchain's queue, which is
known only once a GitHub job has fetched its source).  Every delivery of a stage task first
*claims* the stage in the job store, atomically: a stage that already succeeded is not run
again, a stage another live worker holds is left to it, and a stage whose worker was lost is
taken over.  That makes redelivery (a killed worker, a duplicated message, a recovery) safe:
each stage's effect happens once per job.

Consecutive stages may run on different hosts: what one hands to the next (the module, the
test reports, a GitHub checkout) goes through shared storage (workers/artifacts.py), and
each worker has its own data directory (``StageContext.workdir`` is this worker's).
"""

from __future__ import annotations

import logging
import time
import traceback
from pathlib import Path
from typing import Literal

from celery.exceptions import Ignore
from celery.signals import task_postrun, task_prerun

from workers import lease, logsetup, outage, repoconfig, routing
from workers.celery_app import app, settings
from workers.commands import (
    SPECS,
    BuildCommand,
    Command,
    DeployCommand,
    EnvironmentCommand,
    InitCommand,
    PushCommand,
    TestCommand,
    lang_of,
    source_of,
)
from workers.jobs import Job, Stage, State
from workers.oci.reference import InvalidReference
from workers.oci.registry import RegistryError
from workers.stages import StageContext, StageError, StageFn, StageSkipped, checkout, relative_paths
from workers.stages import build as build_stage
from workers.stages import deploy as deploy_stage
from workers.stages import github as github_stages
from workers.stages import push as push_stage
from workers.stages import scaffold as scaffold_stage
from workers.stages import test as test_stage
from workers.store import JobStore, open_store

log = logging.getLogger(__name__)

STAGES: dict[str, StageFn] = {
    "scaffold": scaffold_stage.run,
    "build": build_stage.run,
    "test": test_stage.run,
    "push": push_stage.run,
    "deploy": deploy_stage.run,
    "undeploy": deploy_stage.undeploy,
    "fetch": github_stages.fetch,
    "attach": github_stages.attach,
    "repository": github_stages.create_repository,
}
Claim = Literal["run", "done", "busy", "stopped"]


def store() -> JobStore:
    return open_store(settings())


DEDUPE_TTL = 24 * 3600.0


def submit(command: Command, *, requester: str, origin: str, text: str,
           source_root: str, dedupe_key: str | None = None) -> Job:
    """Record a job for ``command`` and queue its first stage."""
    return submit_once(command, requester=requester, origin=origin, text=text, source_root=source_root,
                       dedupe_key=dedupe_key)[0]


def submit_once(command: Command, *, requester: str, origin: str, text: str,
                source_root: str, dedupe_key: str | None = None,
                github: dict[str, str] | None = None) -> tuple[Job, bool]:
    """Like ``submit``, and say whether the job is new.

    ``dedupe_key`` names the request that asked (a Slack trigger id, a GitHub delivery id): a
    second submission with the same key within a day returns the first job, not a new one.
    ``github`` names a commit to build (``repo``, ``sha``, ``installation``; ``release`` and
    ``tag`` for a release): the job first checks it out, and reports to GitHub.
    """
    job = Job(requester=requester, origin=origin, command=command, text=text,
              source_root=source_root, stages=[Stage(name=name) for name in stages_for(command, github)])
    with logsetup.job_context(job.id):
        return _submit(job, command, dedupe_key, github)


def _submit(job: Job, command: Command, dedupe_key: str | None,
            github: dict[str, str] | None) -> tuple[Job, bool]:
    if github is not None:
        job.reports["github"] = github
        checkout.localize(job, settings())  # each worker has its own checkout: the server's name for it
    if command.name == "push":
        _from_tested_job(job)
    elif not checkout.fetched(job):
        _check_source(job)
    _route(job)
    approval = approval_needed(job)
    if approval:
        job.state, job.approval = State.PENDING, approval
    if dedupe_key is not None:
        holder = store().claim_key(f"submit:{dedupe_key}", job.id, DEDUPE_TTL)
        if holder != job.id:
            store().events(holder, timeout=5)  # the first submitter may still be creating it
            existing = store().get(holder)
            if existing is None:
                raise RuntimeError(f"request {dedupe_key} is claimed by job {holder}, "
                                   "which was never created")
            log.info("request %s already submitted as job %s", dedupe_key, holder, extra={"job_id": holder})
            return existing, False
    store().create(job)
    log.info("job %s submitted by %s from %s: %s", job.id, job.requester, job.origin, job.text)
    if not job.approval:
        first = job.next_stage()
        assert first is not None
        enqueue(job.id, first.name)
    return job, True


def stages_for(command: Command, github: dict[str, str] | None = None) -> list[str]:
    """The stages of ``command``'s job: its pipeline, with the GitHub steps it needs."""
    names = list(SPECS[command.name].stages)  # the registry declares each command's stages
    if github is not None and command.name in ("build", "test"):
        names.insert(0, "fetch")
        if github.get("release"):
            names.append("attach")
    if command.name == "init" and settings().github_repo_owner:
        names.append("repository")
    return names


def _check_source(job: Job) -> None:
    """Refuse, before anything is queued, a job whose source is missing (or, for ``init``, whose
    destination exists): the stages' own checks, run now.  GitHub jobs fetch their source in a
    stage, and ``push`` takes the source of the job it names."""
    command = job.command
    try:
        if isinstance(command, InitCommand):
            scaffold_stage.refuse_existing(job.source_root, command.filter)
        elif isinstance(command, BuildCommand | TestCommand):
            build_stage.locate(job.source_root, command.source)
    except StageError as exc:
        raise ValueError(str(exc)) from None


def _route(job: Job) -> None:
    """Record the language of the job's build, if it has one to run, and refuse the job when no
    live worker has its toolchain (workers/routing.py)."""
    if not any(s.name == "build" and s.state is not State.SUCCEEDED for s in job.stages):
        return
    lang = build_lang(job)
    if lang is not None:
        job.artifacts["lang"] = lang
    if routing.toolchain(lang) is not None:  # a GitHub job's is known once fetched: no store read
        routing.check(lang, store().worker_toolchains())


def build_lang(job: Job) -> str | None:
    """The language ``job``'s build compiles, where it can be told before the build: named by
    the command, else found in a local source as the build stage finds it.  None: a GitHub
    job's source is known once fetched (the fetch stage tells it), or the build stage will say
    why it cannot tell."""
    named = lang_of(job.command)
    if named or "fetch" in [s.name for s in job.stages]:
        return named or job.artifacts.get("lang")
    source = source_of(job.command)
    if source is None:
        return None
    try:
        path = build_stage.locate(job.source_root, source)
        return build_stage.language(job.command, path, repoconfig.load(path))
    except (StageError, repoconfig.RepoConfigError):
        return None


def _from_tested_job(job: Job) -> None:
    """``/wasm push JOB``: take the build and test the job named did, and push what they made."""
    command = job.command
    assert isinstance(command, PushCommand)
    source = store().get(command.job)
    if source is None:
        raise ValueError(f"no job {command.job}")
    done = {s.name: s for s in source.stages if s.state is State.SUCCEEDED}
    if "build" not in done or "test" not in done:
        raise ValueError(f"job {source.id} has no passed build and test to push (it is {source.state.value})")
    job.command = command.model_copy(update={"source": source_of(source.command)})
    job.source_root = source.source_root
    job.stages = [done["build"].model_copy(), done["test"].model_copy(), Stage(name="push")]
    job.artifacts = {k: v for k, v in source.artifacts.items() if k not in ("image", "digest")}


def approval_needed(job: Job) -> dict[str, str]:
    """The approval a job must wait for: a non-dry-run change to a protected environment.

    A deploy's image is resolved to its digest now, so approvers see what they approve and the
    deploy stage can refuse to deploy anything else (a tag moved in between).
    """
    from workers.deploy.target import DeployError
    from workers.stages.deploy import preview

    command = job.command
    if not SPECS[command.name].approval or not isinstance(command, EnvironmentCommand):
        return {}
    env = settings().environments.get(command.env)
    if env is None or not env.protected or (isinstance(command, DeployCommand) and command.dry_run):
        return {}
    approval = {"action": f"deploy:{command.env}",
                "expires_at": str(time.time() + settings().approval_ttl)}
    if isinstance(command, DeployCommand):
        try:
            target, diff = preview(settings(), command, job.requester, job.id)
        except (DeployError, RegistryError, InvalidReference) as exc:
            raise ValueError(f"cannot ask for approval: {exc}") from None
        approval |= {"digest": target.digest, "image": str(target.image), "diff": diff[:2500]}
    return approval


def approve(job_id: str, by: str) -> Job:
    """Let a job that waits for approval run.  The caller has checked ``by`` may approve."""
    def grant(job: Job) -> None:
        if not job.awaiting_approval:
            raise ValueError(f"job {job_id} is not waiting for an approval (it is {job.state.value})")
        if by == job.requester:
            raise ValueError("you asked for this change: someone else who may approve must approve it")
        if time.time() > float(job.approval["expires_at"]):
            raise ApprovalExpired(f"the approval request for job {job_id} expired; ask again")
        job.approval = job.approval | {"approved_by": by, "approved_at": str(time.time())}

    try:
        store().update(job_id, grant)
    except ApprovalExpired:
        store().update(job_id, _expire)
        raise
    store().log(job_id, None, f"approved by {by}")
    enqueue(job_id, store().get(job_id).stages[0].name)  # type: ignore[union-attr]
    job = store().get(job_id)
    assert job is not None
    return job


class ApprovalExpired(ValueError):
    pass


def _expire(job: Job) -> None:
    job.stop(State.CANCELLED, "the approval request expired")


def enqueue(job_id: str, first: str) -> None:
    """Queue stage ``first`` of ``job_id``; the stages after it follow as each one ends."""
    job = store().get(job_id)
    if job is None:
        raise KeyError(f"no job {job_id}")

    def mark(job: Job) -> None:
        stage = job.stage(first)
        stage.state, stage.queued_at = State.QUEUED, time.time()
        if job.state.finished:
            job.state = State.QUEUED

    store().update(job_id, mark)
    _send(job, first)


def _send(job: Job, name: str) -> None:
    run_stage.si(job.id, name).apply_async(queue=routing.stage_queue(name, job.artifacts.get("lang")))


def _hand_over(job_id: str) -> None:
    """Queue the job's next stage, now that the one before it is done.  A build that no live
    worker can run fails the job here, saying so, rather than wait in its queue forever."""
    job = store().get(job_id)
    following = job.next_stage() if job is not None and not job.state.finished else None
    if job is None or following is None:
        return
    if following.name == "build" and routing.toolchain(job.artifacts.get("lang")) is not None:
        try:
            routing.check(job.artifacts.get("lang"), store().worker_toolchains())
        except routing.Unserved as exc:
            message = str(exc)
            store().update(job_id, lambda j: j.stop(State.FAILED, message))
            log.warning("job %s: %s", job_id, message)
            return
    _send(job, following.name)


def retry(job_id: str) -> Job:
    """Run a failed or cancelled job again from the stage that failed or was cancelled; the
    stages skipped after it are pending again."""
    current = store().get(job_id)
    if current is not None and current.state in (State.FAILED, State.CANCELLED):
        _route(current)  # the source may have changed, and so may the workers

    def reset(job: Job) -> str:
        if job.state not in (State.FAILED, State.CANCELLED):
            raise ValueError(f"job {job_id} is {job.state.value}; only failed or cancelled jobs "
                             "can be retried")
        failed = job.failed_stage()
        assert failed is not None
        for stage in job.stages[job.stages.index(failed):]:
            stage.state, stage.error, stage.result = State.PENDING, None, {}
        job.state = State.QUEUED
        if current is not None and "lang" in current.artifacts:
            job.artifacts["lang"] = current.artifacts["lang"]
        return failed.name

    first = store().update(job_id, reset)
    enqueue(job_id, first)
    job = store().get(job_id)
    assert job is not None
    return job


def cancel(job_id: str, by: str) -> Job:
    """Stop a queued or running job: no further stage starts.  A stage already running finishes
    (its sandbox has its own limits) and its result is kept, but nothing follows it."""
    def stop(job: Job) -> None:
        if job.state.finished:  # a job waiting for approval is PENDING: denying it is cancelling it
            raise ValueError(f"job {job_id} already {job.state.value}; there is nothing to cancel")
        job.stop(State.CANCELLED, f"cancelled by {by}")

    store().update(job_id, stop)
    store().log(job_id, None, f"cancelled by {by}")
    job = store().get(job_id)
    assert job is not None
    return job


def claim(job: Job, name: str, owner: str, now: float, ttl: float) -> Claim:
    """Decide what this delivery of stage ``name`` does, and take the stage if it runs it."""
    stage = job.stage(name)
    if job.state in (State.FAILED, State.CANCELLED):
        return "stopped"  # its stages after the one that stopped it are skipped, not done
    if stage.state in (State.SUCCEEDED, State.SKIPPED):
        return "done"
    if stage.state is State.RUNNING and lease.alive(stage.lease_owner, stage.lease_expires, now):
        return "busy"
    before = job.stages[: job.stages.index(stage)]
    if any(s.state not in (State.SUCCEEDED, State.SKIPPED) for s in before):
        return "busy"  # an earlier stage is (re)running; it queues this one when it ends
    stage.state, stage.attempts, stage.error = State.RUNNING, stage.attempts + 1, None
    stage.started_at, stage.finished_at = now, None
    stage.lease_owner, stage.lease_expires = owner, now + ttl
    job.state = State.RUNNING
    return "run"


def _finish(job: Job, name: str, owner: str, state: State, result: dict[str, str],
            error: str | None) -> bool:
    stage = job.stage(name)
    if stage.lease_owner != owner or stage.state is not State.RUNNING:
        return False  # the lease was lost and someone else took the stage over
    stage.state, stage.finished_at, stage.error = state, time.time(), error
    stage.lease_owner = stage.lease_expires = None
    stage.result = result
    job.artifacts.update(result)
    if job.state is State.CANCELLED:
        return True  # cancelled while this stage ran: keep its result, start nothing after it
    if state is State.FAILED:
        job.stop(State.FAILED)
        return True
    following = job.next_stage()
    if following is None:
        job.state = State.SUCCEEDED
    else:
        following.state, following.queued_at = State.QUEUED, time.time()
    return True


def server_paths(job: Job) -> list[tuple[str | Path, str]]:
    """The server's directories as a job's users see them: paths below the source (or else the
    source root) relative to it, anything else of wasmbot's under ``$WASMBOT_DATA_DIR``."""
    places: list[tuple[str | Path, str]] = [(settings().data_dir, "$WASMBOT_DATA_DIR")]
    if job.source_root:  # GitHub jobs other than builds have none
        source = source_of(job.command)
        places += [(job.source_root, ""), *([(Path(job.source_root) / source, "")] if source else [])]
    return places


@task_prerun.connect
def _task_names_its_job(task: object = None, args: tuple[str, ...] = (), **_: object) -> None:
    """Celery's own lines about a stage task ("succeeded", "ignored") carry the job too."""
    if getattr(task, "name", None) == "wasmbot.stage" and len(args) == 2:
        logsetup.JOB_ID.set(args[0])
        logsetup.STAGE.set(args[1])


@task_postrun.connect
def _task_done(**_: object) -> None:
    logsetup.JOB_ID.set(None)
    logsetup.STAGE.set(None)


@app.task(name="wasmbot.stage", acks_late=True, reject_on_worker_lost=True)
def run_stage(job_id: str, name: str) -> None:
    """Run one stage of a job, once, whatever happened to earlier deliveries."""
    with logsetup.job_context(job_id, name):
        _run_stage(job_id, name)


def _run_stage(job_id: str, name: str) -> None:
    jobs = store()
    ttl = settings().lease_ttl
    owner = lease.owner_id()
    outcome = jobs.update(job_id, lambda job: claim(job, name, owner, time.time(), ttl))
    if outcome == "done":
        _hand_over(job_id)  # the next stage claims for itself
        return None
    if outcome != "run":
        log.info("job %s: stage %s not run here (%s)", job_id, name, outcome)
        raise Ignore()  # another worker holds this job, or it has failed: queue nothing after it

    def renew() -> None:
        def extend(job: Job) -> None:
            stage = job.stage(name)
            if stage.lease_owner == owner:
                stage.lease_expires = time.time() + ttl
        jobs.update(job_id, extend)

    found = jobs.get(job_id)
    assert found is not None
    job = checkout.localize(found, settings())  # a GitHub job's checkout: this worker's own copy
    shown = relative_paths(server_paths(job))
    ctx = StageContext(job=job, settings=settings(), workdir=settings().artifacts_dir / job_id,
                       log=lambda text: outage.retrying(lambda: jobs.log(job_id, name, shown(text)),
                                                        "a log line"))
    state, result, error = State.SUCCEEDED, {}, None
    log.info("job %s: stage %s running (attempt %d)", job_id, name, job.stage(name).attempts)
    with lease.Renewer(renew, interval=ttl / 3):
        try:
            result = STAGES[name](ctx)
        except StageSkipped as exc:
            state, error = State.SKIPPED, None
            ctx.log(str(exc))
        except StageError as exc:
            state, error = State.FAILED, str(exc)
        except Exception as exc:  # a wasmbot bug: record it for the requester, log it in full
            log.exception("stage %s of job %s crashed", name, job_id)
            state = State.FAILED
            error = f"internal error in wasmbot ({type(exc).__name__}: {exc}); " \
                    + traceback.format_exc(limit=1).strip().splitlines()[-1]
    error = shown(logsetup.redact(error)) if error else error  # stage errors reach Slack and GitHub too
    log.log(logging.WARNING if state is State.FAILED else logging.INFO, "job %s: stage %s %s%s", job_id, name,
            state.value, f": {error}" if error else "")
    # The stage's work is done: wait out a store outage rather than lose its result.
    def finish(job: Job) -> bool:
        return _finish(job, name, owner, state, result, error)
    owned = outage.retrying(lambda: jobs.update(job_id, finish), f"the end of stage {name}")
    if not owned or state is State.FAILED:
        raise Ignore()
    outage.retrying(lambda: _hand_over(job_id), f"the hand-over after stage {name}")
    return None
