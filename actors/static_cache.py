"""The static decoder's KV caches (``actors.static_decode``): allocated once, written in place.

``SlotLayer`` holds one layer's self-attention keys/values for every slot, (slots, heads, capacity,
head_dim); every slot writes the step's token at one shared column, a 0-dim tensor a captured
graph reads. ``CrossLayer`` holds an encoder-decoder's cross-attention keys/values, written once
per prompt (``cross_keys_values``), only read by a step. ``allocate_caches`` builds both, shaped
from a one-token probe of the model, run once per model and remembered.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Any, NamedTuple

import torch
from transformers import PreTrainedModel
from transformers.cache_utils import Cache, CacheLayerMixin, DynamicCache, EncoderDecoderCache

from .sampling import _decode_attention, cache_argument

__all__ = [
    "STATIC_ARCHITECTURES",
    "CrossLayer",
    "SlotLayer",
    "allocate_caches",
    "cache_layers",
    "cross_keys_values",
    "static_decode_refusal",
    "write_rows",
]

STATIC_ARCHITECTURES = frozenset(
    {"t5", "gpt2", "gpt_bigcode", "gpt_neox", "codegen", "llama", "mistral", "qwen2", "starcoder2"}
)
"""model types the static decoder is tested exact on (tests/modeling/test_static_architectures.py):
their attention reads the keys/values and the additive mask the slot caches hand it. Not BART: its
decoder takes positions from the cache's length, so a row refilled mid-decode would start at the
shared column's position instead of 0 (T5's relative bias sees only differences; causal models get
per-row ``position_ids``)"""


class SlotLayer(CacheLayerMixin):
    """One layer's keys and values, allocated once; every slot writes at the shared ``column``."""

    is_compileable = True
    is_sliding = False

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, column: torch.Tensor) -> None:
        super().__init__()
        self.keys, self.values, self.column = keys, values, column
        self.device = keys.device
        self.is_initialized = True
        self.width = int(keys.shape[2])
        """columns a step attends over, set by the decoder before each step: a fixed width bucket
        with static shapes, else up to the shared column"""

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        """Nothing to do: the tensors are allocated up front."""

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if key_states.shape[-2] != 1:
            raise ValueError(
                "the static decoder feeds one token per step; prefill goes through a DynamicCache"
            )
        self.keys.index_copy_(2, self.column.view(1), key_states)
        self.values.index_copy_(2, self.column.view(1), value_states)
        return self.keys[:, :, : self.width], self.values[:, :, : self.width]

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.width, 0

    def get_seq_length(self) -> Any:
        # the query's column: T5 computes its relative position bias from it, the masks their offset
        return self.column

    def get_max_length(self) -> int:
        return int(self.keys.shape[2])


class CrossLayer(SlotLayer):
    """Cross-attention keys/values, written per prompt; the model only reads them."""

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("cross-attention keys are written once per prompt, never by a decode step")

    def get_seq_length(self) -> int:
        return int(self.keys.shape[2])


def static_decode_refusal(model: PreTrainedModel) -> str | None:
    """Why the static decoder does not apply to ``model``, or None where it does: an architecture
    outside ``STATIC_ARCHITECTURES``, or sliding-window attention (the slot masks open every
    column of a row, so a window would be ignored)."""
    config = model.config
    if config.model_type not in STATIC_ARCHITECTURES:
        return f"model type {config.model_type!r} is not among those tested: {sorted(STATIC_ARCHITECTURES)}"
    window = getattr(config, "sliding_window", None)
    if window and getattr(config, "use_sliding_window", True):
        return f"sliding-window attention ({window} tokens)"
    return None


def cache_layers(cache: Cache, cross: bool = False) -> list[Any]:
    """The self-attention (or, ``cross``, cross-attention) layers of a cache."""
    if isinstance(cache, EncoderDecoderCache):
        return list((cache.cross_attention_cache if cross else cache.self_attention_cache).layers)
    return list(cache.layers)


class _LayerShape(NamedTuple):
    heads: int
    head_dim: int
    dtype: torch.dtype


_SHAPES: weakref.WeakKeyDictionary[PreTrainedModel, tuple[list[_LayerShape], list[_LayerShape]]] = (
    weakref.WeakKeyDictionary()
)
"""model -> its (self, cross) layer shapes: a probe costs a forward pass, so each model runs one"""


def _layer_shapes(model: PreTrainedModel, pad_id: int) -> tuple[list[_LayerShape], list[_LayerShape]]:
    """Heads, head size and dtype of each self- and cross-attention layer, from a one-token forward."""
    if model in _SHAPES:
        return _SHAPES[model]
    device = next(model.parameters()).device
    one = torch.full((1, 1), pad_id, dtype=torch.long, device=device)
    kwargs: dict[str, Any] = {"input_ids": one, "attention_mask": torch.ones_like(one), "use_cache": True}
    if model.config.is_encoder_decoder:
        kwargs["decoder_input_ids"] = torch.full_like(one, int(model.config.decoder_start_token_id))
    with torch.no_grad():
        probe = getattr(model(**kwargs), cache_argument(model))

    def shapes(cross: bool) -> list[_LayerShape]:
        return [
            _LayerShape(layer.keys.shape[1], layer.keys.shape[3], layer.keys.dtype)
            for layer in cache_layers(probe, cross)
        ]

    found = (shapes(False), shapes(True) if model.config.is_encoder_decoder else [])
    _SHAPES[model] = found
    return found


def allocate_caches(
    model: PreTrainedModel,
    pad_id: int,
    slots: int,
    capacity: int,
    cross_width: int,
    column: torch.Tensor,
) -> tuple[list[SlotLayer], Cache]:
    """Zeroed caches for ``slots`` rows: self-attention of ``capacity`` columns and, for an
    encoder-decoder, cross-attention of ``cross_width`` columns. Returns (self layers, cache)."""
    self_shapes, cross_shapes = _layer_shapes(model, pad_id)
    device = column.device

    def layer(shape: _LayerShape, width: int, kind: type[SlotLayer]) -> SlotLayer:
        keys = torch.zeros((slots, shape.heads, width, shape.head_dim), dtype=shape.dtype, device=device)
        return kind(keys, torch.zeros_like(keys), column)

    self_layers = [layer(shape, capacity, SlotLayer) for shape in self_shapes]
    cache: Cache = Cache(layers=self_layers)
    if model.config.is_encoder_decoder:
        cross = [layer(shape, cross_width, CrossLayer) for shape in cross_shapes]
        cache = EncoderDecoderCache(cache, Cache(layers=cross))
    return self_layers, cache


def write_rows(
    layers: list[Any],
    pairs: Iterable[tuple[torch.Tensor, torch.Tensor]],
    rows: torch.Tensor,
    columns: slice,
    mask: torch.Tensor,
) -> None:
    """Copy each layer's (keys, values) of new prompts, (len(rows), heads, width, head_dim), into
    ``columns`` of those ``rows`` of the slot layers; padded columns (``mask`` 0, (rows, width))
    are written as zeros, since a fully padded row attends to nothing and may hold NaN."""
    keep = mask.bool()[:, None, :, None]
    for target, (keys, values) in zip(layers, pairs, strict=True):
        target.keys[rows, :, columns] = torch.where(keep, keys, 0.0).to(target.keys.dtype)
        target.values[rows, :, columns] = torch.where(keep, values, 0.0).to(target.values.dtype)


def _t5_cross_attentions(model: PreTrainedModel) -> list[Any] | None:
    """The decoder's cross-attention modules in layer order where they are T5's (keys and values
    are plain projections of the encoder's output there); None for other architectures."""
    blocks = getattr(model.get_decoder(), "block", None)
    if blocks is None:
        return None
    modules = [
        getattr(block.layer[1], "EncDecAttention", None) if len(block.layer) > 1 else None for block in blocks
    ]
    if any(
        m is None or not all(hasattr(m, name) for name in ("k", "v", "key_value_proj_dim")) for m in modules
    ):
        return None
    return modules


def cross_keys_values(
    model: PreTrainedModel, ids: torch.Tensor, mask: torch.Tensor, projections: bool = True
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each decoder layer's cross-attention (keys, values), (b, heads, p, head_dim), for the
    left-padded prompts ``ids`` (b, p): for T5 by the layers' own key/value projections of the
    encoder's output; otherwise (or ``projections=False``) by one decoder pass on the start token,
    which lets the model's attention code fill a cache."""
    with _decode_attention(ids.device):
        encoded = model.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state
        attentions = _t5_cross_attentions(model) if projections else None
        if attentions is not None:
            b, p = ids.shape

            def split(x: torch.Tensor, head_dim: int) -> torch.Tensor:
                return x.view(b, p, -1, head_dim).transpose(1, 2)

            return [
                (split(a.k(encoded), a.key_value_proj_dim), split(a.v(encoded), a.key_value_proj_dim))
                for a in attentions
            ]
        cache = EncoderDecoderCache(DynamicCache(config=model.config), DynamicCache(config=model.config))
        start = torch.full((ids.shape[0], 1), int(model.config.decoder_start_token_id), device=ids.device)
        decoder = model.get_decoder()
        decoder(
            input_ids=start,
            encoder_hidden_states=encoded,
            encoder_attention_mask=mask,
            use_cache=True,
            **{cache_argument(decoder): cache},
        )
    return [(layer.keys, layer.values) for layer in cache_layers(cache, True)]
