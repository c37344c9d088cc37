"""Locust scenarios for any running hashrank (or anything with the same /score and /rank API).

One user class per scenario; every user sends its next request as soon as the last one answers
(closed loop, like loadtest.loadgen), cycling through the same STS-B / WikiQA bodies the benchmark uses.

    $ locust -f loadtest/locustfile.py --host http://127.0.0.1:8080                  # web UI on :8089
    $ locust -f loadtest/locustfile.py --host http://127.0.0.1:8080 --headless \\
          -u 8 -r 8 -t 30s --csv /tmp/rank20 Rank20User                             # headless, one scenario

Scenarios: ScoreSmallUser (1 pair /score), ScoreBatchedUser (32 pairs /score), Rank20User, Rank100User
(1 query x 20 / x 100 WikiQA documents /rank), MixUser (the realistic mix of loadtest.workloads).
Data: ../shared/data next to the checkout, or HASHRANK_DATA_DIR.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

from locust import FastHttpUser, constant, task

from loadtest.workloads import MIX_WEIGHTS, Request, build_workloads, data_dir

WORKLOADS = build_workloads(data_dir())
_counter = itertools.count()


def send(user: FastHttpUser, workload: str) -> None:
    requests = WORKLOADS[workload].requests
    req: Request = requests[next(_counter) % len(requests)]
    # name= groups the statistics per scenario rather than per path.
    with user.client.post(
        req.path, data=req.body, headers={"Content-Type": "application/json"}, name=workload, catch_response=True
    ) as response:
        if response.status_code != 200:
            response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
            return
        body = response.json()
        got = len(body["scores"]) if req.path == "/score" else len(body["results"])
        if got != req.pairs:
            response.failure(f"{got} scores for {req.pairs} pairs")


def scenario(workload: str) -> Callable[[FastHttpUser], None]:
    """A locust task sending the next request of one workload."""

    def run(user: FastHttpUser) -> None:
        send(user, workload)

    run.__name__ = workload
    return run


class ScoreSmallUser(FastHttpUser):
    wait_time = constant(0)

    @task
    def score1(self) -> None:
        send(self, "score1")


class ScoreBatchedUser(FastHttpUser):
    wait_time = constant(0)

    @task
    def score32(self) -> None:
        send(self, "score32")


class Rank20User(FastHttpUser):
    wait_time = constant(0)

    @task
    def rank20(self) -> None:
        send(self, "rank20")


class Rank100User(FastHttpUser):
    wait_time = constant(0)

    @task
    def rank100(self) -> None:
        send(self, "rank100")


class MixUser(FastHttpUser):
    """Weighted like loadtest.workloads.MIX_WEIGHTS (mostly rank20, some /score, some rank100)."""

    wait_time = constant(0)
    tasks = {scenario(name): max(1, round(weight * 10)) for name, weight in MIX_WEIGHTS.items()}
