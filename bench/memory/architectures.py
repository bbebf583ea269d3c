"""The architectures of the hub models the shipped presets name, as random-weight presets.

The benchmark never downloads: a hub name is replaced by the ``models.loading`` preset of the same
shape (random weights, a byte tokenizer; memory depends on the shapes, not on the values). Only
names whose shape is known here are accepted; any other hub name is refused rather than measured
at a guessed shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from models.names import PRESET_NAMES

__all__ = ["KNOWN_ARCHITECTURES", "Architecture", "UnknownArchitectureError", "architecture_for"]


@dataclass(frozen=True)
class Architecture:
    preset: str
    """the models.loading preset built in its place"""
    shape: str
    """what the preset shares with the hub model, for the report"""


_T5_LARGE = Architecture(
    "t5-large-random",
    "T5-large shape: d_model 1024, d_ff 4096, 24+24 layers, 16 heads, d_kv 64, vocab 32100, tied embeddings",
)
_T5_BASE = Architecture(
    "t5-base-random",
    "T5-base shape: d_model 768, d_ff 3072, 12+12 layers, 12 heads, d_kv 64, vocab 32100, tied embeddings",
)
_T5_SMALL = Architecture(
    "t5-small-random",
    "T5-small shape: d_model 512, d_ff 2048, 6+6 layers, 8 heads, d_kv 64, vocab 32100, tied embeddings",
)

KNOWN_ARCHITECTURES: dict[str, Architecture] = {
    # CodeT5 checkpoints are T5 v1.0 models (ReLU feed-forward, tied embeddings) with a 32,100-token
    # vocabulary; their published config.json files give these shapes.
    "Salesforce/codet5-large-ntp-py": _T5_LARGE,
    "Salesforce/codet5-large": _T5_LARGE,
    "Salesforce/codet5-base": _T5_BASE,
    "Salesforce/codet5-small": _T5_SMALL,
}


class UnknownArchitectureError(ValueError):
    """A model name the benchmark cannot build at its real shape without downloading it."""


def architecture_for(name: str) -> Architecture:
    """What to build for a config's model name: a preset or a local checkpoint directory as it is,
    a known hub name as the preset of its shape."""
    if name in PRESET_NAMES:
        return Architecture(name, "preset, random weights")
    if Path(name).is_dir():
        return Architecture(name, "local checkpoint directory")
    known = KNOWN_ARCHITECTURES.get(name)
    if known is None:
        raise UnknownArchitectureError(
            f"model {name!r}: no known architecture (the benchmark builds random weights at a known "
            f"shape and never downloads); known hub names: {', '.join(KNOWN_ARCHITECTURES)}; or give "
            f"a preset ({', '.join(PRESET_NAMES)}) or a local checkpoint directory"
        )
    return known
