"""Demo samples for the quickstart: every packaged HumanEval problem with its canonical
completion and broken variants, so one run shows every main verdict.

    python -m executor.demo --out runs/demo/samples.jsonl
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from problems import load_problems

BROKEN_COMPLETIONS = {
    "wrong answer": "    return None\n",
    "compile error": "    return (\n",
    "runtime error": "    return undefined_helper()\n",
}
SLOW_COMPLETION = "    while True:\n        pass\n"
SLOW_EVERY = 41  # a few timeouts only: each costs the full CPU limit


def demo_samples() -> list[dict[str, str]]:
    samples = []
    for number, problem in enumerate(load_problems("humaneval")):
        canonical = problem.solutions[0][len(problem.completion_prefix) :]
        samples.append({"task_id": problem.task_id, "completion": canonical})
        for completion in BROKEN_COMPLETIONS.values():
            samples.append({"task_id": problem.task_id, "completion": completion})
        if number % SLOW_EVERY == 0:
            samples.append({"task_id": problem.task_id, "completion": SLOW_COMPLETION})
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="samples JSONL to write")
    args = parser.parse_args(argv)
    samples = demo_samples()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(sample) + "\n" for sample in samples))
    print(f"wrote {len(samples)} demo samples to {args.out}")  # noqa: T201 - CLI output
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
