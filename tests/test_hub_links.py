"""Chat messages link to the hub: the job's page, the module it pushed or deploys, the
environment it changes (bot/hublinks.py), in Slack messages, GitHub check runs and the pull
request comment; and a job's hub page links to its module and environment pages."""

from __future__ import annotations

import json
from pathlib import Path

from githubapi import TOKEN, GitHubStandIn
from hubhelp import make_job

from bot.github.reporter import Reporter
from bot.hub.jobs import links
from bot.hublinks import job_links
from bot.slack import blocks
from workers.config import Settings
from workers.jobs import Job, Stage, State
from workers.store import SqliteStore

PUBLIC = "https://wasmbot.example"
REGISTRY = "registry.example:5000"


def deploy_job(target: str = f"{REGISTRY}/team/edge-filter:v1") -> Job:
    return Job(requester="slack:U1", origin="slack:C1", text=f"/wasm deploy {target} --env staging", source_root="/",
               command={"name": "deploy", "target": target, "env": "staging"}, stages=[Stage(name="deploy")])


def test_links_name_the_job_module_and_environment_pages(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, public_url=f"{PUBLIC}/", default_registry=REGISTRY)
    job = deploy_job()
    assert job_links(settings, job) == [
        ("job page", f"{PUBLIC}/hub/jobs/{job.id}"),
        ("module", f"{PUBLIC}/hub/modules/team/edge-filter"),
        ("environment staging", f"{PUBLIC}/hub/environments/staging")]
    elsewhere = deploy_job("ghcr.io/someone/filter:v1")  # not in the hub's catalogue: no module page
    assert [label for label, _ in job_links(settings, elsewhere)] == ["job page", "environment staging"]
    by_job_id = deploy_job("0123456789ab")
    assert [label for label, _ in job_links(settings, by_job_id)] == ["job page", "environment staging"]
    built = Job(requester="u", origin="cli", text="build .", source_root="/", command={"name": "build", "source": "."},
                stages=[Stage(name="build")], artifacts={"image": f"{REGISTRY}/team/edge-filter:v2"})
    assert job_links(settings, built)[1] == ("module", f"{PUBLIC}/hub/modules/team/edge-filter")
    assert job_links(Settings(data_dir=tmp_path), job) == []  # no public URL: no links, as for logs
    # The hub's own job page links to the same pages, by path.
    assert links(job, settings)[:2] == [("Module", "/hub/modules/team/edge-filter"),
                                        ("Environment staging", "/hub/environments/staging")]


def test_the_slack_job_message_links_to_the_hub(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, public_url=PUBLIC, default_registry=REGISTRY)
    job = deploy_job()
    message = blocks.job_message(job, f"{PUBLIC}/jobs/{job.id}/log?sig=00", links=job_links(settings, job))
    footer = next(b for b in message if "full log" in json.dumps(b))["elements"][0]["text"]
    assert footer == (f"<{PUBLIC}/hub/jobs/{job.id}|job page> · <{PUBLIC}/hub/modules/team/edge-filter|module> · "
                      f"<{PUBLIC}/hub/environments/staging|environment staging> · "
                      f"<{PUBLIC}/jobs/{job.id}/log?sig=00|full log>")
    assert len(blocks.job_message(job, None)) == len(message) - 1  # no links, no footer


def test_github_check_run_and_pull_request_comment_link_to_the_job_page(tmp_path: Path, github_api: GitHubStandIn) -> None:
    repo = "acme/edge-filter"
    sha = github_api.add_repo(repo, {"README.md": b"# edge\n"})
    settings = Settings(data_dir=tmp_path, public_url=PUBLIC, github_token=TOKEN, github_api_url=github_api.url,
                        github_write_interval=0)
    store = SqliteStore(tmp_path / "jobs.sqlite")
    job = make_job(store, origin=f"github:{repo}#7", state=State.QUEUED,
                   reports={"github": {"repo": repo, "sha": sha, "pr": "7", "ref": "feature"}})
    reporter = Reporter(settings, store, log_url=lambda job: f"{PUBLIC}/jobs/{job.id}/log?sig=00")
    try:
        reporter.publish(job)
    finally:
        reporter.threads.shutdown()
    (run,) = github_api.check_runs.values()
    assert run["details_url"] == f"{PUBLIC}/hub/jobs/{job.id}"
    (comment,) = github_api.comments_on(repo, 7)
    assert f"(job [`{job.id}`]({PUBLIC}/hub/jobs/{job.id}), [details]({run['html_url']}))" in comment["body"]
