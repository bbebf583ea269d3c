"""python -m bench.memory: the rank's share and passes, the architecture table, and one whole
measured update of the tiny configuration ending with its ``peak_bytes_per_rank=`` line."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.memory.architectures import KNOWN_ARCHITECTURES, UnknownArchitectureError, architecture_for
from bench.memory.cli import parse_args
from bench.memory.workload import rank_shape
from coderl.config import load_config
from driver.train_config import TrainConfig

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "deploy" / "configs" / "tiny.toml"
APPS = REPO / "deploy" / "configs" / "codet5-large-ntp-py-apps.toml"
PEAK_LINE = re.compile(r"peak_bytes_per_rank=(\d+)")


def test_the_apps_update_is_measured_at_its_longest_shapes() -> None:
    config = load_config(TrainConfig, APPS)
    shape = rank_shape(config)
    assert (shape.world_size, shape.sampled, shape.greedy, shape.ground_truth) == (1, 20, 1, 8)
    assert (shape.prompt_tokens, shape.sampled_tokens, shape.program_tokens) == (600, 512, 512)
    from bench.memory.measure import passes

    # 4480 tokens hold 4 rows of 600 + 512: 20 sampled rows in 5 passes, 21 critic rows in 6
    assert passes(config, shape) == {"rl": 5, "ce": 2, "critic_values": 1, "critic": 6}


def test_a_rank_takes_the_largest_share_of_every_row_set() -> None:
    config = load_config(TrainConfig, TINY, ["learner.world_size=3"])
    shape = rank_shape(config)
    # 32 sampled programs in 8 groups of 4 (8 greedy decodes), 8 ground-truth rows, over 3 ranks
    assert (shape.world_size, shape.sampled, shape.greedy, shape.ground_truth) == (3, 11, 3, 3)


def test_known_hub_names_are_built_at_their_shapes() -> None:
    from models.loading import PRESETS

    assert architecture_for("Salesforce/codet5-large-ntp-py").preset == "t5-large-random"
    assert architecture_for("Salesforce/codet5-base").preset == "t5-base-random"
    assert architecture_for("tiny").preset == "tiny"
    shapes = {"t5-large-random": (1024, 4096, 24, 16, 64), "t5-base-random": (768, 3072, 12, 12, 64)}
    for preset, expected in shapes.items():
        t5 = PRESETS[preset].config(384)
        got = (t5.d_model, t5.d_ff, t5.num_layers, t5.num_heads, t5.d_kv)
        assert got == expected and t5.num_decoder_layers == t5.num_layers
        assert t5.vocab_size == 32100 and t5.tie_word_embeddings
    assert {a.preset for a in KNOWN_ARCHITECTURES.values()} <= set(PRESETS)


def test_an_unknown_hub_name_is_refused() -> None:
    with pytest.raises(UnknownArchitectureError, match="no known architecture") as refused:
        architecture_for("Salesforce/codet5-unknown")
    assert "never downloads" in str(refused.value)
    with pytest.raises(SystemExit) as exited:
        parse_args(["--config", str(TINY), "--set", "critic.model=org/unknown-critic"])
    assert exited.value.code == 2


def test_one_update_of_the_tiny_configuration_reports_a_positive_peak() -> None:
    from bench.memory.measure import MemoryRequest, measure_rank
    from bench.memory.report import format_report

    # In this process (the command runs the same in a child process), glibc's allocator as it is.
    request = MemoryRequest(config=load_config(TrainConfig, TINY))
    result = measure_rank(request)
    assert result.peak_bytes_per_rank >= result.update_peak_bytes > 0
    assert result.policy.parameter_bytes > 0 and result.critic is not None
    assert result.gradient_bytes > 0 and result.optimizer_bytes >= 2 * result.gradient_bytes
    assert result.passes == {"rl": 1, "ce": 1, "critic_values": 1, "critic": 1}
    assert {"loss/rl", "loss/ce", "loss/critic"} <= set(result.losses)
    names = ["critic token values (no grad)", "actor passes and AdamW step", "critic step and AdamW step"]
    assert [phase.name for phase in result.phases] == names
    assert max(phase.peak_bytes for phase in result.phases) == result.update_peak_bytes
    assert result.update_s > 0
    lines = format_report(result, str(TINY)).splitlines()
    last = PEAK_LINE.fullmatch(lines[-1])
    assert last is not None and int(last.group(1)) == result.peak_bytes_per_rank
    assert sum(PEAK_LINE.search(line) is not None for line in lines) == 1


@pytest.mark.slow
def test_the_command_measures_in_a_child_process_and_ends_with_the_peak(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "bench.memory", "--config", str(TINY), "--unmap-freed",
         "--json", str(tmp_path / "m.json")],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    last = PEAK_LINE.fullmatch(run.stdout.splitlines()[-1])
    assert last is not None and int(last.group(1)) > 0
    assert "allocations >= 64 KiB mapped" in run.stdout
    assert '"peak_bytes_per_rank"' in (tmp_path / "m.json").read_text()
