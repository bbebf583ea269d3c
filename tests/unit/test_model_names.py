"""Model names are checked without torch: presets, directories and hub-like names pass, anything else
fails at once with the presets listed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from models.names import PRESET_NAMES, UnknownModelError, check_model_name


def test_the_preset_names_are_the_presets_models_loading_builds() -> None:
    from models.loading import PRESETS

    assert tuple(PRESETS) == PRESET_NAMES


@pytest.mark.parametrize("name", ["tiny", "t5-large-random", "Salesforce/codet5-large-ntp-py"])
def test_presets_and_hub_names_pass(name: str) -> None:
    check_model_name(name)


def test_a_directory_passes_and_a_file_does_not(tmp_path: Path) -> None:
    check_model_name(str(tmp_path))
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(UnknownModelError, match="is a file"):
        check_model_name(str(tmp_path / "weights.bin"))


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("tnyy", "neither a preset \\(did you mean 'tiny'\\?\\)"),
        ("./missing-checkpoint", "neither a preset"),
        ("org/name/extra", "hub name looks like org/name"),
    ],
)
def test_anything_else_fails_with_the_presets_listed(name: str, message: str) -> None:
    with pytest.raises(UnknownModelError, match=message) as failed:
        check_model_name(name)
    assert all(preset in str(failed.value) for preset in PRESET_NAMES)


def test_the_check_does_not_import_torch() -> None:
    code = "import sys; from models.names import check_model_name; check_model_name('tiny'); "
    code += "print(sorted(m for m in ('torch', 'transformers', 'ray') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
