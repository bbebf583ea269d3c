"""Which sibling containers a compose executor worker starts again (executor/siblings.py): killed
ones (exit code 137) that have settled, at a bounded pace; never gracefully stopped ones, itself,
or other services. The real engine and compose stack: tests/docker/test_compose.py."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from executor.siblings import MIN_RESTART_INTERVAL_S, SETTLE_S, SiblingRestarter


class Container:
    def __init__(self, cid: str, exit_code: int, exited_s_ago: float, fail: bool = False) -> None:
        finished = datetime.now(UTC) - timedelta(seconds=exited_s_ago)
        stamp = finished.strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"  # the engine's nanoseconds
        self.id, self.name, self.fail, self.starts = cid, f"executor-{cid}", fail, 0
        self.attrs = {"State": {"ExitCode": exit_code, "FinishedAt": stamp, "OOMKilled": False}}

    def start(self) -> None:
        self.starts += 1
        if self.fail:
            raise RuntimeError("no such container")


class Engine:
    """The part of docker-py's client the restarter uses: exited containers by label."""

    def __init__(self, containers: list[Container]) -> None:
        self.all, self.filters = containers, []
        self.containers = self

    def list(self, all: bool, filters: dict[str, Any]) -> list[Container]:  # docker-py names it all
        self.filters.append(filters)
        return self.all


def test_only_killed_settled_siblings_are_started_and_at_a_bounded_pace() -> None:
    killed, oom = Container("a", 137, 10), Container("b", 137, 10)
    oom.attrs["State"]["OOMKilled"] = True
    stopped, terminated = Container("c", 0, 10), Container("d", 143, 10)
    just_now, me = Container("e", 137, 0), Container("me", 137, 10)
    engine = Engine([killed, oom, stopped, terminated, just_now, me])
    counters: Counter[str] = Counter()
    restarter = SiblingRestarter(engine, "proj", "executor", "me", counters)
    now = time.monotonic()

    assert restarter.check(now) == ["executor-a", "executor-b"]
    assert engine.filters[0] == {
        "label": ["com.docker.compose.project=proj", "com.docker.compose.service=executor"],
        "status": "exited",
    }
    assert (stopped.starts, terminated.starts, just_now.starts, me.starts) == (0, 0, 0, 0)
    assert counters["siblings_restarted"] == 2
    # Killed again at once (still listed as exited): not before the interval is over.
    assert restarter.check(now + 1) == []
    assert restarter.check(now + MIN_RESTART_INTERVAL_S + 1) == ["executor-a", "executor-b"]
    assert killed.starts == 2


def test_a_start_that_fails_is_logged_not_counted_and_tried_again_later() -> None:
    gone = Container("a", 137, SETTLE_S + 5, fail=True)
    counters: Counter[str] = Counter()
    restarter = SiblingRestarter(Engine([gone]), "proj", "executor", "me", counters)
    now = time.monotonic()
    assert restarter.check(now) == [] and gone.starts == 1
    assert counters["siblings_restarted"] == 0
    assert restarter.check(now + MIN_RESTART_INTERVAL_S + 1) == [] and gone.starts == 2
