"""The learning grid's arms (bench/learning/grid.py): each is a valid training configuration that
differs as documented, also under the overrides of the README's grid B (which sets ce_weight=0 for
every run)."""

from __future__ import annotations

import pytest

from bench.learning.grid import ARMS, seed_overrides
from coderl.config import load_config
from driver.train_config import TrainConfig

GRID_B = ["learner.loss.ce_weight=0", "learner.batch_size=128", "sampler.problems_per_round=32"]


@pytest.mark.parametrize("common", [[], GRID_B], ids=["defaults", "grid-b"])
def test_every_arm_is_a_valid_config_with_its_documented_loss(common: list[str]) -> None:
    configs = {
        arm: load_config(TrainConfig, None, [*common, *seed_overrides(2), *overrides])
        for arm, overrides in ARMS.items()
    }
    loss = {arm: config.learner.loss for arm, config in configs.items()}
    critic = {arm: config.critic.mode for arm, config in configs.items()}
    assert (loss["ce"].rl_weight, loss["ce"].ce_weight, critic["ce"]) == (0, 1, "off")
    assert (loss["rl-only"].ce_weight, critic["rl-only"]) == (0, "off")
    assert (loss["rl-only-critic"].ce_weight, critic["rl-only-critic"]) == (0, "online")
    assert critic["nocritic"] == "off" and critic["critic"] == "online"
    assert all(c.seed == c.policy.seed == c.sampler.sampling.seed == 2 for c in configs.values())
