"""The presets in deploy/configs/ load through `coderl train --config`'s loader and validate; tiny.toml
is the embedded default run written out. No model is loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from coderl.config import load_config
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
