"""Token batches and the teacher-forced forward passes shared by sampling, the losses and the critic.

Layout, for both model kinds:

- prompts are **left**-padded, so every prompt ends at the same column and a causal model's
  response starts right after it for every row;
- responses (sampled or ground-truth programs) are **right**-padded, ending with EOS when the
  sequence finished; ``response_mask`` marks the real tokens (EOS included).

An encoder-decoder reads the prompt in its encoder and the response in its decoder, which starts
from ``decoder_start_token_id``; a causal model reads ``prompt + response`` as one sequence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

__all__ = [
    "TokenBatch",
    "pad_left",
    "pad_right",
    "response_hidden_states",
    "response_logits",
    "response_logprobs",
    "take_rows",
]


class TokenBatch(NamedTuple):
    """Prompts and responses of one batch. Shapes: prompt (b, p), response (b, t)."""

    prompt_ids: torch.Tensor
    prompt_mask: torch.Tensor
    response_ids: torch.Tensor
    response_mask: torch.Tensor

    def to(self, device: torch.device) -> TokenBatch:
        return TokenBatch(*(tensor.to(device) for tensor in self))


def pad_left(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask), each (b, longest row), rows aligned to the right."""
    width = max((len(row) for row in rows), default=0)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
            mask[i, width - len(row) :] = 1
    return ids, mask


def pad_right(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask), each (b, longest row), rows aligned to the left."""
    width = max((len(row) for row in rows), default=0)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            mask[i, : len(row)] = 1
    return ids, mask


def positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids counting real tokens only, so left padding does not shift a causal model."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


def _decoder_start(model: PreTrainedModel, batch_size: int, device: torch.device) -> torch.Tensor:
    start = model.config.decoder_start_token_id
    if start is None:
        raise ValueError(f"{type(model).__name__} has no decoder_start_token_id in its config")
    return torch.full((batch_size, 1), int(start), dtype=torch.long, device=device)


def response_logits(model: PreTrainedModel, batch: TokenBatch) -> torch.Tensor:
    """Logits predicting each response token from the prompt and the tokens before it.

    Shape: (b, t, vocab); row ``[i, j]`` scores ``response_ids[i, j]``.
    """
    b, p = batch.prompt_ids.shape
    if model.config.is_encoder_decoder:
        start = _decoder_start(model, b, batch.prompt_ids.device)
        decoder_input = torch.cat([start, batch.response_ids[:, :-1]], dim=1)
        out = model(
            input_ids=batch.prompt_ids,
            attention_mask=batch.prompt_mask,
            decoder_input_ids=decoder_input,
            use_cache=False,
        )
        return out.logits
    # Response padding sits after every real token, so the causal mask alone keeps it invisible.
    input_ids = torch.cat([batch.prompt_ids, batch.response_ids[:, :-1]], dim=1)
    mask = torch.cat([batch.prompt_mask, torch.ones_like(batch.response_ids[:, :-1])], dim=1)
    out = model(input_ids=input_ids, attention_mask=mask, position_ids=positions(mask), use_cache=False)
    return out.logits[:, p - 1 :]


def response_logprobs(model: PreTrainedModel, batch: TokenBatch) -> torch.Tensor:
    """log p(response_ids[:, j] | prompt, response_ids[:, :j]) under ``model``, 0 on padding.

    Shape: (b, t).
    """
    logits = response_logits(model, batch).float()
    b, t, vocab = logits.shape
    # cross_entropy avoids materialising a second (b, t, vocab) log-softmax tensor.
    logprobs = -F.cross_entropy(
        logits.reshape(b * t, vocab), batch.response_ids.reshape(-1), reduction="none"
    )
    return logprobs.view(b, t) * batch.response_mask


def response_hidden_states(model: PreTrainedModel, batch: TokenBatch) -> torch.Tensor:
    """The last hidden state *after* reading each response token (the critic's view of w_1..w_j).

    Shape: (b, t, hidden). Unlike the official CodeRL critic, whose state at j has not yet seen
    w_j, state j here includes w_j, so a prefix's value covers the whole prefix. The LM head is
    skipped: only the backbone runs.
    """
    b, p = batch.prompt_ids.shape
    if model.config.is_encoder_decoder:
        encoded = model.get_encoder()(input_ids=batch.prompt_ids, attention_mask=batch.prompt_mask)
        start = _decoder_start(model, b, batch.prompt_ids.device)
        decoded = model.get_decoder()(
            input_ids=torch.cat([start, batch.response_ids], dim=1),
            encoder_hidden_states=encoded.last_hidden_state,
            encoder_attention_mask=batch.prompt_mask,
            use_cache=False,
        )
        return decoded.last_hidden_state[:, 1:]
    input_ids = torch.cat([batch.prompt_ids, batch.response_ids], dim=1)
    mask = torch.cat([batch.prompt_mask, torch.ones_like(batch.response_ids)], dim=1)
    out = model.base_model(
        input_ids=input_ids, attention_mask=mask, position_ids=positions(mask), use_cache=False
    )
    return out.last_hidden_state[:, p:]


def take_rows(batch: TokenBatch, selected: slice) -> TokenBatch:
    """The rows of ``selected``, padding columns none of them uses cut off (prompts are padded on
    the left, responses on the right): exactly what padding those rows alone gives."""
    prompt_mask, response_mask = batch.prompt_mask[selected], batch.response_mask[selected]
    if prompt_mask.shape[0] == 0:
        return TokenBatch(*(tensor[selected, :0] for tensor in batch))
    prompt_width = int(prompt_mask.sum(dim=1).max())
    response_width = int(response_mask.sum(dim=1).max())
    start = batch.prompt_ids.shape[1] - prompt_width
    return TokenBatch(
        batch.prompt_ids[selected, start:],
        prompt_mask[:, start:],
        batch.response_ids[selected, :response_width],
        response_mask[:, :response_width],
    )
