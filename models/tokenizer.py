"""Byte-level BPE tokenizers trained in memory, for presets that cannot download a vocabulary.

A byte tokenizer (``ByT5Tokenizer``) needs no vocabulary but makes a built-in suite prompt 3.5
times and its program 2 times longer than this one does, and a tiny model then spends its capacity
on spelling: the byte-level tiny model passed no held-out problem after 400 SFT steps (the same
model with this tokenizer: 38%), its programs falling apart after the first line.

``train_bpe_tokenizer`` learns a GPT-2-style byte-level BPE (lossless on any text: every byte has a
token, so unseen text still round-trips) from a corpus in well under a second, and returns a
``PreTrainedTokenizerFast`` that ``save_pretrained`` writes and ``AutoTokenizer.from_pretrained``
reads back, so checkpoints stay ordinary Hugging Face ones.

Special tokens follow T5: ``<pad>`` = 0, ``</s>`` = 1 (appended to encoder inputs by
``add_special_tokens=True``), ``<unk>`` = 2 (never produced: byte fallback covers everything).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

__all__ = ["SPECIAL_TOKENS", "suite_tokenizer", "train_bpe_tokenizer"]

SPECIAL_TOKENS = ("<pad>", "</s>", "<unk>")


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """A byte-level BPE with at most ``vocab_size`` tokens learned from ``texts`` (deterministic).

    Words, numbers and punctuation are split apart before merging (GPT-2's pre-tokenisation), so
    tokens never straddle a word boundary; whitespace, indentation included, is kept exactly.
    """
    if vocab_size < 256 + len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size {vocab_size} cannot hold the 256 bytes and the special tokens")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    eos_id = tokenizer.token_to_id("</s>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", eos_id)]
    )
    return _wrap(tokenizer)


def _wrap(tokenizer: Tokenizer) -> PreTrainedTokenizerFast:
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        # The default clean-up rewrites " ." and " n't": programs must decode byte for byte.
        clean_up_tokenization_spaces=False,
    )


@functools.cache
def _suite_tokenizer_json(vocab_size: int) -> str:
    from problems.suite import SuiteConfig, build_suite

    from .prompts import format_prompt

    # Pinned, not SuiteConfig(): a change of the suite's defaults must not change the vocabulary
    # (checkpoints and presets would stop sharing a tokenizer).
    suite = build_suite(SuiteConfig(seed=0, train_size=400, held_out_size=100, sft_fraction=0.5))
    # Statements of the train problems and the programs of the SFT split: the text a suite run
    # reads and writes. Held-out problems are left out; their words are train words by design.
    corpus = [format_prompt(p) for p in suite.train] + [s for p in suite.sft for s in p.solutions]
    return train_bpe_tokenizer(corpus, vocab_size).backend_tokenizer.to_str()


def suite_tokenizer(vocab_size: int = 1024) -> PreTrainedTokenizerFast:
    """The tiny presets' tokenizer: a BPE learned from the built-in suite (same every call)."""
    return _wrap(Tokenizer.from_str(_suite_tokenizer_json(vocab_size)))
