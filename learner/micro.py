"""Token-budgeted micro-batches for gradient accumulation, and the share of the whole batch's loss
each one carries, so that accumulating them gives the same update as one big batch.

A loss reduced over the whole batch is a sum of per-row contributions over a batch-wide
denominator (learner/losses.reduce_tokens): (1/B) sum_i for ``sum`` and ``sequence_mean``,
(1/T) sum_ij for ``token_mean`` (T real tokens). A micro-batch's loss computed the same way over its
own b rows (t tokens) is therefore scaled by b/B, or t/T, and the scaled losses add up to the
whole batch's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from models.sequences import TokenBatch, take_rows

from .config import Normalization

__all__ = ["autocast", "chunks", "micro_slices", "micro_slices_of", "share"]


def micro_slices(batch: TokenBatch, max_tokens: int) -> list[slice]:
    """Consecutive row ranges whose padded size, rows x (longest prompt + longest response in
    the range), stays within ``max_tokens``; a row longer than the budget goes alone. 0: one range;
    no rows: none."""
    total = batch.prompt_ids.shape[0]
    if total == 0:
        return []
    if max_tokens <= 0:
        return [slice(0, total)]
    prompt_len = batch.prompt_mask.sum(dim=1).tolist()
    response_len = batch.response_mask.sum(dim=1).tolist()
    out, start, widest_prompt, widest_response = [], 0, 0, 0
    for row in range(total):
        prompt = max(widest_prompt, int(prompt_len[row]))
        response = max(widest_response, int(response_len[row]))
        if row > start and (row - start + 1) * (prompt + response) > max_tokens:
            out.append(slice(start, row))
            start, prompt, response = row, int(prompt_len[row]), int(response_len[row])
        widest_prompt, widest_response = prompt, response
    out.append(slice(start, total))
    return out


def micro_slices_of(batch: TokenBatch, rows: slice, max_tokens: int) -> list[slice]:
    """``micro_slices`` of ``batch``'s ``rows`` (a data-parallel rank's share), as row ranges of
    the whole batch."""
    start = rows.start or 0
    return [slice(start + s.start, start + s.stop) for s in micro_slices(take_rows(batch, rows), max_tokens)]


def share(micro_mask: torch.Tensor, whole_mask: torch.Tensor, normalization: Normalization) -> float:
    """The weight of a micro-batch's loss in the whole batch's: b/B for ``sum`` and
    ``sequence_mean``, t/T (real tokens) for ``token_mean``."""
    if normalization == "token_mean":
        return float(micro_mask.sum()) / max(1.0, float(whole_mask.sum()))
    return micro_mask.shape[0] / max(1, whole_mask.shape[0])


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[object]:
    """bf16 autocast for the forward passes (the weights and optimizer states stay fp32); fp32:
    nothing."""
    if precision != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def chunks(batch: TokenBatch, max_tokens: int) -> Iterator[tuple[slice, TokenBatch]]:
    """``micro_slices`` with their rows."""
    for selected in micro_slices(batch, max_tokens):
        yield selected, take_rows(batch, selected)
