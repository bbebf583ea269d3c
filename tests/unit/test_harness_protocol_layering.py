"""The harness protocol is defined once: protocol.py is stdlib only, job.py does not reach into the
server, and no module on either side of the sandbox boundary spells a protocol name as a bare string
where it reads or writes a frame."""

from __future__ import annotations

import ast
import re
import sys
from enum import StrEnum
from pathlib import Path

import pytest

from executor.harness import protocol

ROOT = Path(__file__).resolve().parents[2]
HARNESS = ROOT / "executor" / "harness"
PROTOCOL_USERS = [
    *sorted(path for path in HARNESS.glob("*.py") if path.name != "protocol.py"),
    ROOT / "executor" / "judge.py",
    ROOT / "executor" / "engine.py",
    ROOT / "executor" / "sandbox" / "connection.py",
]


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, relative ones as written (``.server``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            found.add(base)
            if not node.module:
                found.update(f"{base}{alias.name}" for alias in node.names)
    return found


def test_protocol_is_stdlib_only() -> None:
    for name in imported_modules(HARNESS / "protocol.py"):
        assert name.split(".")[0] in sys.stdlib_module_names or name == "__future__", name


@pytest.mark.parametrize("module", ["job.py", "links.py", "zygote.py", "runner.py", "candidate.py"])
def test_nothing_below_the_server_imports_it(module: str) -> None:
    imports = imported_modules(HARNESS / module)
    assert not {".server", "server", "executor.harness.server"} & imports
    assert "TYPE_CHECKING" not in (HARNESS / module).read_text()


def test_job_gets_the_zygote_as_an_object_not_the_server() -> None:
    source = (HARNESS / "job.py").read_text()
    for reach_in in ("zygote_sock", "zygote_gone", "poll_zygote", "zygote_stopped", "kill_zygote"):
        assert reach_in not in source
    assert not re.search(r"\bserver\.", source)


PROTOCOL_NAMES = {
    member.value
    for value in vars(protocol).values()
    if isinstance(value, type) and issubclass(value, StrEnum) and value is not StrEnum
    for member in value
}


def frame_strings(tree: ast.AST) -> list[tuple[int, str]]:
    """String constants where a frame is built or read: dict keys, ``.get``/``.pop`` keys,
    subscripts, and either side of a comparison (tuples and sets of them included)."""
    spots: list[ast.AST] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            spots.extend(key for key in node.keys if key is not None)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in ("get", "pop") and node.args:
                spots.append(node.args[0])
        elif isinstance(node, ast.Subscript):
            spots.append(node.slice)
        elif isinstance(node, ast.Compare):
            spots.extend([node.left, *node.comparators])
    found = []
    for spot in spots:
        items = spot.elts if isinstance(spot, ast.Tuple | ast.Set | ast.List) else [spot]
        for item in items:
            if isinstance(item, ast.Constant) and isinstance(item.value, str):
                found.append((item.lineno, item.value))
    return found


# Strings that happen to equal a protocol name but belong to another interface.
NOT_PROTOCOL = {"connection.py": {"stdin", "stdout"}}  # Docker's attach parameters


@pytest.mark.parametrize("path", PROTOCOL_USERS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_bare_protocol_strings(path: Path) -> None:
    allowed = NOT_PROTOCOL.get(path.name, set())
    found = frame_strings(ast.parse(path.read_text()))
    bare = [(line, text) for line, text in found if text in PROTOCOL_NAMES and text not in allowed]
    assert not bare, f"{path.name} spells protocol names as strings: {bare}"


def test_the_string_scan_finds_what_it_looks_for() -> None:
    tree = ast.parse('x = {"op": 1}\ny = m.get("outcome")\nz = e["event"] == "exited"\nw = k in ("cpu", "q")')
    assert sorted(text for _, text in frame_strings(tree)) == ["cpu", "event", "exited", "op", "outcome", "q"]
