"""The static decoder on every architecture ``STATIC_ARCHITECTURES`` names: tiny random models of
each, built from a config, decode what ``sample_tokens`` decodes (greedy), and a row refilled into
a busy slot decodes what it decodes alone. An architecture joins the list only with a case here."""

from __future__ import annotations

import pytest
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, PretrainedConfig, PreTrainedModel

from actors.config import PolicyConfig, SamplingConfig
from actors.policy import Policy
from actors.sampling import sample_tokens
from actors.static_batch import static_sample_tokens
from actors.static_cache import STATIC_ARCHITECTURES, static_decode_refusal
from actors.static_decode import ContinuousDecoder, DecodeRequest
from models.sequences import pad_left

VOCAB = 300
PAD_ID, EOS_ID = 0, 299
_DECODER = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
_GQA = {**_DECODER, "num_key_value_heads": 2}
CONFIGS: dict[str, tuple[str, dict[str, object]]] = {
    "t5": ("T5Config", {"d_model": 32, "d_ff": 64, "d_kv": 8, "num_layers": 2, "num_heads": 4}),
    "gpt2": ("GPT2Config", {"n_embd": 32, "n_layer": 2, "n_head": 4}),
    "gpt_bigcode": ("GPTBigCodeConfig", {"n_embd": 32, "n_layer": 2, "n_head": 4}),
    "gpt_neox": ("GPTNeoXConfig", _DECODER),
    "codegen": ("CodeGenConfig", {"n_embd": 32, "n_layer": 2, "n_head": 4, "rotary_dim": 4}),
    "llama": ("LlamaConfig", _GQA),
    "mistral": ("MistralConfig", {**_GQA, "sliding_window": None}),
    "qwen2": ("Qwen2Config", _GQA),
    "starcoder2": ("Starcoder2Config", {**_GQA, "sliding_window": None}),
}


def _config(model_type: str, **extra: object) -> PretrainedConfig:
    name, fields = CONFIGS[model_type]
    ids = {
        "pad_token_id": PAD_ID,
        "eos_token_id": EOS_ID,
        "bos_token_id": 1,
        "decoder_start_token_id": PAD_ID,
    }
    config = getattr(transformers, name)(vocab_size=VOCAB, **ids, **{**fields, **extra})
    assert config.model_type == model_type
    return config


def _model(config: PretrainedConfig) -> PreTrainedModel:
    torch.manual_seed(0)
    auto = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    return auto.from_config(config).eval()


def _prompts() -> list[list[int]]:
    generator = torch.Generator().manual_seed(0)
    return [torch.randint(3, EOS_ID, (n,), generator=generator).tolist() for n in (5, 9, 13, 2, 7)]


def test_every_listed_architecture_has_a_case() -> None:
    assert set(CONFIGS) == STATIC_ARCHITECTURES


@pytest.mark.parametrize("model_type", sorted(CONFIGS))
def test_static_decoder_is_exact(model_type: str) -> None:
    model = _model(_config(model_type))
    assert static_decode_refusal(model) is None
    prompts = _prompts()
    ids, mask = pad_left(prompts, PAD_ID)
    params = SamplingConfig(temperature=0.0, max_new_tokens=10)
    expected = sample_tokens(model, ids, mask, params, -1, PAD_ID)
    static = static_sample_tokens(model, ids, mask, params, -1, PAD_ID)
    assert static.token_ids.tolist() == expected.token_ids.tolist()
    torch.testing.assert_close(static.logprobs, expected.logprobs, atol=1e-4, rtol=1e-4)

    def decode(requests: list[DecodeRequest], slots: int) -> dict[int, list[int]]:
        decoder = ContinuousDecoder(
            model, params, EOS_ID, PAD_ID, slots=slots, max_prompt_tokens=16, slack=2, refill_at=1
        )
        return {row.request.meta: row.token_ids for row in decoder.decode(requests)}

    # every other prompt is forced to stop early, so slots free up and are refilled mid-decode
    requests = [
        DecodeRequest(prompt, [5, EOS_ID] if index % 2 else (), meta=index)
        for index, prompt in enumerate(prompts)
    ]
    together = decode(requests, slots=2)
    alone = {index: decode([request], slots=1)[index] for index, request in enumerate(requests)}
    assert together == alone
    first = together[0]  # ends early only by EOS, which the reference run never stopped at
    assert first == expected.token_ids[0, : len(first)].tolist()


def test_sliding_window_and_unknown_architectures_are_left_to_the_dynamic_decoder() -> None:
    windowed = _model(_config("mistral", sliding_window=4))
    assert "sliding-window" in (static_decode_refusal(windowed) or "")
    bart = transformers.BartConfig(
        vocab_size=VOCAB, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64,
    )  # fmt: skip
    assert "'bart'" in (static_decode_refusal(AutoModelForSeq2SeqLM.from_config(bart)) or "")
    other = AutoModelForCausalLM.from_config(
        transformers.OPTConfig(
            vocab_size=VOCAB,
            hidden_size=32,
            ffn_dim=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            word_embed_proj_dim=32,
        )
    )
    assert "'opt'" in (static_decode_refusal(other) or "")


@pytest.mark.parametrize("decoder", ["auto", "static", "dynamic"])
def test_policy_decoder_choice(policy: Policy, decoder: str) -> None:
    config = PolicyConfig(model=policy.config.model, decoder=decoder)  # type: ignore[arg-type]
    chosen = Policy(policy.model, policy.tokenizer, config)
    assert chosen.static_decoder == (decoder != "dynamic")
