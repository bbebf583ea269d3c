"""The pipeline benchmark's pieces that need no Ray or Docker: arguments, the broadcast models and
the broadcast table's target line."""

from __future__ import annotations

import pytest

from bench.pipeline.broadcast import BroadcastResult, WeightReceiver, WeightSource, print_broadcast
from bench.pipeline.cli import DEFAULT_SIZES, parse_args


def test_defaults_cover_tiny_to_t5_base() -> None:
    args = parse_args([])
    assert args.sizes == list(DEFAULT_SIZES) and args.rl_steps >= 1 and not args.skip_modes
    assert args.bucket_mb > 0 and not args.skip_collective
    with pytest.raises(SystemExit):
        parse_args(["--rl-steps", "0"])
    with pytest.raises(SystemExit):
        parse_args(["--bucket-mb", "0"])


def test_weights_of_a_source_load_into_a_receiver_both_ways() -> None:
    source, receiver = WeightSource("tiny:64:256:2"), WeightReceiver("tiny:64:256:2")
    assert 200_000 < source.parameters() < 400_000
    weights = source.weights()
    assert receiver.set_weights(weights, 7) == 7
    mine = receiver.policy.model.state_dict()
    assert all(mine[k].equal(v) for k, v in weights.items())
    other = WeightReceiver("tiny:64:256:2")
    assert other.set_packed(source.packed(8)) == 8
    assert all(other.policy.model.state_dict()[k].equal(v) for k, v in weights.items())


def test_the_target_line_reads_the_t5_base_row(capsys: pytest.CaptureFixture[str]) -> None:
    rows = [BroadcastResult("tiny", 1, 0.004, 0.1, 0.01, None)]
    assert print_broadcast(rows, 2, 3) is None  # no T5-base row: no verdict
    fast = BroadcastResult("t5-base", 222_882_048, 891.5, 5.6, 0.52, 0.94)
    assert print_broadcast([fast], 2, 3) is True
    assert "1714 MB/s, PASS" in capsys.readouterr().out
    assert print_broadcast([BroadcastResult("t5-base", 1, 891.5, 5.6, 1.2, None)], 2, 3) is False
    assert "FAIL" in capsys.readouterr().out
