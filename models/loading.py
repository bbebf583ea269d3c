"""Loading language models: Hugging Face checkpoints, or tiny random presets needing no download.

``load_model("Salesforce/codet5-large-ntp-py")`` or ``load_model("/path/to/checkpoint")`` goes
through ``from_pretrained``: an encoder-decoder config (T5, CodeT5, BART) gets a seq2seq LM, anything
else a causal LM. A preset name builds a randomly initialised model from a config in this file with a
tokenizer that needs no vocabulary file (a BPE learned in memory from the built-in suite, or the
byte-level ``ByT5Tokenizer()``): that is how tests, CI and the embedded defaults run on an
air-gapped CPU machine.
"""

from __future__ import annotations

import logging
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

from .tokenizer import suite_tokenizer

__all__ = ["PRESETS", "LoadedModel", "Preset", "load_model", "resolve_device"]

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


def _from_pretrained(name: str) -> LoadedModel:
    local = Path(name)
    if not local.exists() and (name.startswith((".", "/")) or name.count("/") > 1):
        raise FileNotFoundError(
            f"model {name!r}: no such directory; give a preset ({', '.join(PRESETS)}), "
            "a checkpoint directory or a hub name"
        )
    config = AutoConfig.from_pretrained(name)
    is_encoder_decoder = bool(config.is_encoder_decoder)
    model_cls = AutoModelForSeq2SeqLM if is_encoder_decoder else AutoModelForCausalLM
    model = model_cls.from_pretrained(name)
    tokenizer = AutoTokenizer.from_pretrained(name)
    return LoadedModel(model, tokenizer, is_encoder_decoder, name)
