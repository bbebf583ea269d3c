"""Weights as one contiguous byte buffer per dtype plus a small typed manifest: what a weight
broadcast sends from the learner to the samplers (issue 14).

Why this shape: Ray serialises numpy arrays out of band (pickle protocol 5), so a ``PackedWeights``
enters the object store as a few large memcpys instead of hundreds of pickled tensors, and a
receiver on the same node reads its buffers in place (read-only shared memory). Unpacking copies
views of those buffers straight into the receiving model's tensors, with no intermediate state
dict. The collective path (models/weight_group.py) moves the same buffers over a process group, so
both paths share the layout and the unpacking.

Tied tensors (T5's ``lm_head`` and ``encoder/decoder.embed_tokens`` are ``shared``) travel once,
under their first state-dict name, with the other names as aliases; a receiver whose copies are not
tied gets each of them written.
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

__all__ = ["PackedWeights", "TensorEntry", "WeightLayout", "WeightPacker", "load_packed", "model_tensors"]


@dataclass(frozen=True, slots=True)
class TensorEntry:
    """Where one tensor lies in its dtype's buffer."""

    name: str
    aliases: tuple[str, ...]
    """other state-dict names of the same tensor (tied weights)"""
    dtype: str
    """a torch dtype's name: float32, bfloat16, int64, ..."""
    shape: tuple[int, ...]
    offset: int
    """in elements of ``dtype``, from the start of that dtype's buffer"""
    numel: int

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


@dataclass(frozen=True)
class WeightLayout:
    """The manifest: every tensor of a model's state dict, grouped by dtype into flat buffers."""

    entries: tuple[TensorEntry, ...]
    sizes: tuple[tuple[str, int], ...]
    """(dtype, elements) of each buffer, in a fixed order"""

    @classmethod
    def of(cls, tensors: Mapping[str, torch.Tensor]) -> WeightLayout:
        """The layout of a state dict (``model_tensors``), tied tensors listed once."""
        by_identity: dict[int, list[str]] = {}
        for name, tensor in tensors.items():
            by_identity.setdefault(id(tensor), []).append(name)
        sizes: dict[str, int] = {}
        entries = []
        for names in by_identity.values():
            tensor = tensors[names[0]]
            dtype = _dtype_name(tensor.dtype)
            offset = sizes.get(dtype, 0)
            entries.append(
                TensorEntry(names[0], tuple(names[1:]), dtype, tuple(tensor.shape), offset, tensor.numel())
            )
            sizes[dtype] = offset + tensor.numel()
        return cls(tuple(entries), tuple(sorted(sizes.items())))

    def nbytes(self, dtype: str) -> int:
        return dict(self.sizes)[dtype] * _torch_dtype(dtype).itemsize

    @property
    def total_bytes(self) -> int:
        return sum(self.nbytes(dtype) for dtype, _ in self.sizes)

    def to_json(self) -> str:
        """Plain data (what the collective path's ranks exchange through their store; never pickle,
        which would run whatever code a forged store value named)."""
        return json.dumps([[e.name, e.aliases, e.dtype, e.shape, e.offset, e.numel] for e in self.entries])

    @classmethod
    def from_json(cls, text: str) -> WeightLayout:
        sizes: dict[str, int] = {}
        entries = []
        for name, aliases, dtype, shape, offset, numel in json.loads(text):
            _torch_dtype(dtype)  # an unknown dtype fails here, not at the first copy
            shape, offset, numel = tuple(map(int, shape)), int(offset), int(numel)
            entries.append(TensorEntry(str(name), tuple(map(str, aliases)), dtype, shape, offset, numel))
            sizes[dtype] = max(sizes.get(dtype, 0), offset + numel)
        return cls(tuple(entries), tuple(sorted(sizes.items())))

    def allocate(self, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        """Empty byte buffers for this layout (a receiver's staging area)."""
        return {d: torch.empty(self.nbytes(d), dtype=torch.uint8, device=device) for d, _ in self.sizes}


@dataclass(frozen=True)
class PackedWeights:
    """A policy's weights and their version, as they cross Ray: the version always travels with
    the weights, so a receiver never has to be told separately which policy it now holds."""

    layout: WeightLayout
    buffers: dict[str, np.ndarray]
    """dtype name -> the raw bytes of that dtype's buffer (uint8)"""
    version: int

    def __post_init__(self) -> None:
        for dtype, _ in self.layout.sizes:
            if dtype not in self.buffers or self.buffers[dtype].nbytes != self.layout.nbytes(dtype):
                raise ValueError(f"packed weights: the {dtype} buffer does not match the manifest")

    @property
    def nbytes(self) -> int:
        return sum(b.nbytes for b in self.buffers.values())

    def tensors(self) -> dict[str, torch.Tensor]:
        """Name -> a read-only view of each tensor (aliases included), to inspect or compare."""
        views = dict(_views(self.layout, byte_tensors(self.buffers)))
        return {name: views[e.name] for e in self.layout.entries for name in e.names}


def model_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """What a broadcast sends: the model's state dict, its parameters themselves (not copies)."""
    return model.state_dict(keep_vars=True)


class WeightPacker:
    """Packs a model's weights into ``PackedWeights``, reusing its buffers once nobody holds them.

    Why reuse: a fresh buffer of a large model costs a page fault per 4 KiB on first write, several
    times the copy itself on small VMs; a buffer still referenced (by a ``PackedWeights`` someone
    kept, or a view of it) is never overwritten: a new one is allocated instead.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, np.ndarray] = {}

    def pack(self, model: nn.Module, version: int) -> PackedWeights:
        tensors = model_tensors(model)
        layout = WeightLayout.of(tensors)
        buffers = {dtype: self._buffer(dtype, layout.nbytes(dtype)) for dtype, _ in layout.sizes}
        views = dict(_views(layout, byte_tensors(buffers)))
        with torch.no_grad():
            for entry in layout.entries:
                views[entry.name].copy_(tensors[entry.name].detach())
        return PackedWeights(layout, buffers, version)

    def _buffer(self, dtype: str, nbytes: int) -> np.ndarray:
        if not self._reusable(dtype, nbytes):
            self._buffers[dtype] = np.empty(nbytes, dtype=np.uint8)
        return self._buffers[dtype]

    def _reusable(self, dtype: str, nbytes: int) -> bool:
        if dtype not in self._buffers or self._buffers[dtype].nbytes != nbytes:
            return False
        # Exactly 2 references, self._buffers and getrefcount's argument, when nobody else holds it.
        return sys.getrefcount(self._buffers[dtype]) == 2


def load_packed(model: nn.Module, packed: PackedWeights) -> None:
    """Copy packed weights into ``model`` in place (refused, untouched, if they do not fit it)."""
    copy_into(model, packed.layout, byte_tensors(packed.buffers), packed.version)


def copy_into(
    model: nn.Module, layout: WeightLayout, buffers: Mapping[str, torch.Tensor], version: int
) -> None:
    """Copy ``layout``'s tensors from byte ``buffers`` (any device) into ``model``'s own tensors."""
    targets = model_tensors(model)
    check_fits(layout, targets, f"the weights of policy version {version}")
    views = dict(_views(layout, buffers))
    with torch.no_grad():
        for entry in layout.entries:
            distinct = {id(targets[n]): targets[n] for n in entry.names}  # tied: written once
            for target in distinct.values():
                target.copy_(views[entry.name])


def check_fits(layout: WeightLayout, targets: Mapping[str, torch.Tensor], what: str) -> None:
    """Raise a ValueError naming what differs when ``layout``'s tensors (``what``) are not those of
    ``targets`` (tied or not, and dtype aside: copying converts)."""
    sent = {name for entry in layout.entries for name in entry.names}
    problems = []
    if missing := sorted(targets.keys() - sent):
        problems.append(f"missing from the weights: {_some(missing)}")
    if unexpected := sorted(sent - targets.keys()):
        problems.append(f"not in this model: {_some(unexpected)}")
    shapes = [
        f"{name} (sent {list(entry.shape)}, model {list(targets[name].shape)})"
        for entry in layout.entries
        for name in entry.names
        if name in targets and tuple(targets[name].shape) != entry.shape
    ]
    if shapes:
        problems.append(f"shapes differ: {_some(shapes)}")
    if problems:
        raise ValueError(
            f"{what} do not fit this model: {'; '.join(problems)}. "
            "The learner and every sampler must load the same policy.model"
        )


def byte_tensors(buffers: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Torch views of numpy byte buffers, without a copy."""
    with warnings.catch_warnings():
        # Buffers read from Ray's object store are read-only shared memory; they are only read here
        # (torch warns because it cannot mark a tensor read-only).
        warnings.filterwarnings("ignore", message=".*not writable.*")
        return {dtype: torch.from_numpy(buffer) for dtype, buffer in buffers.items()}


def _views(layout: WeightLayout, buffers: Mapping[str, torch.Tensor]) -> Iterator[tuple[str, torch.Tensor]]:
    typed = {dtype: buffers[dtype].view(_torch_dtype(dtype)) for dtype, _ in layout.sizes}
    for entry in layout.entries:
        flat = typed[entry.dtype][entry.offset : entry.offset + entry.numel]
        yield entry.name, flat.view(entry.shape)


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _torch_dtype(name: str) -> torch.dtype:
    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"packed weights name an unknown dtype {name!r}")
    return dtype


def _some(names: list[str], shown: int = 5) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
