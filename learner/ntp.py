"""The next-token-prediction (NTP) objective of CodeRL's backbone (CodeT5-large-ntp-py): a pivot
is drawn uniformly in a code sample, the code before it goes to the encoder and the rest is the
decoder's target, so an encoder-decoder learns to continue code it is shown.

As a warm-start objective (``sft.objective = "ntp"``, or ``"program+ntp"`` beside the
problem-to-program pairs) over the ground-truth programs or any directories of Python files
(``sft.ntp_paths``). The pivot is drawn again for every step a sample is used, from a seeded RNG
keyed on (seed, step, index), so a resumed warm start draws what the first one would have.
Pretraining drew the pivot in 10-90% of the sample (../shared/reference/coderl.md, section 3.4):
``pivot_range``.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from coderl.problem import Problem

__all__ = ["CodeSample", "code_samples", "draw_pivot", "ground_truth_texts", "ntp_split", "python_files"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CodeSample:
    """A stretch of code for the NTP objective, as the policy's token ids (no special tokens)."""

    task_id: str
    code_ids: list[int]


def draw_pivot(length: int, rng: random.Random, low: float = 0.1, high: float = 0.9) -> int:
    """A pivot in [max(1, ceil(low * L)), min(L - 1, floor(high * L))], uniformly: at least one
    token on each side. ``length`` >= 2."""
    if length < 2:
        raise ValueError(f"an NTP sample needs at least 2 tokens, got {length}")
    first = max(1, math.ceil(low * length))
    last = min(length - 1, math.floor(high * length))
    if last < first:
        first = last = max(1, min(length - 1, length // 2))
    return rng.randint(first, last)


def ntp_split(code_ids: Sequence[int], pivot: int, eos_id: int) -> tuple[list[int], list[int]]:
    """(encoder input, decoder target): code[:pivot] + EOS and code[pivot:] + EOS, as T5 encodes
    a source and ends a target."""
    if not 0 < pivot < len(code_ids):
        raise ValueError(f"pivot {pivot} outside 1..{len(code_ids) - 1}")
    return [*code_ids[:pivot], eos_id], [*code_ids[pivot:], eos_id]


def python_files(paths: Sequence[str]) -> list[tuple[str, str]]:
    """(name, text) of every ``*.py`` file under the given files or directories, sorted; files
    that are not UTF-8 are skipped with a warning."""
    found: list[tuple[str, str]] = []
    for given in paths:
        root = Path(given)
        if not root.exists():
            raise FileNotFoundError(f"sft.ntp_paths: {root} does not exist")
        files = [root] if root.is_file() else sorted(root.rglob("*.py"))
        for file in files:
            try:
                found.append((str(file), file.read_text(encoding="utf-8")))
            except UnicodeDecodeError:
                log.warning("skipping %s for NTP: not UTF-8", file)
    return found


def code_samples(
    texts: Sequence[tuple[str, str]], encode: object, window: int, min_tokens: int = 8
) -> list[CodeSample]:
    """Each text tokenised (``encode(text) -> ids``) and cut into windows of at most ``window``
    tokens (the encoder and decoder lengths together); windows shorter than ``min_tokens`` are
    dropped (nothing to predict)."""
    assert callable(encode)
    samples = []
    for name, text in texts:
        ids = list(encode(text))
        for start in range(0, len(ids), window):
            piece = ids[start : start + window]
            if len(piece) >= min_tokens:
                samples.append(CodeSample(f"{name}@{start}", piece))
    return samples


def ground_truth_texts(problems: Sequence[Problem], max_per_problem: int | None) -> list[tuple[str, str]]:
    """The problems' ground-truth programs as NTP texts."""
    return [
        (f"{problem.task_id}/solution{index}", program)
        for problem in problems
        for index, program in enumerate(problem.solutions[:max_per_problem])
    ]
