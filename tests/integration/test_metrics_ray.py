"""driver.metrics with a local Ray cluster: one gauge per key, under its sanitised name."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from driver.metrics import METRICS_FILE, MetricsSink, read_metrics

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=1, include_dashboard=False, configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()


def test_gauges_are_created_once_per_key_with_sanitised_names(
    ray_cluster: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="driver.metrics"):
        with MetricsSink(tmp_path, tensorboard=False) as metrics:
            metrics.write(1, {"loss/rl": 0.5, "eval/held_out_pass@1": 0.25, "exec/verdict/PASSED": 3})
            first = dict(metrics.gauges)
            metrics.write(2, {"loss/rl": math.nan, "idle/learner": 0.1})
            gauges = metrics.gauges
            assert metrics.disabled == {"tensorboard"}
        assert {key: gauge.info["name"] for key, gauge in gauges.items()} == {
            "loss/rl": "coderl_loss_rl",
            "eval/held_out_pass@1": "coderl_eval_held_out_pass_1",
            "exec/verdict/PASSED": "coderl_exec_verdict_PASSED",
            "idle/learner": "coderl_idle_learner",
        }
    assert all(gauges[key] is gauge for key, gauge in first.items())  # created once, then reused
    for gauge in gauges.values():
        assert re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", gauge.info["name"])
        assert gauge.info["description"]
        assert not gauge._discard_metric  # Ray silently drops a metric whose name it rejects
    assert "disabled" not in caplog.text
    assert len(read_metrics(tmp_path / METRICS_FILE)) == 2


def test_keys_with_the_same_ray_name_export_only_the_first(
    ray_cluster: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="driver.metrics"):
        with MetricsSink(tmp_path, tensorboard=False) as metrics:
            for step in (1, 2):
                metrics.write(step, {"loss/rl": 1.0, "loss_rl": 2.0})
            assert list(metrics.gauges) == ["loss/rl"]
            assert "ray" not in metrics.disabled
    assert caplog.text.count("coderl_loss_rl") == 1
