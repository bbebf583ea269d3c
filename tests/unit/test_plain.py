"""executor/plain.py: program data decoded on the host without hashing anything the program
chose, so values built to collide in Python's hash cannot stall the host."""

from __future__ import annotations

import time
from typing import Any

import pytest

from coderl.problem import CompareOptions
from executor.compare import compare_value
from executor.harness.values import encode
from executor.plain import DictValue, SetValue, Unsupported, canonical_key, decode_untrusted

MERSENNE = 2**61 - 1  # hash(k * MERSENNE) == 0 for every int k: one bucket for all of them
DEFAULT = CompareOptions()


def colliding(n: int) -> list[int]:
    return [k * MERSENNE for k in range(1, n + 1)]


def test_collisions_are_real() -> None:
    assert {hash(x) for x in colliding(1000)} == {0}
    assert len({hash((x, x)) for x in colliding(100)}) == 1  # tuples of them collide too


def test_sets_and_dicts_decode_to_plain_tuples() -> None:
    decoded = decode_untrusted(encode({1, 2}))
    assert type(decoded) is SetValue and sorted(decoded.items) == [1, 2] and not decoded.frozen
    decoded = decode_untrusted(encode({"a": {frozenset({3})}}))
    assert type(decoded) is DictValue and decoded.pairs[0][0] == "a"
    assert type(decoded.pairs[0][1]) is SetValue
    assert type(decoded.pairs[0][1].items[0]) is SetValue and decoded.pairs[0][1].items[0].frozen


def _seconds(payload: Any) -> float:
    """Decode the payload twice and compare the two: the host's whole path for a returned value."""
    started = time.perf_counter()
    result = compare_value(decode_untrusted(payload), decode_untrusted(payload), DEFAULT)
    elapsed = time.perf_counter() - started
    assert result.equal, result.reason
    return elapsed


def _wire(xs: list[int], shape: str) -> Any:
    """The tagged JSON a program would send, built without hashing anything."""
    ints = [{"$int": str(x)} if x >= 2**53 else x for x in xs]
    if shape == "ints":
        return {"$set": ints}
    if shape == "frozenset":
        return {"$frozenset": ints}
    if shape == "tuples":
        return {"$set": [{"$tuple": [i, i]} for i in ints]}
    return {"$dict": [[i, i] for i in ints]}


@pytest.mark.parametrize("shape", ["ints", "frozenset", "tuples", "dict-keys"])
def test_colliding_values_cost_as_much_as_any_others(shape: str) -> None:
    # 50,000 colliding values: building a Python set of them takes about 10 s (quadratic); the
    # host decodes and compares them in time proportional to the size, side by side with values
    # that do not collide.
    n = 50_000
    hostile_s = _seconds(_wire(colliding(n), shape))
    plain_s = _seconds(_wire(list(range(1, n + 1)), shape))
    assert hostile_s < 5 * plain_s + 0.5, (hostile_s, plain_s)


def test_forged_repeats_and_unhashables() -> None:
    assert compare_value(decode_untrusted({"$set": [1, 1, 2]}), {1, 2}, DEFAULT).equal  # as a set would
    forged = decode_untrusted({"$dict": [[1, "a"], [1, "b"]]})
    assert "repeated key" in compare_value(forged, {1: "a"}, DEFAULT).reason
    for bad in (
        {"$set": [[1]]},
        {"$set": [{"$set": [1]}]},
        {"$dict": [[[1], 2]]},
        {"$set": [{"$tuple": [[1]]}]},
    ):
        with pytest.raises(ValueError):
            decode_untrusted(bad)


def test_member_and_key_types_are_exact() -> None:
    assert canonical_key(1) != canonical_key(1.0) != canonical_key(True)
    assert canonical_key(float("nan")) == canonical_key(float("nan"))
    assert canonical_key((1, "a")) == canonical_key((1, "a"))
    assert not compare_value(decode_untrusted(encode({1})), {1.0}, DEFAULT).equal
    assert not compare_value(decode_untrusted(encode({True: 1})), {1: 1}, DEFAULT).equal


def test_standard_library_containers_compare_as_their_plain_part() -> None:
    import collections

    point = collections.namedtuple("Point", "x y")
    assert compare_value(decode_untrusted(encode(point(1, 2))), [1, 2], DEFAULT).equal
    assert compare_value(
        decode_untrusted(encode(collections.Counter("aab"))), {"a": 2, "b": 1}, DEFAULT
    ).equal
    odict = collections.OrderedDict([("b", 1), ("a", 2)])
    assert compare_value(decode_untrusted(encode(odict)), {"a": 2, "b": 1}, DEFAULT).equal
    assert compare_value(decode_untrusted(encode(collections.deque([1, 2]))), [1, 2], DEFAULT).equal


def test_unsupported_and_limits() -> None:
    assert isinstance(decode_untrusted({"$unsupported": "generator"}), Unsupported)
    deep: Any = 1
    for _ in range(300):
        deep = [deep]
    with pytest.raises(ValueError, match="deeply"):
        decode_untrusted(deep)
    with pytest.raises(ValueError, match="more than"):
        decode_untrusted([0] * 2_000_001)
