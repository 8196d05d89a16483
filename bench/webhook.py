"""Benchmark: how fast `wasmbot serve` acknowledges a pull request comment with five commands.

    python3 bench/webhook.py [--comments 10] [--tree PATH]

GitHub counts a delivery as failed when the webhook has not answered within 10 s.  This posts
signed ``issue_comment`` deliveries, one at a time, to a real `wasmbot serve` (embedded store,
no worker; GitHub's REST API is the local stand-in from tests/githubapi.py) with GitHub writes
paced as in production (``github_write_interval`` 1 s): comments with five ``/wasm`` commands,
interleaved with comments without a command (the same-run baseline: verified, parsed, nothing
to do).  Figures: median and max acknowledgement in milliseconds and the median's ratio to the
baseline; then how long until every five-command comment had its one reply.  ``--tree`` serves
another checkout (e.g. the code before issue 19) for a before/after figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

from githubapi import TOKEN, WEBHOOK_SECRET, GitHubStandIn, webhook_headers  # noqa: E402
from serving import serve  # noqa: E402

REPO = "Codertocat/Hello-World"
PAYLOADS = ROOT / "tests" / "testdata" / "github"
FIVE = ["/wasm help", "/wasm help build", "/wasm jobs", "/wasm status", "/wasm frobnicate now"]


def comment(api: GitHubStandIn, body: str) -> dict[str, object]:
    """An ``issue_comment`` delivery (the published payload) for a new comment on pull request 2."""
    data = json.loads((PAYLOADS / "issue_comment" / "created.json").read_text())
    stored = api.add_comment(REPO, 2, body, "octocat")
    data["issue"] |= {"number": 2, "pull_request": {"url": f"{api.url}/repos/{REPO}/pulls/2"}}
    data["comment"] |= {"id": stored["id"], "body": body, "author_association": "MEMBER"}
    data["comment"]["user"] |= {"login": "octocat", "type": "User"}
    data["sender"] |= {"login": "octocat", "type": "User"}
    return data


def stand_in() -> tuple[GitHubStandIn, dict[str, str]]:
    """GitHub's REST API (started, with pull request 2 open) and the settings that point
    `wasmbot serve` at it; the caller stops it."""
    api = GitHubStandIn()
    api.start()
    api.add_repo(REPO, {"README.md": b"# Hello\n"})
    pr = json.loads((PAYLOADS / "pull_request" / "opened.json").read_text())
    api.add_pull(pr | {"pull_request": pr["pull_request"] | {"number": 2}})
    return api, {"GITHUB_WEBHOOK_SECRET": WEBHOOK_SECRET, "GITHUB_TOKEN": TOKEN, "GITHUB_API_URL": api.url}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comments", type=int, default=10)
    parser.add_argument("--tree", type=Path, default=ROOT, help="the checkout to serve (default: this one)")
    args = parser.parse_args()
    api, settings = stand_in()
    with tempfile.TemporaryDirectory(prefix="wasmbot-bench-webhook-") as tmp, \
            serve(tmp, args.tree, settings) as url:
        try:

            def acked(body: str) -> float:
                raw = json.dumps(comment(api, body)).encode()
                headers = webhook_headers("issue_comment", raw, delivery=str(uuid.uuid4()))
                started = time.perf_counter()
                answer = requests.post(f"{url}/github/webhook", data=raw, headers=headers, timeout=60)
                answer.raise_for_status()
                return (time.perf_counter() - started) * 1000

            acked("warm-up, no command")
            started = time.perf_counter()
            samples: dict[str, list[float]] = {"no command": [], "five commands": []}
            for _ in range(args.comments):  # interleaved, so that load changes hit both alike
                samples["no command"].append(acked("looks good to me"))
                samples["five commands"].append(acked("Some questions:\n" + "\n".join(FIVE)))
            print(f"wasmbot serve ({args.tree}) on {url}; {args.comments} comments each, one at a time")
            print(f"{'comment':<16}{'median ms':>10}{'max ms':>10}{'ratio':>8}")
            base = statistics.median(samples["no command"])
            for name, ms in samples.items():
                median = statistics.median(ms)
                print(f"{name:<16}{median:>10.1f}{max(ms):>10.1f}{median / base:>8.1f}")

            def answered(a: GitHubStandIn) -> bool:
                return sum(c["user"]["type"] == "Bot" and c["_issue"] == (REPO, 2)
                           for c in a.comments.values()) >= args.comments
            api.wait_for(answered, timeout=600)
            replies = [c for c in api.comments.values() if c["user"]["type"] == "Bot"]
            most = max(c["body"].count("> /wasm") for c in replies)
            print(f"{len(replies)} replies posted ({most} answers in the largest), the last "
                  f"{time.perf_counter() - started:.1f} s after the first delivery")
        finally:
            api.stop()


if __name__ == "__main__":
    main()
