"""The pipeline benchmark's pieces that need no Ray or Docker: arguments and the broadcast models."""

from __future__ import annotations

import pytest

from bench.pipeline.broadcast import WeightReceiver, WeightSource
from bench.pipeline.cli import DEFAULT_SIZES, parse_args


def test_defaults_cover_tiny_to_t5_base() -> None:
    args = parse_args([])
    assert args.sizes == list(DEFAULT_SIZES) and args.rl_steps >= 1 and not args.skip_modes
    with pytest.raises(SystemExit):
        parse_args(["--rl-steps", "0"])


def test_weights_of_a_source_load_into_a_receiver() -> None:
    source, receiver = WeightSource("tiny:64:256:2"), WeightReceiver("tiny:64:256:2")
    assert 200_000 < source.parameters() < 400_000
    weights = source.weights()
    assert receiver.set_weights(weights, 7) == 7
    mine = receiver.policy.model.state_dict()
    assert all(mine[k].equal(v) for k, v in weights.items())
