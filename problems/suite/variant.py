"""The tests-only variant of the suite: primitives that training shows only through unit tests.

With ``SuiteConfig.tests_only_primitives = k > 0``, ``k`` primitives with a constant (``"mod 4"``,
``"add 7"``), drawn with the seed among those the train problems use, are *tests-only*: every train
problem whose pipeline uses one goes to the RL split and carries no solution (whatever
``withhold_rl_solutions`` says), so no ground-truth program ever shows their code line with that
constant. Each tests-only primitive's operation keeps at least one constant outside the set that
train uses, so the shape of its code line (``n = n % k``) can usually still be learned from solved
problems (unless every train problem using that constant also uses a tests-only primitive); what
only the tests can teach is the pairing of that statement phrase with that constant.

Held-out problems are then split into ``GROUPS``, stored as ``metadata["group"]``:

- ``seen_with_solutions``: every primitive occurs in some SFT problem (with its solution);
- ``tests_only``: at least one primitive is tests-only (it occurs in train only in RL problems).

Every held-out pipeline is still an unseen combination, so there is no third, "unseen composition"
group: all held-out problems are unseen compositions, and the groups say which primitives of them
training could show with a program. The variant draws from its own random stream
(``coderl-suite:SEED:tests_only``), so with ``k = 0`` the suite is the default one, byte for byte.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable

from .ops import Op

__all__ = ["GROUPS", "SEEN_WITH_SOLUTIONS", "TESTS_ONLY", "draw_tests_only", "held_out_group"]

SEEN_WITH_SOLUTIONS = "seen_with_solutions"
TESTS_ONLY = "tests_only"
GROUPS = (SEEN_WITH_SOLUTIONS, TESTS_ONLY)
"""the held-out groups of the variant, in report order"""


def draw_tests_only(rng: random.Random, count: int, train_keys: Iterable[tuple[str, ...]]) -> frozenset[str]:
    """``count`` specs with a constant, among those used in ``train_keys`` (the train pipelines),
    leaving each operation at least one of its constants used there; ValueError when fewer are
    available."""
    if count == 0:
        return frozenset()
    used = sorted({spec for key in train_keys for spec in key})
    candidates = [spec for spec in used if Op.parse(spec).k is not None]
    in_train = Counter(Op.parse(spec).name for spec in candidates)
    rng.shuffle(candidates)
    taken: Counter[str] = Counter()
    chosen: list[str] = []
    for spec in candidates:
        op = Op.parse(spec)
        if taken[op.name] + 1 >= in_train[op.name]:
            continue  # no constant of the operation left in train to show its code line with
        taken[op.name] += 1
        chosen.append(spec)
        if len(chosen) == count:
            return frozenset(chosen)
    raise ValueError(
        f"tests_only_primitives={count}: only {len(chosen)} primitives with a constant can be "
        "tests-only in this suite; lower tests_only_primitives or raise train_size"
    )


def held_out_group(specs: Iterable[str], tests_only: frozenset[str]) -> str:
    """The group of a held-out pipeline (its specs); every primitive of a held-out pipeline that is
    not tests-only occurs in an SFT problem (``build``'s construction guarantees it)."""
    return TESTS_ONLY if tests_only.intersection(specs) else SEEN_WITH_SOLUTIONS
