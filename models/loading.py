"""Loading language models: Hugging Face checkpoints, or tiny random presets needing no download.

``load_model("Salesforce/codet5-large-ntp-py")`` or ``load_model("/path/to/checkpoint")`` goes
through ``from_pretrained``: an encoder-decoder config (T5, CodeT5, BART) gets a seq2seq LM, anything
else a causal LM. A hub name is looked up in the local cache first and downloaded only when it is
not there, looks like ``org/name`` and HF_HUB_OFFLINE is unset; any other name that is neither a
preset nor a local directory fails at once, listing the presets. A preset name builds a randomly
initialised model from a config in this file with a tokenizer that needs no vocabulary file (a BPE
learned in memory from the built-in suite, or the byte-level ``ByT5Tokenizer()``): that is how
tests, CI and the embedded defaults run on an air-gapped CPU machine.
"""

from __future__ import annotations

import logging
import os
import resource
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    ByT5Tokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    T5Config,
    T5ForConditionalGeneration,
)
from transformers.utils import logging as hf_logging

from .names import looks_like_hub_name, preset_hint
from .tokenizer import suite_tokenizer

__all__ = ["PRESETS", "LoadedModel", "Preset", "load_model", "peak_memory_bytes", "resolve_device"]

log = logging.getLogger(__name__)


def _t5(d_model: int, d_ff: int, layers: int, heads: int, vocab: int) -> PretrainedConfig:
    return T5Config(
        vocab_size=vocab,
        d_model=d_model,
        d_kv=d_model // heads,
        d_ff=d_ff,
        num_layers=layers,
        num_decoder_layers=layers,
        num_heads=heads,
        dropout_rate=0.0,
        feed_forward_proj="relu",
        tie_word_embeddings=True,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )


def _gpt2(d_model: int, layers: int, heads: int, vocab: int, positions: int) -> PretrainedConfig:
    return GPT2Config(
        vocab_size=vocab,
        n_embd=d_model,
        n_layer=layers,
        n_head=heads,
        n_positions=positions,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=1,
    )


@dataclass(frozen=True)
class Preset:
    """A randomly initialised model: its config for a vocabulary size, and its tokenizer."""

    config: Callable[[int], PretrainedConfig]
    tokenizer: Callable[[], PreTrainedTokenizerBase]


def _byte_tokenizer() -> PreTrainedTokenizerBase:
    return ByT5Tokenizer()


PRESETS: dict[str, Preset] = {
    # CI, tests and the embedded default: about 0.26M parameters with a subword vocabulary learned
    # from the built-in suite (models/tokenizer.py); on raw bytes (tiny-byte) suite prompts are 3.5x
    # and programs 2x longer, and no held-out problem passed after 400 SFT steps (38% with the BPE).
    "tiny": Preset(lambda vocab: _t5(d_model=64, d_ff=256, layers=2, heads=4, vocab=vocab), suite_tokenizer),
    "tiny-causal": Preset(
        lambda vocab: _gpt2(d_model=64, layers=2, heads=4, vocab=vocab, positions=2048), suite_tokenizer
    ),
    "tiny-byte": Preset(
        lambda vocab: _t5(d_model=64, d_ff=256, layers=2, heads=4, vocab=vocab), _byte_tokenizer
    ),
    # CodeT5-small's shape (about 60M parameters with its 32,100-token vocabulary), random weights;
    # for benchmarks: the byte tokenizer only produces ids below 384.
    "t5-small-random": Preset(
        lambda _: _t5(d_model=512, d_ff=2048, layers=6, heads=8, vocab=32100), _byte_tokenizer
    ),
    # T5-base's shape, CodeT5-base's (the CodeRL critic's backbone), random weights: about 223M
    # parameters; for benchmarks of the real configuration's critic (bench/memory).
    "t5-base-random": Preset(
        lambda _: _t5(d_model=768, d_ff=3072, layers=12, heads=12, vocab=32100), _byte_tokenizer
    ),
    # T5-large's shape, the size class of CodeT5-large (770M), random weights: about 737M
    # parameters; for GPU benchmarks of the real configuration's model size.
    "t5-large-random": Preset(
        lambda _: _t5(d_model=1024, d_ff=4096, layers=24, heads=16, vocab=32100), _byte_tokenizer
    ),
}


@dataclass
class LoadedModel:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    is_encoder_decoder: bool
    source: str
    """the preset name, directory or hub name it came from"""


def resolve_device(device: str) -> torch.device:
    """``auto`` is the first CUDA device when one is present, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but no CUDA device is available: use cpu or auto")
    return resolved


def load_model(
    name: str, device: str = "auto", dtype: torch.dtype = torch.float32, seed: int = 0
) -> LoadedModel:
    """A preset (random weights, seeded), a local checkpoint directory, or a hub name."""
    # transformers 5 draws progress bars for every load and save; the CLI shows its own.
    hf_logging.disable_progress_bar()
    if name in PRESETS:
        loaded = _build_preset(name, seed)
    else:
        loaded = _from_pretrained(name)
    loaded.model.to(device=resolve_device(device), dtype=dtype)
    if loaded.tokenizer.pad_token_id is None:
        # Causal code LMs often ship without a pad token; padding is always masked here.
        loaded.tokenizer.pad_token = loaded.tokenizer.eos_token
    n_params = sum(p.numel() for p in loaded.model.parameters())
    log.info("loaded %s (%s, %.1fM parameters)", name, type(loaded.model).__name__, n_params / 1e6)
    return loaded


def _build_preset(name: str, seed: int) -> LoadedModel:
    preset = PRESETS[name]
    tokenizer = preset.tokenizer()
    config = preset.config(len(tokenizer))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if config.is_encoder_decoder:
            model: PreTrainedModel = T5ForConditionalGeneration(config)
        else:
            model = GPT2LMHeadModel(config)
    return LoadedModel(model, tokenizer, bool(config.is_encoder_decoder), name)


_TRUE = ("1", "true", "yes", "on")


def _offline() -> bool:
    return any(os.environ.get(v, "").lower() in _TRUE for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _unknown_model(name: str, why: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"model {name!r} is neither a preset{preset_hint(name)} ({', '.join(PRESETS)}) nor a local directory "
        f"(no such directory), {why}; give a preset, a checkpoint directory or a hub name such as "
        "Salesforce/codet5-large-ntp-py"
    )


def _from_pretrained(name: str) -> LoadedModel:
    """A checkpoint directory, or a hub name: from the local cache, else downloaded when allowed."""
    local = Path(name)
    if local.exists() and not local.is_dir():
        raise FileNotFoundError(f"model {name!r} is a file; give a checkpoint directory (config.json inside)")
    if local.is_dir():
        return _load_pretrained(name, cached_only=False)
    try:
        return _load_pretrained(name, cached_only=True)
    except OSError:
        pass
    if not looks_like_hub_name(name):
        raise _unknown_model(name, "and not a hub name found in the local cache") from None
    if _offline():
        raise _unknown_model(name, "and not in the local hub cache (HF_HUB_OFFLINE is set)") from None
    log.info("model %s is not in the local cache: downloading it from the Hugging Face hub", name)
    try:
        return _load_pretrained(name, cached_only=False)
    except OSError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        why = f"and not in the local hub cache; the hub did not provide it: {reason}"
        why += " (HF_HUB_OFFLINE=1 skips the hub)"
        raise _unknown_model(name, why) from None


def _load_pretrained(name: str, cached_only: bool) -> LoadedModel:
    config = AutoConfig.from_pretrained(name, local_files_only=cached_only)
    is_encoder_decoder = bool(config.is_encoder_decoder)
    model_cls = AutoModelForSeq2SeqLM if is_encoder_decoder else AutoModelForCausalLM
    model = model_cls.from_pretrained(name, local_files_only=cached_only)
    tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=cached_only)
    return LoadedModel(model, tokenizer, is_encoder_decoder, name)


def peak_memory_bytes(device: torch.device) -> int:
    """The process's peak so far: the CUDA allocator's on a GPU, else the peak resident set size."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
