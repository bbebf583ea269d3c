"""Which cores a sandbox pool pins its sandboxes to (executor/sandbox/pool.py)."""

from __future__ import annotations

from typing import Any

from executor.config import SandboxConfig
from executor.sandbox.pool import SandboxPool


class FakeContainer:
    def __init__(self, cpuset: str) -> None:
        self.attrs = {"Labels": {"org.coderl.sandbox.core": cpuset}}


class FakeClient:
    def __init__(self, ncpu: int, pinned: list[str]) -> None:
        self.ncpu, self.pinned = ncpu, pinned

    def info(self) -> dict[str, Any]:
        return {"NCPU": self.ncpu}

    def containers_list(self, **_: Any) -> list[FakeContainer]:
        return [FakeContainer(cpuset) for cpuset in self.pinned]

    @property
    def containers(self) -> Any:
        client = self

        class Containers:
            def list(self, **kwargs: Any) -> list[FakeContainer]:
                return client.containers_list(**kwargs)

        return Containers()


def cores_of(ncpu: int, pinned: list[str]) -> list[int]:
    pool = SandboxPool.__new__(SandboxPool)
    pool.config = SandboxConfig()
    pool._client = FakeClient(ncpu, pinned)
    return pool._cores()


def test_least_loaded_cores_first() -> None:
    # Other pools hold core 0 twice, core 1 three times, core 2 once (and one sandbox unpinned).
    for _ in range(10):
        assert cores_of(4, ["0", "0", "1", "1", "1", "2", "0-3", ""]) == [3, 2, 0, 1]


def test_every_core_is_offered_once() -> None:
    for _ in range(20):
        assert sorted(cores_of(8, [])) == list(range(8))
