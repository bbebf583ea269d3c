"""The in-memory BPE tokenizer of the tiny presets: lossless, deterministic, saveable, short."""

from __future__ import annotations

from pathlib import Path

import pytest
from transformers import AutoTokenizer, ByT5Tokenizer

from models.tokenizer import suite_tokenizer, train_bpe_tokenizer
from problems.suite import SuiteConfig, build_suite

AWKWARD_TEXTS = [
    "def f(a):\n    n = len(a)\n\treturn  n  # tab, double spaces\n",
    "print('caf\u00e9 \u4e2d\u6587 \U0001f600')\r\n",
    'x = 1 .real ; y = "don\'t" , z\n\n\n   \n',
    "",
]


@pytest.mark.parametrize("text", AWKWARD_TEXTS)
def test_any_text_round_trips_exactly(text: str) -> None:
    tokenizer = suite_tokenizer()
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    assert tokenizer.unk_token_id not in ids


def test_special_ids_follow_t5_and_encoder_inputs_end_with_eos() -> None:
    tokenizer = suite_tokenizer()
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2)
    with_eos = tokenizer("n = n + 3")["input_ids"]
    without = tokenizer("n = n + 3", add_special_tokens=False)["input_ids"]
    assert with_eos == [*without, 1]


def test_training_is_deterministic() -> None:
    corpus = ["n = n + 1\nprint(n)\n", "Read an integer n. Add 1 to it."] * 5
    a, b = train_bpe_tokenizer(corpus, 300), train_bpe_tokenizer(corpus, 300)
    assert a.get_vocab() == b.get_vocab()
    assert suite_tokenizer().get_vocab() == suite_tokenizer().get_vocab()


def test_vocabulary_too_small_for_the_bytes_is_refused() -> None:
    with pytest.raises(ValueError, match="256 bytes"):
        train_bpe_tokenizer(["x"], 100)


def test_save_pretrained_reloads_with_auto_tokenizer(tmp_path: Path) -> None:
    tokenizer = suite_tokenizer()
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    for text in AWKWARD_TEXTS[:3]:
        ids = tokenizer(text)["input_ids"]
        assert reloaded(text)["input_ids"] == ids
        assert reloaded.decode(ids, skip_special_tokens=True) == text


def test_suite_programs_take_far_fewer_tokens_than_bytes() -> None:
    """Why the tiny presets use it: a suite program is about half as long as in bytes, its prompt
    about a third; every operation's line is a handful of tokens."""
    suite = build_suite(SuiteConfig(train_size=40, held_out_size=10))
    bpe, byte = suite_tokenizer(), ByT5Tokenizer()
    programs = [s for p in suite.sft for s in p.solutions]
    bpe_len = sum(len(bpe(s)["input_ids"]) for s in programs)
    byte_len = sum(len(byte(s)["input_ids"]) for s in programs)
    assert byte_len > 1.8 * bpe_len
    assert len(bpe("n = n // 4\n", add_special_tokens=False)["input_ids"]) <= 6
