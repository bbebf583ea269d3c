"""The presets in deploy/configs/ load through `coderl train --config`'s loader and validate; tiny.toml
is the embedded default run written out. No model is loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from coderl.config import ConfigError, load_config
from driver.train_config import TrainConfig

CONFIGS = Path(__file__).resolve().parents[2] / "deploy" / "configs"
FILES = sorted(p for p in CONFIGS.iterdir() if p.suffix in (".toml", ".yaml", ".yml"))


def test_presets_exist() -> None:
    assert {p.name for p in FILES} >= {"tiny.toml", "codet5-large-ntp-py-apps.toml"}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_preset_validates(path: Path) -> None:
    config = load_config(TrainConfig, path)
    assert isinstance(config, TrainConfig)


def test_tiny_is_the_embedded_default() -> None:
    assert load_config(TrainConfig, CONFIGS / "tiny.toml").model_dump() == TrainConfig().model_dump()


def test_cluster_preset_uses_the_compose_stack() -> None:
    config = load_config(TrainConfig, CONFIGS / "codet5-large-ntp-py-apps.toml")
    assert config.execution.external_workers
    assert config.execution.redis_url == "redis://localhost:6379/0"
    assert config.problems.source == "files"
    assert config.sampler.num_gpus > 0 and config.learner.num_gpus > 0


def test_a_round_larger_than_the_admission_cap_is_refused() -> None:
    """160 programs a round against 2 x 20 that may wait: the later groups go stale and the run stalls."""
    overrides = ["sampler.problems_per_round=8", "sampler.sampling.n=20", "learner.batch_size=20"]
    with pytest.raises(ConfigError, match=r"lower sampler\.problems_per_round to 2 or less"):
        load_config(TrainConfig, None, overrides)
    load_config(TrainConfig, None, [*overrides, "learner.stale=correct", "learner.loss.importance=truncated"])
    load_config(TrainConfig, None, [*overrides[1:], "sampler.problems_per_round=2"])


def test_a_micro_batch_that_cannot_hold_one_sequence_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"micro_batch_tokens \(100\) cannot hold one sequence of 560"):
        load_config(TrainConfig, None, ["learner.micro_batch_tokens=100"])
    assert (
        load_config(TrainConfig, None, ["learner.micro_batch_tokens=560"]).learner.micro_batch_tokens == 560
    )


def test_collective_weight_sync_needs_ray() -> None:
    refused = r"sync\.method='collective' needs use_ray = true.*set sync\.method='object_store'"
    with pytest.raises(ConfigError, match=refused):
        load_config(TrainConfig, None, ["sync.method=collective", "use_ray=false"])
    config = load_config(TrainConfig, None, ["sync.method=collective", "sync.bucket_mb=16"])
    assert config.sync.method == "collective" and config.sync.bucket_mb == 16
    assert TrainConfig().sync.method == "object_store"  # the default path


def test_data_parallel_learners_that_cannot_work_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"world_size = 2 needs use_ray = true"):
        load_config(TrainConfig, None, ["learner.world_size=2", "use_ray=false"])
    with pytest.raises(ConfigError, match=r"world_size \(40\) exceeds learner.batch_size \(32\)"):
        load_config(TrainConfig, None, ["learner.world_size=40"])
    with pytest.raises(ConfigError, match=r"NCCL needs a GPU of its own for every rank"):
        load_config(TrainConfig, None, ["learner.world_size=2", "learner.num_gpus=0.5"])
    config = load_config(TrainConfig, None, ["learner.world_size=4", "learner.num_gpus=1"])
    assert config.learner.world_size == 4


def test_a_run_asking_for_more_gpus_than_the_cluster_has_is_refused() -> None:
    from driver.ray_roles import ClusterTooSmall, check_gpus

    config = load_config(
        TrainConfig,
        None,
        ["learner.world_size=4", "learner.num_gpus=1", "sampler.num_samplers=2", "sampler.num_gpus=1"],
    )
    check_gpus(config, available=6.0)
    with pytest.raises(ClusterTooSmall, match=r"asks for 6 GPUs .* the Ray cluster has 4"):
        check_gpus(config, available=4.0)
