"""What the model-facing commands say and choose before any training: unknown model names fail at
once (no hub retries; no network is needed for these tests), ``coderl sft`` picks defaults that
suit the model, and sampling does not warn on every call."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import pytest
import torch

from actors.config import SamplingConfig
from actors.sampling import sample_tokens
from coderl.cli import build_parser, main
from learner.sft_cli import PRESET_DEFAULTS, resolve_config
from models import loading
from models.loading import PRESETS, load_model

# -- unknown model names ------------------------------------------------------------------------------


def test_a_bare_unknown_name_fails_at_once_listing_the_presets() -> None:
    started = time.monotonic()
    with pytest.raises(FileNotFoundError) as caught:
        load_model("tnyy")
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert "'tnyy' is neither a preset" in message and "nor a local directory" in message
    assert all(name in message for name in PRESETS)
    assert "did you mean 'tiny'?" in message


def test_a_missing_path_says_no_such_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such directory") as caught:
        load_model(str(tmp_path / "nope"))
    assert "preset" in str(caught.value)


def test_a_file_is_not_a_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_text("x")
    with pytest.raises(FileNotFoundError, match="is a file; give a checkpoint directory"):
        load_model(str(tmp_path / "model.bin"))


def test_a_hub_name_not_in_the_cache_fails_at_once_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="not in the local hub cache \\(HF_HUB_OFFLINE is set\\)"):
        load_model("Salesforce/no-such-model-for-coderl-tests")


def _record_loads(
    monkeypatch: pytest.MonkeyPatch, cached: set[str], unreachable: bool = False
) -> list[tuple[str, bool]]:
    """Replace the from_pretrained calls: ``cached`` names load from the cache, others need the hub
    (which fails like transformers does without a network when ``unreachable``)."""
    calls: list[tuple[str, bool]] = []

    def fake(name: str, cached_only: bool) -> loading.LoadedModel:
        calls.append((name, cached_only))
        if cached_only and name not in cached:
            raise OSError("not in the cache")
        if not cached_only and unreachable:
            raise OSError("We couldn't connect to 'https://huggingface.co' to load the files.\nCheck ...")
        return loading._build_preset("tiny", 0)

    monkeypatch.setattr(loading, "_load_pretrained", fake)
    return calls


def test_a_hub_name_is_tried_in_the_cache_then_on_the_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    calls = _record_loads(monkeypatch, cached={"gpt2"})
    load_model("Salesforce/codet5-large-ntp-py", device="cpu")
    assert calls == [("Salesforce/codet5-large-ntp-py", True), ("Salesforce/codet5-large-ntp-py", False)]
    calls.clear()
    load_model("gpt2", device="cpu")  # a bare name in the cache loads from it
    assert calls == [("gpt2", True)]


def test_an_unreachable_hub_ends_in_one_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    _record_loads(monkeypatch, cached=set(), unreachable=True)
    with pytest.raises(FileNotFoundError) as caught:
        load_model("Org/model", device="cpu")
    message = str(caught.value)
    assert "'Org/model' is neither a preset" in message and "\n" not in message
    assert "the hub did not provide it: We couldn't connect" in message and "HF_HUB_OFFLINE=1" in message


def test_a_local_directory_goes_straight_to_from_pretrained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _record_loads(monkeypatch, cached=set())
    load_model(str(tmp_path), device="cpu")
    assert calls == [(str(tmp_path), False)]


def test_sft_with_an_unknown_model_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    problems = tmp_path / "p.jsonl"
    problems.write_text(
        '{"task_id": "a", "statement": "print 1", "solutions": ["print(1)\\n"], '
        '"hidden_tests": [{"kind": "stdio", "stdin": "", "stdout": "1\\n"}]}\n'
    )
    started = time.monotonic()
    code = main(["sft", "--problems", str(problems), "--model", "tnyy", "--out", str(tmp_path / "o")])
    assert code == 2 and time.monotonic() - started < 10
    err = capsys.readouterr().err
    assert "coderl sft: error: --model tnyy: model 'tnyy' is neither a preset" in err
    assert "did you mean 'tiny'?" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


# -- coderl sft defaults per model --------------------------------------------------------------------


def _sft(*argv: str) -> tuple[float, int]:
    args = build_parser("sft").parse_args(["sft", "--problems", "p", "--out", "o", *argv])
    config = resolve_config(args)
    return config.optimizer.lr, config.batch_size


def test_sft_presets_name_real_presets() -> None:
    assert set(PRESET_DEFAULTS) <= set(PRESETS)


def test_sft_uses_the_defaults_of_the_model_it_trains(tmp_path: Path) -> None:
    tiny = PRESET_DEFAULTS["tiny"]
    assert _sft() == (tiny["optimizer.lr"], tiny["batch_size"])  # tiny is the default model
    assert _sft("--model", "tiny") == (2e-3, 16)
    assert _sft("--model", "tiny-causal") == (2e-3, 16)
    assert _sft("--model", "t5-small-random") == (2e-5, 8)  # CodeRL's CodeT5-large settings
    assert _sft("--model", "Salesforce/codet5-large-ntp-py") == (2e-5, 8)


def test_sft_settings_the_user_gives_win_over_the_preset(tmp_path: Path) -> None:
    assert _sft("--model", "tiny", "--set", "optimizer.lr=1e-4") == (1e-4, 16)
    assert _sft("--model", "tiny", "--lr", "3e-3", "--batch-size", "4") == (3e-3, 4)
    assert _sft("--set", "batch_size=2") == (2e-3, 2)
    config = tmp_path / "sft.toml"
    config.write_text('batch_size = 5\n[policy]\nmodel = "tiny-byte"\n')
    assert _sft("--config", str(config)) == (2e-3, 5)


def test_sft_help_shows_the_preset_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sft", "--help"]) == 0
    text = capsys.readouterr().out
    assert "  optimizer.lr = 2e-05\n" in text and "  batch_size = 8\n" in text
    assert "default with --model tiny, tiny-causal or tiny-byte: 0.002" in text
    assert "default with --model tiny, tiny-causal or tiny-byte: 16" in text


# -- sampling -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tiny", "tiny-causal"])
def test_sampling_warns_about_nothing(name: str) -> None:
    loaded = load_model(name, device="cpu")
    ids = torch.tensor([[5, 6, 7, 8], [0, 9, 10, 11]])
    mask = (ids != 0).long()
    params = SamplingConfig(max_new_tokens=6, temperature=0.7)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = sample_tokens(loaded.model, ids, mask, params, eos_id=-1, pad_id=0)
    assert out.token_ids.shape == (2, 6)
    assert [str(w.message) for w in caught] == []
