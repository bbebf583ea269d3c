"""The shipped executor worker around a zero-cost stand-in for the executor, for profile 1 of the
executor service benchmark: what is left to time is the worker loop, Redis and pydantic.

    python -m bench.service.stub_worker REDIS_URL SLOTS [KEY=VALUE ...]

``ExecutorWorker`` runs unchanged; ``StubExecutor`` is handed to it through its public ``executor``
parameter. KEY=VALUE are ``WorkerConfig`` settings, as ``python -m executor --set`` takes them.
"""

from __future__ import annotations

import signal
import sys
from collections import Counter
from types import SimpleNamespace
from typing import cast

from coderl.config import load_config
from coderl.execution import ExecutionResult
from coderl.outcomes import Verdict
from executor.config import ExecutorConfig
from executor.engine import Executor
from executor.service_config import WorkerConfig
from executor.worker import ExecutorWorker
from problems import Problem


def passed_result() -> ExecutionResult:
    return ExecutionResult(verdict=Verdict.PASSED, tests_total=1)


class StubExecutor:
    """Stands in for ``Executor`` (the attributes a worker reads): a fixed result, no work."""

    def __init__(self, workers: int) -> None:
        self.config = ExecutorConfig(workers=workers)
        self.pool = SimpleNamespace(counters=Counter())
        self.counters: Counter[str] = Counter()

    def execute(self, problem: Problem, program: str, which: str = "hidden") -> ExecutionResult:
        return passed_result()

    def close(self) -> None:
        pass


def main(argv: list[str] | None = None) -> int:
    url, slots, *settings = sys.argv[1:] if argv is None else argv
    config = load_config(WorkerConfig, None, [f"redis_url={url}", f"executor.workers={slots}", *settings])
    worker = ExecutorWorker(config, executor=cast(Executor, StubExecutor(int(slots))))
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: worker.stop())
    worker.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
