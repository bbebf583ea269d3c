"""Which model names exist, answered without torch: the presets (models/loading.py builds them),
local checkpoint directories, and Hugging Face hub names (``org/name``).

A name that is none of these fails at once, with the presets listed, instead of after a minute of
hub retries; a hub name cannot be verified offline and is left to ``from_pretrained``.
"""

from __future__ import annotations

import difflib
from pathlib import Path

__all__ = ["PRESET_NAMES", "UnknownModelError", "check_model_name"]

PRESET_NAMES = ("tiny", "tiny-causal", "tiny-byte", "t5-small-random", "t5-large-random")
"""the keys of models.loading.PRESETS (a test keeps them equal)"""


class UnknownModelError(ValueError):
    """A model name that is neither a preset, a local directory nor a hub name."""


def check_model_name(name: str) -> None:
    """Raise UnknownModelError unless ``name`` is a preset, an existing directory, looks like a hub
    name (``org/name``) or is a name in the local hub cache."""
    if name in PRESET_NAMES or Path(name).is_dir():
        return
    presets = ", ".join(PRESET_NAMES)
    if Path(name).exists():
        raise UnknownModelError(
            f"model {name!r} is a file; give a checkpoint directory or a preset ({presets})"
        )
    hub_like = not name.startswith((".", "/", "~")) and name.count("/") == 1 and not name.endswith("/")
    if hub_like or _cached(name):
        return
    close = difflib.get_close_matches(name, PRESET_NAMES, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise UnknownModelError(
        f"model {name!r} is neither a preset{hint} ({presets}) nor a local directory; "
        "a Hugging Face hub name looks like org/name (e.g. Salesforce/codet5-large-ntp-py)"
    )


def _cached(name: str) -> bool:
    """Is ``name`` a model in the local Hugging Face cache (a legacy hub name such as gpt2)?"""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    try:
        return isinstance(try_to_load_from_cache(name, "config.json"), str)
    except ValueError:  # not a valid repository id
        return False
