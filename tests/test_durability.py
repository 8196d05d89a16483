"""Stage claims and recovery: the rules that make redelivery safe, on both stores."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from pathlib import Path

from workers import lease
from workers.config import Settings
from workers.jobs import Job, Stage, State
from workers.pipeline import claim
from workers.recovery import recover, stalled_stage
from workers.store import JobStore


def new_job() -> Job:
    return Job(requester="ana", origin="cli", command={"name": "build", "source": "x"},
               text="/wasm build x", source_root="/tmp",
               stages=[Stage(name=n) for n in ("build", "test", "push")])


def test_only_one_of_many_concurrent_deliveries_claims_a_stage(store: JobStore) -> None:
    job = new_job()
    store.create(job)
    outcomes: list[str] = []
    start = threading.Barrier(8)

    def deliver(i: int) -> None:
        start.wait()
        outcomes.append(store.update(job.id, lambda j: claim(j, "build", f"elsewhere:{i}",
                                                             time.time(), 60)))

    threads = [threading.Thread(target=deliver, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["busy"] * 7 + ["run"]
    record = store.get(job.id)
    assert record is not None and record.stage("build").attempts == 1


def test_claim_rules() -> None:
    job = new_job()
    now = time.time()
    assert claim(job, "test", "w:1", now, 30) == "busy"  # build has not run yet
    assert claim(job, "build", lease.owner_id(), now, 30) == "run"
    assert claim(job, "build", "other:2", now, 30) == "busy"  # live lease held by this process
    job.stage("build").state = State.SUCCEEDED
    assert claim(job, "build", "other:2", now, 30) == "done"
    job.state = State.FAILED
    assert claim(job, "test", "other:2", now, 30) == "stopped"


def test_lease_of_a_dead_local_process_is_not_alive() -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    now = time.time()
    assert not lease.alive(f"{lease.HOST}:{proc.pid}", now + 60, now)
    assert lease.alive(lease.owner_id(), now + 60, now)
    assert not lease.alive(lease.owner_id(), now - 1, now)
    assert lease.alive("elsewhere:1", now + 60, now)  # another host: trust the expiry


def test_lease_of_a_killed_but_unreaped_process_is_not_alive() -> None:
    """A zombie (exited, not yet reaped by its parent) still answers signal 0."""
    proc = subprocess.Popen(["true"])
    stat = Path(f"/proc/{proc.pid}/stat")
    deadline = time.monotonic() + 30
    while stat.read_text().rpartition(")")[2].split()[0] != "Z":  # exited; we have not reaped it
        assert time.monotonic() < deadline
        time.sleep(0.01)
    now = time.time()
    try:
        assert not lease.alive(f"{lease.HOST}:{proc.pid}", now + 60, now)
        assert lease.gone(f"{lease.HOST}:{proc.pid}", [])
    finally:
        proc.wait()


def test_recovery_requeues_only_lost_stages(store: JobStore, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, lease_ttl=3, requeue_after=60)
    lost, live, old_queue = new_job(), new_job(), new_job()
    now = time.time()
    for job in (lost, live, old_queue):
        store.create(job)
    store.update(lost.id, lambda j: claim(j, "build", "gone:1", now - 10, 3))
    store.update(live.id, lambda j: claim(j, "build", "elsewhere:1", now, 3))

    def queued_long_ago(j: Job) -> None:
        j.stage("build").state, j.stage("build").queued_at = State.QUEUED, now - 120
    store.update(old_queue.id, queued_long_ago)

    enqueued: list[tuple[str, str]] = []
    recovered = recover(store, settings, lambda job_id, stage: enqueued.append((job_id, stage)))
    assert sorted(recovered) == sorted([lost.id, old_queue.id])
    assert sorted(enqueued) == sorted([(lost.id, "build"), (old_queue.id, "build")])
    assert any("lost this stage" in e.text for e in store.events(lost.id))


def test_finished_jobs_are_never_stalled() -> None:
    job = new_job()
    job.state = State.SUCCEEDED
    assert stalled_stage(job, time.time(), 60) is None


def test_events_record_every_transition_in_order(store: JobStore) -> None:
    job = new_job()
    store.create(job)
    store.update(job.id, lambda j: claim(j, "build", lease.owner_id(), time.time(), 30))
    store.log(job.id, "build", "compiling")
    kinds = [(e.kind, e.stage, e.state.value if e.state else e.text) for e in store.events(job.id)]
    assert kinds == [
        ("stage", "build", "pending"), ("stage", "test", "pending"), ("stage", "push", "pending"),
        ("job", None, "queued"), ("stage", "build", "running"), ("job", None, "running"),
        ("log", "build", "compiling"),
    ]
    assert [e.seq for e in store.events(job.id, after=5)] == [6, 7]


def test_a_retired_worker_is_no_longer_live(store: JobStore) -> None:
    store.heartbeat("w1", ttl=60)
    store.heartbeat("w2", ttl=60)
    assert store.live_workers() == ["w1", "w2"]
    store.retire("w1")
    assert store.live_workers() == ["w2"]


def test_the_deploy_history_is_kept_per_environment_newest_first(store: JobStore) -> None:
    for i, env in enumerate(["staging", "prod", "staging"]):
        store.record_deploy({"action": "deploy", "environment": env, "filter": "f", "digest": f"sha256:{i}",
                             "at": str(time.time() + i)})
    assert [r["digest"] for r in store.deploys("staging")] == ["sha256:2", "sha256:0"]
    assert [r["digest"] for r in store.deploys()] == ["sha256:2", "sha256:1", "sha256:0"]
    assert [r["digest"] for r in store.deploys(limit=1)] == ["sha256:2"]
    assert store.deploys("dev") == []


def test_work_is_kept_until_done_and_its_key_is_remembered_after(store: JobStore) -> None:
    assert store.add_work("github-comment:1", "a", ttl=60)
    assert not store.add_work("github-comment:1", "b", ttl=60)  # the same request again
    assert store.add_work("other:1", "c", ttl=60)
    assert store.open_work("github-comment:") == {"github-comment:1": "a"}
    assert store.swap_work("github-comment:1", "a", "a, half done")
    assert not store.swap_work("github-comment:1", "a", "a, taken over")  # changed since "a" was read
    assert store.open_work("github-comment:") == {"github-comment:1": "a, half done"}
    assert store.swap_work("github-comment:1", "a, half done", None)
    assert store.open_work("github-comment:") == {}
    assert not store.swap_work("github-comment:1", "a, half done", "again")  # done is done
    assert not store.add_work("github-comment:1", "d", ttl=60)  # done, and still remembered
    assert store.add_work("github-comment:2", "e", ttl=0.2)
    time.sleep(0.3)  # nothing to wait on: the record's time runs out
    assert store.open_work("github-comment:") == {}
    assert store.add_work("github-comment:2", "f", ttl=60)  # forgotten after its ttl


def test_a_key_is_claimed_once_until_its_ttl_runs_out(store: JobStore) -> None:
    """Idempotency keys (deliveries, announcements): the first claimant holds the key and every
    later one is told who holds it, on the loop (the webhooks) as off it, until the ttl ends."""
    assert store.claim_key("delivery:1", "first", ttl=60) == "first"
    assert store.claim_key("delivery:1", "second", ttl=60) == "first"
    assert store.claim_key("delivery:3", "brief", ttl=0.2) == "brief"
    time.sleep(0.3)  # nothing to wait on: the key's time runs out

    async def on_the_loop() -> tuple[str, list[str], str]:
        try:
            again = await store.claim_key_async("delivery:1", "third", ttl=60)
            held = await asyncio.gather(*(store.claim_key_async("delivery:2", f"n{i}", ttl=60)
                                          for i in range(8)))
            return again, held, await store.claim_key_async("delivery:3", "later", ttl=60)
        finally:
            await store.close_async()

    again, held, later = asyncio.run(on_the_loop())
    assert again == "first" and later == "later"
    assert len(set(held)) == 1 and held[0] in {f"n{i}" for i in range(8)}

    # Taken back once (a one-use token); an expired or unknown key is not there to take.
    assert store.take_key("delivery:1") == "first" and store.take_key("delivery:1") is None
    assert store.claim_key("delivery:1", "anew", ttl=60) == "anew"
    assert store.claim_key("delivery:4", "brief", ttl=0.2) == "brief"
    time.sleep(0.3)
    assert store.take_key("delivery:4") is None and store.take_key("never") is None


def test_a_shared_document_is_kept_replaced_and_dropped(store: JobStore) -> None:
    assert store.view("doc") is None
    store.save_view("doc", "one")
    store.save_view("doc", "two")
    assert store.view("doc") == "two"
    store.drop_view("doc")
    store.drop_view("doc")  # dropping what is gone is no error
    assert store.view("doc") is None
