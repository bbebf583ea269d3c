"""Building the suite: a seeded, deterministic draw of train, SFT/RL and held-out problems.

Problems per level follow ``LEVEL_WEIGHTS`` (easy 1 : medium 2 : hard 2, over the configured
levels). A problem is a pipeline in one I/O style; no (pipeline, style) pair occurs twice.

Held-out problems are *unseen combinations*: their pipelines (operation sequences with
constants, reducer included) occur in no train problem **in any I/O style**, while every primitive
(with its constant) they use occurs in some train problem, and in some SFT problem when the SFT
split is not empty (so its code line has been shown). The held-out pipelines are drawn first, each
used in every configured style, and excluded from train; a held-out pipeline using a primitive that
the SFT problems (or train) happen to miss is then replaced by one drawn from their primitives.

Train is partitioned, per (level, style) stratum, into the SFT split (``metadata["split"] ==
"sft"``: solutions for the supervised warm start) and the RL split (``"rl"``: with
``withhold_rl_solutions`` these carry no solutions, so only execution can teach them).
With ``tests_only_primitives`` (the tests-only variant, ``variant``), train problems using a
tests-only primitive are all RL problems without solutions, the SFT choice skips them, and every
held-out primitive occurs in an SFT problem or is tests-only; held-out problems record their group
in ``metadata["group"]`` and train problems ``metadata["tests_only"]``.
Task ids are ``suite-train-NNNNN`` and ``suite-held_out-NNNNN`` (valid APPS folder names), numbered
after a seeded shuffle. Separate random streams (seeded by ``seed``) draw the held-out set, the
train set, the SFT choice and the tests-only primitives.
"""

from __future__ import annotations

import logging
import math
import random
from collections import Counter
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from problems import Problem

from .ops import Level, Pipeline, random_pipeline
from .render import Style, draw_inputs, make_problem
from .variant import draw_tests_only, held_out_group

__all__ = [
    "LEVEL_WEIGHTS",
    "SPLITS",
    "Suite",
    "SuiteCapacityError",
    "SuiteConfig",
    "build_suite",
    "count_problems",
    "load_suite",
]

log = logging.getLogger(__name__)

LEVEL_WEIGHTS: dict[str, int] = {"easy": 1, "medium": 2, "hard": 2}
SPLITS = ("train", "held_out", "sft", "rl", "all")
SplitName = Literal["train", "held_out", "sft", "rl", "all"]
MAX_DRAWS = 500
"""pipeline draws tried for one problem before the level counts as exhausted"""


class SuiteConfig(BaseModel):
    """The generated program-synthesis suite; the same configuration gives the same problems."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    seed: int = 0
    """seeds every draw: pipelines, test inputs, the SFT/RL partition and the task-id order"""
    train_size: int = Field(default=400, ge=1, le=20_000)
    """train problems (SFT + RL)"""
    held_out_size: int = Field(default=300, ge=0, le=5_000)
    """held-out problems: pipelines never seen in train, built from primitives seen in train"""
    sft_fraction: float = Field(default=0.5, ge=0.0, le=1.0)
    """share of each (level, style) stratum of train in the SFT split; the rest is RL-only"""
    styles: tuple[Style, ...] = Field(default=("stdio", "call"), min_length=1)
    """I/O styles: stdio (read stdin, print) and call (``def f(n)``, return)"""
    levels: tuple[Level, ...] = Field(default=("easy", "medium", "hard"), min_length=1)
    """easy, medium, hard: 1, 2, 3 integer operations; weighted 1 : 2 : 2"""
    list_fraction: float = Field(default=0.2, ge=0.0, le=1.0)
    """chance that a drawn pipeline reads a list of integers and reduces it first (sum, ...)"""
    example_tests: int = Field(default=2, ge=0, le=10)
    """example tests per problem (Problem.example_tests)"""
    hidden_tests: int = Field(default=5, ge=1, le=20)
    """hidden tests per problem (Problem.hidden_tests)"""
    withhold_rl_solutions: bool = True
    """RL-split problems carry no solutions (canonical_program still rebuilds them)"""
    tests_only_primitives: int = Field(default=0, ge=0, le=40)
    """the tests-only variant (problems/suite/variant.py): this many primitives with a constant
    (``mod 4``), drawn with the seed, occur in training only in RL problems, never with a solution;
    held-out problems are grouped by it in ``metadata["group"]``. 0: off (the default suite)"""

    @model_validator(mode="after")
    def _variant_needs_sft(self) -> SuiteConfig:
        if self.tests_only_primitives and self.sft_fraction == 0:
            raise ValueError(
                "tests_only_primitives needs an SFT split to compare with: raise sft_fraction above 0"
            )
        return self

    @field_validator("styles", "levels")
    @classmethod
    def _distinct(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError(f"repeated entries in {list(value)}")
        return value


class SuiteCapacityError(ValueError):
    """A level has too few distinct (pipeline, style) problems for the requested sizes."""


@dataclass(frozen=True)
class Suite:
    config: SuiteConfig
    train: list[Problem]
    """SFT and RL problems, in task-id order"""
    held_out: list[Problem]
    tests_only: frozenset[str] = frozenset()
    """the tests-only primitives (specs) of the variant; empty when it is off"""

    @property
    def sft(self) -> list[Problem]:
        return [p for p in self.train if p.metadata["split"] == "sft"]

    @property
    def rl(self) -> list[Problem]:
        return [p for p in self.train if p.metadata["split"] == "rl"]

    def split(self, name: SplitName) -> list[Problem]:
        """``train``, ``held_out``, ``sft``, ``rl`` or ``all`` (train then held-out)."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {', '.join(SPLITS)}")
        if name == "all":
            return self.train + self.held_out
        return list(getattr(self, name))


@dataclass
class _Group:
    """One pipeline with test inputs for each style it is used in."""

    pipeline: Pipeline
    inputs: dict[Style, list[Any]]

    @property
    def key(self) -> tuple[str, ...]:
        return tuple(self.pipeline.specs)

    @property
    def style(self) -> Style:
        """The style of a train group (one style each)."""
        return next(iter(self.inputs))


def _level_counts(total: int, levels: tuple[str, ...]) -> dict[str, int]:
    """``total`` split over ``levels`` by ``LEVEL_WEIGHTS`` (largest remainders get the rest)."""
    weights = {level: LEVEL_WEIGHTS[level] for level in levels}
    exact = {level: total * w / sum(weights.values()) for level, w in weights.items()}
    counts = {level: math.floor(value) for level, value in exact.items()}
    for level in sorted(levels, key=lambda lv: counts[lv] - exact[lv])[: total - sum(counts.values())]:
        counts[level] += 1
    return counts


def _draw(
    rng: random.Random,
    config: SuiteConfig,
    level: str,
    styles: tuple[Style, ...],
    taken: Container[tuple[str, ...]],
    allowed: frozenset[str] | None = None,
) -> _Group:
    """A meaningful pipeline of ``level`` whose key is not in ``taken``, with test inputs per style;
    ``allowed`` limits the primitives (specs) it may use."""
    count = config.example_tests + config.hidden_tests
    for _ in range(MAX_DRAWS):
        pipeline = random_pipeline(rng, level, rng.random() < config.list_fraction, allowed)
        if pipeline is None or tuple(pipeline.specs) in taken:
            continue
        inputs: dict[Style, list[Any]] = {}
        for style in styles:
            values = draw_inputs(rng, pipeline, count, config.example_tests)
            if values is None:
                break
            inputs[style] = values
        else:
            return _Group(pipeline, inputs)
    raise SuiteCapacityError(
        f"could not draw another distinct {level} problem ({'/'.join(styles)}) in {MAX_DRAWS} tries: "
        f"the level has too few pipelines for train_size={config.train_size}, "
        f"held_out_size={config.held_out_size}; lower them, or allow more levels or list inputs"
    )


def _held_out_groups(rng: random.Random, config: SuiteConfig) -> dict[str, list[_Group]]:
    """Per level, enough distinct pipelines to give ``held_out_size`` problems in every style."""
    groups: dict[str, list[_Group]] = {}
    for level, count in _level_counts(config.held_out_size, config.levels).items():
        keys: set[tuple[str, ...]] = set()
        groups[level] = []
        for _ in range(math.ceil(count / len(config.styles))):
            group = _draw(rng, config, level, config.styles, keys)
            keys.add(group.key)
            groups[level].append(group)
    return groups


def _train_groups(rng: random.Random, config: SuiteConfig, reserved: set[tuple[str, ...]]) -> list[_Group]:
    """One group (one style) per train problem; styles alternate within each level."""
    groups: list[_Group] = []
    taken = {style: set(reserved) for style in config.styles}  # keys a new problem may not have
    for level, count in _level_counts(config.train_size, config.levels).items():
        for index in range(count):
            style = config.styles[index % len(config.styles)]
            group = _draw(rng, config, level, (style,), taken[style])
            taken[style].add(group.key)
            groups.append(group)
    return groups


def _repair_held_out(
    rng: random.Random,
    config: SuiteConfig,
    held: dict[str, list[_Group]],
    train: list[_Group],
    teach: list[_Group],
    tests_only: frozenset[str],
) -> None:
    """Replace held-out pipelines that use a primitive missing from ``teach`` (the SFT problems, or
    all of train without any) and not ``tests_only`` (those occur in RL problems); rare at useful
    sizes without the variant."""
    covered = frozenset(spec for group in teach for spec in group.key) | tests_only
    taken = {group.key for group in train} | {group.key for groups in held.values() for group in groups}
    for level, groups in held.items():
        for index, group in enumerate(groups):
            if set(group.key) <= covered:
                continue
            log.debug(
                "held-out pipeline %s uses a primitive no SFT (or train) problem has: redrawn", group.key
            )
            groups[index] = _draw(rng, config, level, config.styles, taken, covered)
            taken.add(groups[index].key)


def _sft_indices(
    rng: random.Random, config: SuiteConfig, groups: list[_Group], tests_only: frozenset[str]
) -> set[int]:
    """Indices of the SFT problems: ``sft_fraction`` of each (level, style) stratum, rounded, never
    one using a ``tests_only`` primitive (a stratum with too few others gets fewer)."""
    strata: dict[tuple[str, str], list[int]] = {}
    for index, group in enumerate(groups):
        strata.setdefault((group.pipeline.level, group.style), []).append(index)
    chosen: set[int] = set()
    for stratum in sorted(strata):
        members = strata[stratum]
        rng.shuffle(members)
        wanted = math.floor(config.sft_fraction * len(members) + 0.5)
        eligible = [index for index in members if tests_only.isdisjoint(groups[index].key)]
        if len(eligible) < wanted:
            log.info("stratum %s: %d SFT problems instead of %d (tests-only)", stratum, len(eligible), wanted)
        chosen.update(eligible[:wanted])
    return chosen


def _train_problems(
    config: SuiteConfig, groups: list[_Group], sft: set[int], tests_only: frozenset[str]
) -> list[Problem]:
    problems = []
    for index, group in enumerate(groups):
        split = "sft" if index in sft else "rl"
        metadata: dict[str, Any] = {"split": split, "seed": config.seed}
        hidden = bool(tests_only.intersection(group.key))  # the variant: never with a solution
        if config.tests_only_primitives:
            metadata["tests_only"] = hidden
        problems.append(
            make_problem(
                f"suite-train-{index:05d}",
                group.pipeline,
                group.style,
                group.inputs[group.style],
                config.example_tests,
                metadata,
                with_solution=split == "sft" or not (config.withhold_rl_solutions or hidden),
            )
        )
    return problems


def _held_out_metadata(config: SuiteConfig, group: _Group, tests_only: frozenset[str]) -> dict[str, Any]:
    metadata: dict[str, Any] = {"split": "held_out", "seed": config.seed}
    if config.tests_only_primitives:
        metadata["group"] = held_out_group(group.key, tests_only)
    return metadata


def _held_out_problems(
    rng: random.Random, config: SuiteConfig, held: dict[str, list[_Group]], tests_only: frozenset[str]
) -> list[Problem]:
    counts = _level_counts(config.held_out_size, config.levels)
    chosen = [
        (group, style)
        for level, groups in held.items()
        for group, style in [(g, s) for g in groups for s in config.styles][: counts[level]]
    ]
    rng.shuffle(chosen)
    return [
        make_problem(
            f"suite-held_out-{index:05d}",
            group.pipeline,
            style,
            group.inputs[style],
            config.example_tests,
            _held_out_metadata(config, group, tests_only),
        )
        for index, (group, style) in enumerate(chosen)
    ]


def _resolve(config: SuiteConfig | Mapping[str, Any] | None, fields: Mapping[str, Any]) -> SuiteConfig:
    if isinstance(config, SuiteConfig) and not fields:
        return config
    base = config.model_dump() if isinstance(config, SuiteConfig) else dict(config or {})
    return SuiteConfig.model_validate({**base, **fields})


def build_suite(config: SuiteConfig | Mapping[str, Any] | None = None, /, **fields: Any) -> Suite:
    """The suite of ``config`` (defaults when None) with ``fields`` overriding it, e.g.
    ``build_suite(seed=1, train_size=200)``. SuiteCapacityError when a level runs out of problems."""
    config = _resolve(config, fields)
    held = _held_out_groups(random.Random(f"coderl-suite:{config.seed}:held_out"), config)
    reserved = {group.key for groups in held.values() for group in groups}
    train_rng = random.Random(f"coderl-suite:{config.seed}:train")
    train_groups = _train_groups(train_rng, config, reserved)
    train_rng.shuffle(train_groups)  # task-id order
    tests_only = draw_tests_only(
        random.Random(f"coderl-suite:{config.seed}:tests_only"),
        config.tests_only_primitives,
        [group.key for group in train_groups],
    )
    sft = _sft_indices(random.Random(f"coderl-suite:{config.seed}:sft"), config, train_groups, tests_only)
    teach = [group for index, group in enumerate(train_groups) if index in sft] or train_groups
    _repair_held_out(train_rng, config, held, train_groups, teach, tests_only)
    train = _train_problems(config, train_groups, sft, tests_only)
    order_rng = random.Random(f"coderl-suite:{config.seed}:order")
    held_out = _held_out_problems(order_rng, config, held, tests_only)
    suite = Suite(config, train, held_out, tests_only)
    log.info(
        "suite seed %d: %d train (%d sft, %d rl), %d held-out problems",
        config.seed,
        len(train),
        len(suite.sft),
        len(suite.rl),
        len(held_out),
    )
    return suite


def load_suite(config: SuiteConfig | Mapping[str, Any] | None = None) -> Suite:
    """The embedded suite of ``config`` (a SuiteConfig, its fields as a mapping, e.g. a section of a
    pipeline configuration, or None for the defaults), as ``load_problems`` gives a problem set from
    files; nothing is read or downloaded."""
    return build_suite(config)


def count_problems(problems: Iterable[Problem]) -> dict[str, int]:
    """``total`` and counts per level, style and input kind (keys in that order)."""
    problems = list(problems)
    counts: Counter[str] = Counter()
    for problem in problems:
        counts[str(problem.difficulty)] += 1
        counts[problem.metadata["style"]] += 1
        counts[problem.metadata["input"]] += 1
    keys = ["easy", "medium", "hard", "stdio", "call", "int", "list"]
    return {"total": len(problems), **{key: counts[key] for key in keys}}
