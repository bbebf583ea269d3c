"""Decoding over preallocated KV caches, with rows refilled as they finish (the sampler's default).

``ContinuousDecoder`` keeps ``slots`` rows busy: it takes a queue of ``DecodeRequest`` (prompt ids,
forced prefix ids, caller metadata) and, when a row produces EOS or reaches ``max_new_tokens``,
emits it and gives its slot the next prompt, instead of the batch waiting for its longest row.
``actors.static_batch.static_sample_tokens`` is a drop-in for ``sampling.sample_tokens`` built on
it. Per token it records what ``sample_tokens`` records: the raw (temperature 1) ``logprobs`` and
the ``sampling_logprobs`` of the temperature/top-p distribution, 0 for forced prefix tokens.

Layout. Every cache tensor is allocated once: self-attention keys/values (slots, heads, capacity,
head_dim) and, for an encoder-decoder, cross-attention keys/values (slots, heads, prompt capacity,
head_dim), written once per prompt (``static_cache.cross_keys_values``). All slots write the step's
token at one shared column (``column``); a slot's additive ``self_mask`` (built here, not by
transformers at every step) opens the columns of its row's prompt and tokens, none after the
shared column. A refilled row starts at the current column with every earlier one closed: T5's
relative bias (key column minus query column) is the same as in a fresh decode, and a causal
model gets per-row ``position_ids``. When the shared column reaches the buffer's end, the caches
shift left past the columns no live row uses (``_compact``, at most every ``slack`` steps). A
causal model's new prompt is prefilled (all but its last token) into the ``reserve`` columns
before the shared one. The model's own parameters are used: weights loaded in place between
``decode`` calls apply. The caller sets eval mode, as for ``sample_tokens``.

Static shapes (the default on CUDA): the step (``_forward``) reads only fixed-shape buffers and a
0-dim column tensor, and attends over the first ``width`` columns, the smallest of
``WIDTH_BUCKETS`` fixed widths that holds the shared column (a step's cost grows with the columns
it reads, so a fixed width of the whole buffer would read 2.5 times what a growing cache reads over
a decode). Each width's step is captured as a CUDA graph on its first use and replayed after
(``actors/cuda_graph.py``, checked against an eager step, eager if capture fails). Token choice,
prompt encoding, prefill, emission and compaction stay outside the graphs. Elsewhere a step
attends up to the shared column exactly, as a growing cache would. A decoder is reused across
``decode`` calls (and weight loads) with the same shapes: ``params`` and the generator may change
per call, ``max_new_tokens`` may not.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput

from models.sequences import pad_left, positions

from .config import SamplingConfig
from .cuda_graph import GraphedStep, capture_checked
from .sampling import _decode_attention, cache_argument, choose_tokens
from .static_cache import allocate_caches, cache_layers, cross_keys_values, write_rows

__all__ = ["ContinuousDecoder", "DecodeRequest", "DecodedRow"]

log = logging.getLogger(__name__)

WIDTH_BUCKETS = 4
"""fixed attention widths per decoder with static shapes, so one CUDA graph each"""


@dataclass(frozen=True)
class DecodeRequest:
    prompt_ids: Sequence[int]
    prefix_ids: Sequence[int] = ()
    """forced first response tokens (critical sampling's seeds); they count towards the budget"""
    meta: Any = None
    """the caller's bookkeeping for the row (problem, sample index, group, policy version),
    handed back untouched with the decoded row"""


@dataclass(frozen=True)
class DecodedRow:
    request: DecodeRequest
    token_ids: list[int]
    logprobs: list[float]
    sampling_logprobs: list[float]
    finished: bool
    """True where the row ended with EOS within the token budget"""


class ContinuousDecoder:
    """``slots`` rows decoded together over static caches, each refilled from the queue as it ends."""

    def __init__(
        self,
        model: PreTrainedModel,
        params: SamplingConfig,
        eos_id: int,
        pad_id: int,
        slots: int,
        max_prompt_tokens: int,
        generator: torch.Generator | None = None,
        slack: int | None = None,
        refill_at: int | None = None,
        static_shapes: bool | None = None,
        cuda_graph: bool | None = None,
    ) -> None:
        if slots < 1 or max_prompt_tokens < 1:
            raise ValueError(
                f"slots ({slots}) and max_prompt_tokens ({max_prompt_tokens}) must be at least 1"
            )
        self.model, self.params, self.generator = model, params, generator
        self.eos_id, self.pad_id = eos_id, pad_id
        self.slots, self.max_prompt_tokens = slots, max_prompt_tokens
        # a refill runs the encoder (or a prefill) for the new rows: one call for several rows
        # costs about what one call for a single row does, so free slots wait until there are
        # `refill_at` of them (or all slots are free)
        self.refill_at = refill_at if refill_at is not None else max(1, slots // 8)
        self.is_encoder_decoder = bool(model.config.is_encoder_decoder)
        self.cache_name = cache_argument(model)
        self.device = next(model.parameters()).device
        # fixed shapes only pay where a graph replays the step (CUDA); elsewhere a step attends up to
        # the shared column, as a growing cache would, instead of over the whole buffer
        self.static_shapes = self.device.type == "cuda" if static_shapes is None else static_shapes
        if cuda_graph and not (self.static_shapes and self.device.type == "cuda"):
            raise ValueError("a CUDA graph needs static shapes on a CUDA device")
        self.use_graph = self.static_shapes and self.device.type == "cuda" and cuda_graph is not False
        self.graphs: dict[int, GraphedStep | None] = {}
        """width -> its captured step (None where capture failed: eager steps at that width)"""
        n = params.max_new_tokens
        # a causal prompt's first len-1 tokens are prefilled into the columns before the shared one
        self.reserve = 0 if self.is_encoder_decoder else max_prompt_tokens - 1
        # a larger buffer makes a static-shapes step read more columns, and a compaction copies
        # the caches once per `slack` steps: a quarter of the budget balances the two
        self.capacity = self.reserve + n + (slack if slack is not None else max(1, n // 4))
        if self.capacity <= self.reserve + n:
            raise ValueError(f"slack must be at least 1, got {slack}")
        span = self.capacity - self.reserve  # a causal prompt's columns are always read
        self.widths = sorted(
            {self.reserve + -(-span * k // WIDTH_BUCKETS) for k in range(1, WIDTH_BUCKETS + 1)}
        )
        """the fixed widths a static-shapes step attends over (the last is the whole buffer)"""
        self._allocate()

    # -- buffers ---------------------------------------------------------------------------------

    def _allocate(self) -> None:
        b, n, device = self.slots, self.params.max_new_tokens, self.device
        long = {"dtype": torch.long, "device": device}
        self.column = torch.zeros((), **long)
        dtype = next(self.model.parameters()).dtype
        self.closed = torch.finfo(dtype).min
        self.self_mask = torch.full((b, 1, 1, self.capacity), self.closed, dtype=dtype, device=device)
        self.input_ids = torch.full((b, 1), self.pad_id, **long)
        self.position_ids = torch.zeros((b, 1), **long)
        self.steps = torch.zeros(b, **long)
        self.prefix_ids = torch.full((b, n), self.pad_id, **long)
        self.prefix_lengths = torch.zeros(b, **long)
        self.active = torch.zeros(b, dtype=torch.bool, device=device)
        self.out_tokens = torch.full((b, n), self.pad_id, **long)
        self.out_logprobs = torch.zeros((b, n), device=device)
        self.out_sampling = torch.zeros((b, n), device=device)
        self.self_layers, self.cache = allocate_caches(
            self.model, self.pad_id, b, self.capacity, self.max_prompt_tokens, self.column
        )
        if self.is_encoder_decoder:
            self.encoder_mask = torch.full(
                (b, 1, 1, self.max_prompt_tokens), self.closed, dtype=dtype, device=device
            )
            hidden = int(self.model.config.get_text_config().hidden_size)
            # the decoder needs encoder states to run its cross-attention; it reads keys/values from
            # the cache instead, so a one-column placeholder stands in for them
            self.encoder_stub = BaseModelOutput(
                last_hidden_state=torch.zeros((b, 1, hidden), dtype=dtype, device=device)
            )
        self.requests: list[DecodeRequest | None] = [None] * b
        self.first_columns = [0] * b
        self.s = 0
        self.forcing_until = 0
        """the shared step before which some live row may still have prefix tokens to force"""
        self.compactions = 0
        """how many times the caches were shifted left (tests, benchmarks)"""
        self.refills = 0
        """how many times finished rows' slots were given new prompts"""

    # -- the loop --------------------------------------------------------------------------------

    @torch.no_grad()
    def decode(
        self,
        requests: Iterable[DecodeRequest],
        params: SamplingConfig | None = None,
        generator: torch.Generator | None = None,
    ) -> Iterator[DecodedRow]:
        """Decode every request, yielding each row as it finishes (not in queue order); ``params``
        and ``generator`` replace the constructor's for this call and later ones."""
        if params is not None:
            if params.max_new_tokens != self.params.max_new_tokens:
                raise ValueError(
                    f"this decoder's buffers hold {self.params.max_new_tokens} new tokens, "
                    f"not {params.max_new_tokens}: build another"
                )
            self.params, self.generator = params, generator
        queue = iter(requests)
        free: list[int] = []
        self.s = self.reserve
        self.forcing_until = 0
        self.column.fill_(self.s)
        self.active.zero_()
        self.requests = [None] * self.slots
        self._fill(list(range(self.slots)), queue)
        while any(request is not None for request in self.requests):
            if self.s >= self.capacity:
                self._compact()
            done = self._step()
            yield from self._emit(done)
            free += done
            if len(free) >= self.refill_at or len(free) == self.slots:
                self.refills += self._fill(free, queue)
                free = []

    def _step(self) -> list[int]:
        """Feed one token per slot, choose and record the next; the slots whose row just ended."""
        logits = self._forward()
        at = self.steps.clamp(max=self.params.max_new_tokens - 1)[:, None]
        chosen, raw, sampling = self._choose(logits, at)
        self.out_tokens.scatter_(1, at, chosen[:, None])
        self.out_logprobs.scatter_(1, at, raw[:, None])
        self.out_sampling.scatter_(1, at, sampling[:, None])
        self.steps += 1
        self.input_ids.copy_(chosen[:, None])
        self.position_ids += 1
        self.column += 1
        self.s += 1
        ended = (chosen == self.eos_id) | (self.steps >= self.params.max_new_tokens)
        return torch.nonzero(ended & self.active).flatten().tolist()

    def _forward(self) -> torch.Tensor:
        """Next-token logits (slots, vocab) in float32: the captured graph's replay where there is
        one, else an eager step (captured first, on CUDA with static shapes)."""
        width = self.s + 1 if not self.static_shapes else next(w for w in self.widths if w > self.s)
        if (graph := self.graphs.get(width)) is not None:
            return graph()
        if self.use_graph and width not in self.graphs:
            self.graphs[width], logits = capture_checked(lambda: self._eager_forward(width), self.device)
            return logits
        return self._eager_forward(width)

    def _eager_forward(self, width: int) -> torch.Tensor:
        self.self_mask.index_fill_(3, self.column.view(1), 0.0)  # each slot sees the column it writes
        for layer in self.self_layers:
            layer.width = width
        self_mask = self.self_mask[..., :width]
        cache = {self.cache_name: self.cache}
        with _decode_attention(self.device):
            if self.is_encoder_decoder:
                out = self.model(
                    encoder_outputs=self.encoder_stub,
                    attention_mask=self.encoder_mask,
                    decoder_input_ids=self.input_ids,
                    decoder_attention_mask=self_mask,
                    use_cache=True,
                    **cache,
                )
            else:
                out = self.model(
                    input_ids=self.input_ids,
                    attention_mask=self_mask,
                    position_ids=self.position_ids,
                    use_cache=True,
                    **cache,
                )
        return out.logits[:, -1].float()

    def _choose(
        self, logits: torch.Tensor, at: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(token, raw log-prob, sampling log-prob) per slot, prefix tokens forced where due
        (``at``: each slot's step, (slots, 1))."""
        raw = torch.log_softmax(logits, dim=-1)
        chosen, sampling = choose_tokens(logits, self.params, self.generator)
        if self.s < self.forcing_until:
            forced = self.steps < self.prefix_lengths
            chosen = torch.where(forced, self.prefix_ids.gather(1, at).squeeze(1), chosen)
            sampling = torch.where(forced, 0.0, sampling)
        return chosen, raw.gather(1, chosen[:, None]).squeeze(1), sampling

    # -- rows in and out -------------------------------------------------------------------------

    def _emit(self, done: list[int]) -> Iterator[DecodedRow]:
        if not done:
            return
        rows = torch.tensor(done, device=self.device)
        lengths = self.steps[rows].tolist()
        tokens, logprobs = self.out_tokens[rows].tolist(), self.out_logprobs[rows].tolist()
        sampling = self.out_sampling[rows].tolist()
        self.active[rows] = False
        for i, slot in enumerate(done):
            request, length = self.requests[slot], lengths[i]
            assert request is not None
            self.requests[slot] = None
            yield DecodedRow(
                request=request,
                token_ids=tokens[i][:length],
                logprobs=logprobs[i][:length],
                sampling_logprobs=sampling[i][:length],
                finished=tokens[i][length - 1] == self.eos_id,
            )

    def _fill(self, free: list[int], queue: Iterator[DecodeRequest]) -> bool:
        """Give each free slot the next request, if any; its caches and counters start over.
        Whether any slot was given one."""
        taken: list[tuple[int, DecodeRequest]] = []
        for slot in free:
            request = next(queue, None)
            if request is None:
                break
            if not 0 < len(request.prompt_ids) <= self.max_prompt_tokens:
                raise ValueError(
                    f"a prompt of {len(request.prompt_ids)} tokens: the decoder takes 1 to "
                    f"{self.max_prompt_tokens} (raise max_prompt_tokens)"
                )
            taken.append((slot, request))
        if not taken:
            return False
        slots = [slot for slot, _ in taken]
        rows = torch.tensor(slots, device=self.device)
        prompts = [list(request.prompt_ids) for _, request in taken]
        n = self.params.max_new_tokens
        self.self_mask[rows] = self.closed
        self.steps[rows] = 0
        self.prefix_ids[rows] = self.pad_id
        for slot, request in taken:
            prefix = list(request.prefix_ids)[:n]
            self.prefix_ids[slot, : len(prefix)] = torch.tensor(prefix, dtype=torch.long)
            self.prefix_lengths[slot] = len(prefix)
            self.forcing_until = max(self.forcing_until, self.s + len(prefix))
            self.requests[slot] = request
        if self.is_encoder_decoder:
            self._encode(rows, prompts)
            self.input_ids[rows] = int(self.model.config.decoder_start_token_id)
            first = self.s
        else:
            first = self.s - self._prefill(rows, prompts)
            self.input_ids[rows, 0] = torch.tensor([p[-1] for p in prompts], device=self.device)
            self.position_ids[rows, 0] = torch.tensor([len(p) - 1 for p in prompts], device=self.device)
        for slot in slots:
            self.first_columns[slot] = first
        self.active[rows] = True
        return True

    def _encode(self, rows: torch.Tensor, prompts: list[list[int]]) -> None:
        """Encode the new prompts and write their cross-attention keys/values into their slots."""
        ids, mask = (t.to(self.device) for t in pad_left(prompts, self.pad_id))
        width = ids.shape[1]
        pairs = cross_keys_values(self.model, ids, mask)
        write_rows(cache_layers(self.cache, True), pairs, rows, slice(0, width), mask)
        self.encoder_mask[rows] = self.closed
        self.encoder_mask[rows, :, :, :width] = self._additive(mask)

    def _prefill(self, rows: torch.Tensor, prompts: list[list[int]]) -> int:
        """Run the new prompts but their last token through the model and copy their keys/values
        into the columns before the shared one; returns how many columns they take."""
        ids, mask = (t.to(self.device) for t in pad_left([p[:-1] for p in prompts], self.pad_id))
        width = ids.shape[1]
        if width == 0:
            return 0
        with _decode_attention(self.device):
            out = self.model.base_model(
                input_ids=ids, attention_mask=mask, position_ids=positions(mask), use_cache=True
            )
        columns = slice(self.s - width, self.s)
        pairs = [(layer.keys, layer.values) for layer in cache_layers(getattr(out, self.cache_name))]
        write_rows(cache_layers(self.cache), pairs, rows, columns, mask)
        self.self_mask[rows, :, :, columns] = self._additive(mask)
        return width

    def _additive(self, mask: torch.Tensor) -> torch.Tensor:
        """A (rows, width) 0/1 mask as the additive (rows, 1, 1, width) one attention adds."""
        return torch.where(mask.bool(), 0.0, self.closed).to(self.self_mask.dtype)[:, None, None, :]

    def _compact(self) -> None:
        """Shift every self-attention cache left past the columns no live row uses any more."""
        live = [self.first_columns[slot] for slot, request in enumerate(self.requests) if request is not None]
        shift = min([*live, self.s - self.reserve])
        if shift <= 0:
            raise RuntimeError(f"the static cache of {self.capacity} columns is full: raise slack")
        kept = self.capacity - shift
        for layer in cache_layers(self.cache):
            for tensor in (layer.keys, layer.values):
                tensor[:, :, :kept] = tensor[:, :, shift:].clone()
        self.self_mask[..., :kept] = self.self_mask[..., shift:].clone()
        self.self_mask[..., kept:] = self.closed
        self.first_columns = [column - shift for column in self.first_columns]
        self.s -= shift
        self.forcing_until -= shift
        self.column.fill_(self.s)
        self.compactions += 1
        log.debug("static decode cache compacted by %d columns", shift)
