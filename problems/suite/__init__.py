"""A procedurally generated program-synthesis suite, shipped with the code (no download).

The embedded default training set of the RL pipeline and its learning test: short programs (about
30-90 characters) that a tiny byte-level model can learn on a CPU, each determined exactly by its
statement. A problem applies a pipeline of 1-3 primitive integer operations (``add 3``,
``multiply by 2``, ``modulo 4``, ``square``, ...; optionally after reducing a list with ``sum``,
``largest``, ``smallest`` or ``count``) in one of two I/O styles, stdio or call-based
(``def f(n):``). See ``ops`` (the vocabulary), ``render`` (statements, programs, tests),
``build`` (splits: train = SFT + RL, and held-out unseen combinations), ``variant`` (the tests-only
variant: primitives that training shows only through tests, and held-out groups) and ``export``
(APPS folders and native JSONL)::

    from problems.suite import SuiteConfig, load_suite
    suite = load_suite(SuiteConfig(seed=0))
    suite.sft, suite.rl, suite.train, suite.held_out   # lists of problems.Problem
"""

from .build import (
    LEVEL_WEIGHTS,
    SPLITS,
    Suite,
    SuiteCapacityError,
    SuiteConfig,
    build_suite,
    count_problems,
    load_suite,
)
from .export import export_apps, export_jsonl
from .ops import Op, Pipeline
from .render import FN_NAME, canonical_program

__all__ = [
    "FN_NAME",
    "LEVEL_WEIGHTS",
    "SPLITS",
    "Op",
    "Pipeline",
    "Suite",
    "SuiteCapacityError",
    "SuiteConfig",
    "build_suite",
    "canonical_program",
    "count_problems",
    "export_apps",
    "export_jsonl",
    "load_suite",
]
