"""bench/ is a package of subject packages: each runs as ``python -m bench.<subject>`` from the
repository root, and none edits sys.path or shadows a project package."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"
SUBJECTS = ("executor", "service", "models", "pipeline", "learning", "memory", "critical")
PROJECT_PACKAGES = ("coderl", "problems", "models", "executor", "actors", "critic", "learner", "driver")


def test_every_subject_is_a_package_with_a_main() -> None:
    for subject in SUBJECTS:
        assert (BENCH / subject / "__init__.py").is_file() and (BENCH / subject / "__main__.py").is_file()


def test_no_module_edits_the_import_path() -> None:
    offenders = [
        str(path.relative_to(REPO))
        for path in BENCH.rglob("*.py")
        if "sys.path" in path.read_text() or "PYTHONPATH" in path.read_text()
    ]
    assert offenders == []


def test_project_packages_stay_the_project_s_own() -> None:
    # As documented (python -m, from the root), bench.executor and bench.models are subpackages.
    code = "import bench.executor.cli, bench.models.cli, executor, models\n"
    code += "print(executor.__file__, models.__file__)"
    found = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120, check=True
    ).stdout.split()
    assert found == [str(REPO / "executor" / "__init__.py"), str(REPO / "models" / "__init__.py")]


def test_no_script_folder_holds_a_module_named_like_a_project_package() -> None:
    # Running a file puts its folder first on sys.path (bench/executor/minimal_judge.py is run so).
    scripts = [p for p in BENCH.rglob("*.py") if 'if __name__ == "__main__":' in p.read_text()]
    assert scripts, "expected the minimal judge at least"
    for folder in {p.parent for p in scripts}:
        names = {p.stem for p in folder.iterdir() if p.suffix == ".py" or p.is_dir()}
        assert not names & set(PROJECT_PACKAGES), folder


@pytest.mark.parametrize("subject", SUBJECTS)
def test_runs_as_a_module_and_refuses_to_run_as_a_path(subject: str) -> None:
    helped = subprocess.run(
        [sys.executable, "-m", f"bench.{subject}", "--help"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith(f"usage: python -m bench.{subject}")
    as_path = subprocess.run(
        [sys.executable, str(BENCH / subject), "--help"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert as_path.returncode == 1 and f"python -m bench.{subject}" in as_path.stderr
