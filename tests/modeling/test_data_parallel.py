"""The data-parallel learner: two ranks over gloo make the same update as one process.

The two ranks are real processes (spawned) in a torch.distributed group, each a whole ``Learner``
given the same batch, as the Ray learner ranks are; one process makes the reference update.
"""

from __future__ import annotations

import multiprocessing
import random
import socket
from pathlib import Path
from typing import Any

import pytest
import torch

from actors.config import PolicyConfig, SamplingConfig
from coderl.outcomes import OutcomeClass, RewardConfig, Verdict
from coderl.rollouts import TrainStreams
from coderl.streams import StreamNames
from critic.model import critic_labels
from learner.batch import TrainBatch, score
from learner.config import CriticTrainingConfig, LearnerConfig, OptimizerConfig, SFTConfig
from learner.distributed import DataParallel, share_of_rows
from learner.learner import Learner
from learner.sft import DataOrder, at_most_per_problem, sft_examples

from .conftest import add_k_problem

VERDICTS = [Verdict.PASSED, Verdict.FAILED_TEST, Verdict.RUNTIME_ERROR, Verdict.COMPILE_ERROR]


def test_shares_of_rows_cover_the_batch_once() -> None:
    assert [share_of_rows(7, r, 3) for r in range(3)] == [slice(0, 3), slice(3, 5), slice(5, 7)]
    assert [share_of_rows(1, r, 2) for r in range(2)] == [slice(0, 1), slice(1, 1)]
    for total in range(12):
        for world in range(1, 5):
            rows = [i for r in range(world) for i in range(total)[share_of_rows(total, r, world)]]
            assert rows == list(range(total))


def test_a_single_process_has_no_collectives() -> None:
    dp = DataParallel.single()
    assert dp.is_main and not dp.active and dp.rows(5) == slice(0, 5)
    assert dp.broadcast_object({"a": 1}) == {"a": 1} and dp.sum_floats([1.5, 2.0]) == [1.5, 2.0]
    with pytest.raises(ValueError, match="outside a world"):
        DataParallel(2, 2)


def test_the_data_order_is_a_function_of_the_step() -> None:
    """Reshuffled every epoch, the ragged tail dropped; asking for an earlier step (a resumed
    warm start) replays the same order."""
    order = DataOrder(size=10, batch_size=4, seed=3)
    first_pass = [order.batch(step) for step in range(6)]
    assert all(len(b) == 4 for b in first_pass) and order.per_epoch == 2
    epoch = first_pass[0] + first_pass[1]
    assert len(set(epoch)) == 8  # no repeats within an epoch
    assert [DataOrder(10, 4, 3).batch(step) for step in range(6)] == first_pass
    assert [order.batch(step) for step in (1, 0, 5)] == [first_pass[1], first_pass[0], first_pass[5]]
    rng, manual = random.Random(3), list(range(10))
    rng.shuffle(manual)
    assert first_pass[0] == manual[:4] and first_pass[1] == manual[4:8]
    assert sorted(DataOrder(size=3, batch_size=4, seed=0).batch(0)) == [0, 1, 2]  # fewer than a batch: all


# -- two ranks against one process ----------------------------------------------------------------


def _learner(rank: int = 0, world_size: int = 1, critic_classes: str = "outcome") -> Learner:
    config = LearnerConfig(
        batch_size=9,
        ground_truth_batch_size=3,
        micro_batch_tokens=120,  # several micro-batches on every rank
        world_size=world_size,
        optimizer=OptimizerConfig(lr=1e-3),
    )
    problems = [add_k_problem(k) for k in range(5)]
    return Learner(
        config,
        PolicyConfig(model="tiny", device="cpu", seed=1),
        CriticTrainingConfig(model="tiny", device="cpu", seed=2, mode="online", classes=critic_classes),
        SFTConfig(batch_size=5),
        samples_per_group=3,
        sft_problems=problems,
        redis_url="redis://127.0.0.1:1/0",  # never read: batches are handed in
        channel=TrainStreams(StreamNames(), "dp-test"),
        seed=0,
        rank=rank,
    )


def _batch(learner: Learner) -> TrainBatch:
    """Nine sampled programs of three problems (uneven shares over two ranks), every outcome."""
    problems = [add_k_problem(k) for k in range(3)]
    params = SamplingConfig(n=3, temperature=1.0, max_new_tokens=24, seed=4)
    samples = learner.policy.sample(problems, params, round_id="r0")
    scored = [score(s, VERDICTS[i % 4], RewardConfig()) for i, s in enumerate(samples)]
    return TrainBatch([s.__class__(**{**s.__dict__, "baseline_reward": -0.3}) for s in scored])


def _updates(learner: Learner, batch: TrainBatch) -> dict[str, Any]:
    """An RL update (actor and online critic), then two warm-start steps; the weights and stats."""
    rl = learner.train_on(batch).stats
    sft = learner.sft(2, total_steps=4)
    return {
        "policy": {k: v.clone() for k, v in learner.policy.model.state_dict().items()},
        "critic": {k: v.clone() for k, v in learner.critic.state_dict().items()},  # type: ignore[union-attr]
        "rl": rl,
        "sft": sft.losses,
    }


def _rank(rank: int, address: str, batch: TrainBatch, out: str) -> None:
    torch.set_num_threads(1)
    learner = _learner(rank, world_size=2)
    learner.join_data_parallel(address)
    result = _updates(learner, batch)
    torch.save(result, f"{out}.{rank}")
    learner.dp.close()


def _free_address() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def test_two_gloo_ranks_make_the_same_update_as_one_process(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    single = _learner()
    batch = _batch(single)
    assert len({s.outcome_class for s in batch.sampled}) == len(OutcomeClass)
    spawn = multiprocessing.get_context("spawn")
    out, address = str(tmp_path / "rank"), _free_address()
    ranks = [spawn.Process(target=_rank, args=(r, address, batch, out)) for r in range(2)]
    for process in ranks:
        process.start()
    reference = _updates(single, batch)  # while the ranks run
    for process in ranks:
        process.join(timeout=300)
        assert process.exitcode == 0
    results = [torch.load(f"{out}.{r}", weights_only=False) for r in range(2)]
    assert [r["rl"]["learner/rank_weight_spread"] for r in results] == [0.0, 0.0]
    for key in ("rl",):
        for stat in ("loss/rl", "loss/ce", "loss/critic", "critic/batch_accuracy", "grad_norm"):
            assert results[0][key][stat] == pytest.approx(reference[key][stat], rel=1e-4, abs=1e-6), stat
    assert [loss for _, loss in results[0]["sft"]] == pytest.approx(
        [loss for _, loss in reference["sft"]], rel=1e-4
    )
    for model in ("policy", "critic"):
        for name, weight in reference[model].items():
            for result in results:  # both ranks hold the same weights as one process
                torch.testing.assert_close(result[model][name], weight, rtol=1e-4, atol=1e-5, msg=name)
    initial = _learner().policy.model.state_dict()
    moved = [name for name, weight in reference["policy"].items() if not torch.equal(weight, initial[name])]
    assert len(moved) > len(initial) // 2  # the update did change the weights compared


def test_the_warm_start_takes_its_examples_from_the_learners_ground_truth() -> None:
    """A limit per problem gives what tokenising with that limit gives, without tokenising again."""
    policy = _learner().policy
    problems = [add_k_problem(k) for k in range(3)]
    for problem in problems:
        problem.solutions.append(f"print(int(input()) + {problem.task_id[-1]})\n")
    everything = sft_examples(policy, problems)
    for limit in (None, 1, 2, 5):
        assert at_most_per_problem(everything, limit) == sft_examples(policy, problems, limit)


def test_a_binary_online_critic_trains_and_weights_the_rl_update() -> None:
    """The binary critic (critical sampling's) in RL: its labels are passed-or-not, so the token
    values index a 2-class softmax (4-class outcome labels used to crash it)."""
    torch.set_num_threads(1)
    learner = _learner(critic_classes="binary")
    assert learner.critic is not None and learner.critic.config.num_classes == 2
    batch = _batch(learner)
    labels = critic_labels(batch.classes(), "binary")
    assert labels.tolist() == [int(s.outcome_class == OutcomeClass.PASSED) for s in batch.sampled]
    report = learner.train_on(batch)
    assert 0.0 <= report.stats["critic/batch_accuracy"] <= 1.0
    assert torch.isfinite(torch.tensor(report.stats["loss/rl"]))
