"""Which model names exist, answered without torch: the presets (models/loading.py builds them),
local checkpoint directories, and Hugging Face hub names (``org/name``).

A name that is none of these fails at once, with the presets listed, instead of after a minute of
hub retries; a hub name cannot be verified offline and is left to ``from_pretrained``.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

__all__ = ["PRESET_NAMES", "UnknownModelError", "check_model_name", "looks_like_hub_name", "preset_hint"]

PRESET_NAMES = ("tiny", "tiny-causal", "tiny-byte", "t5-small-random", "t5-base-random", "t5-large-random")
"""the keys of models.loading.PRESETS (a test keeps them equal)"""


_HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")


class UnknownModelError(ValueError):
    """A model name that is neither a preset, a local directory nor a hub name."""


def looks_like_hub_name(name: str) -> bool:
    """``org/name``, as the Hugging Face hub spells repositories (not a relative path)."""
    return not name.startswith((".", "/", "~")) and _HUB_NAME.fullmatch(name) is not None


def preset_hint(name: str) -> str:
    """`` (did you mean 'tiny'?)`` for a near miss of a preset name; empty otherwise."""
    close = difflib.get_close_matches(name, PRESET_NAMES, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


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
    if looks_like_hub_name(name) or _cached(name):
        return
    raise UnknownModelError(
        f"model {name!r} is neither a preset{preset_hint(name)} ({presets}) nor a local directory; "
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
