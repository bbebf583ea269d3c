"""``static_sample_tokens``: ``sampling.sample_tokens`` (same arguments, same result layout) on the
static decoder, one slot per row and no refill: the exactness tests' and benchmarks' reference."""

from __future__ import annotations

from typing import Any

import torch
from torch.nn.utils.rnn import pad_sequence
from transformers import PreTrainedModel

from .config import SamplingConfig
from .sampling import TokenSamples
from .static_decode import ContinuousDecoder, DecodedRow, DecodeRequest

__all__ = ["static_sample_tokens"]


@torch.no_grad()
def static_sample_tokens(
    model: PreTrainedModel,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    params: SamplingConfig,
    eos_id: int,
    pad_id: int,
    generator: torch.Generator | None = None,
    prefixes: tuple[torch.Tensor, torch.Tensor] | None = None,
    static_shapes: bool | None = None,
) -> TokenSamples:
    """``sample_tokens`` (same arguments, same result layout) over static caches, one slot per row;
    ``static_shapes``: see ``ContinuousDecoder``."""
    batch_size = prompt_ids.shape[0]
    requests = []
    for row in range(batch_size):
        prompt = prompt_ids[row][prompt_mask[row].bool()].tolist()
        prefix: list[int] = []
        if prefixes is not None:
            prefix = prefixes[0][row, : int(prefixes[1][row])].tolist()
        requests.append(DecodeRequest(prompt, prefix, meta=row))
    decoder = ContinuousDecoder(
        model,
        params,
        eos_id,
        pad_id,
        slots=batch_size,
        max_prompt_tokens=prompt_ids.shape[1],
        generator=generator,
        slack=1,  # no row is refilled: no column is ever reused
        static_shapes=static_shapes,
    )
    rows: list[DecodedRow | None] = [None] * batch_size
    for decoded in decoder.decode(requests):
        rows[decoded.request.meta] = decoded
    return _stack([row for row in rows if row is not None], pad_id, prompt_ids.device)


def _stack(rows: list[DecodedRow], pad_id: int, device: torch.device) -> TokenSamples:
    def padded(values: list[list[Any]], fill: float, dtype: torch.dtype) -> torch.Tensor:
        return pad_sequence(
            [torch.tensor(v, dtype=dtype) for v in values], batch_first=True, padding_value=fill
        )

    token_ids = padded([r.token_ids for r in rows], pad_id, torch.long)
    logprobs = padded([r.logprobs for r in rows], 0.0, torch.float32)
    sampling = padded([r.sampling_logprobs for r in rows], 0.0, torch.float32)
    mask = padded([[1] * len(r.token_ids) for r in rows], 0, torch.long)
    finished = torch.tensor([r.finished for r in rows])
    return TokenSamples(*(t.to(device) for t in (token_ids, logprobs, sampling, mask, finished)))
