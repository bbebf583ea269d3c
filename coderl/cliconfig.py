"""The ``--config FILE`` / ``--set KEY=VALUE`` options every command shares, and the config keys in
its ``--help``.

A command calls ``add_config_options(parser, Model)`` in ``add_arguments`` and
``load_command_config(Model, args, flags)`` in ``run``: the file, then the ``--set`` overrides, then
the command's own flags (``flags`` maps a dotted key to a flag's value; None means "not given").
``--help`` ends with every dotted key of the model, its default and its docstring; the listing is
built only when help is printed, from the model's fields (``Field.description``, or the attribute
docstrings in the source when the model does not collect them), so it costs nothing otherwise and
never imports more than the model's own module.
"""

from __future__ import annotations

import argparse
import ast
import functools
import inspect
import itertools
import json
import textwrap
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from .config import load_config, nested_model, parse_override, read_config_file

__all__ = [
    "CommandParser",
    "ConfigKey",
    "add_config_options",
    "config_keys",
    "format_config_keys",
    "load_command_config",
    "redis_url",
]

M = TypeVar("M", bound=BaseModel)
ModelSource = type[BaseModel] | Callable[[], type[BaseModel]]
"""a model class, or a function returning it (imported only when help is printed)"""
WIDTH = 100


class CommandParser(argparse.ArgumentParser):
    """An ArgumentParser whose help ends with the config keys of the models registered on it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config_sections: list[tuple[str, ModelSource, Mapping[str, str]]] = []

    def format_help(self) -> str:
        sections = [
            format_config_keys(_model(source), title, notes) for title, source, notes in self.config_sections
        ]
        return "\n\n".join([super().format_help().rstrip("\n"), *sections]) + "\n"


def add_config_options(
    parser: argparse.ArgumentParser,
    model: ModelSource,
    name: str,
    example: str,
    *,
    file_hint: str = "",
    more: Sequence[tuple[str, ModelSource]] = (),
    notes: Mapping[str, str] | None = None,
) -> None:
    """Add ``--config FILE`` and ``--set KEY=VALUE ...`` for ``model`` (called ``name`` in help);
    ``example`` is one override shown in the help of ``--set``. ``more`` lists further models the
    options may configure (title, model), e.g. the Redis client of ``coderl execute``; ``file_hint``
    follows the help of ``--config`` (e.g. an example file); ``notes``
    adds a line under a key's entry (e.g. a default that depends on another option)."""
    group = parser.add_argument_group("configuration (every key is listed at the end)")
    group.add_argument(
        "--config", type=Path, metavar="FILE", help=f"{name} as a TOML or YAML file{file_hint}"
    )
    group.add_argument(
        "--set",
        dest="overrides",
        action="extend",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a config key, e.g. {example} (after --config, before the flags)",
    )
    sections: list[tuple[str, ModelSource, Mapping[str, str]]] = [
        (f"{name} keys (--config FILE, --set KEY=VALUE)", model, notes or {})
    ]
    sections += [(title, source, {}) for title, source in more]
    if isinstance(parser, CommandParser):
        parser.config_sections += sections
    else:  # a plain parser: build the listing now
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        parser.epilog = "\n\n".join(format_config_keys(_model(s), t, n) for t, s, n in sections)


def load_command_config(
    model: type[M],
    args: argparse.Namespace,
    flags: Mapping[str, object] | None = None,
    defaults: Mapping[str, object] | None = None,
) -> M:
    """``model`` from ``--config``, then ``--set``, then the given ``flags`` (None: not given).

    ``defaults`` (dotted key -> value) replace the model's own defaults where neither the file,
    ``--set`` nor a flag gives the key or a section holding it (e.g. a model preset's learning rate).
    """
    overrides = list(args.overrides)
    overrides += [f"{key}={value}" for key, value in (flags or {}).items() if value is not None]
    if defaults:
        given = _given_keys(args.config, overrides)
        unset = [f"{key}={json.dumps(value)}" for key, value in defaults.items() if key not in given]
        overrides = unset + overrides
    return load_config(model, args.config, overrides)


def _given_keys(path: str | Path | None, overrides: Sequence[str]) -> set[str]:
    """The dotted leaf keys a config file and overrides set (a section's keys one by one)."""
    keys: set[str] = set()

    def walk(value: Any, key: str) -> None:
        if isinstance(value, Mapping) and value:
            for name, item in value.items():
                walk(item, f"{key}.{name}" if key else str(name))
        elif key:
            keys.add(key)

    walk(read_config_file(path) if path is not None else {}, "")
    for item in overrides:
        parts, value = parse_override(item)
        walk(value, ".".join(parts))
    return keys


def redis_url(value: str) -> str:
    """An argparse type for ``--redis-url``: ``redis://HOST:PORT[/DB]`` (or rediss://, unix://)."""
    if not value.startswith(("redis://", "rediss://", "unix://")):
        raise argparse.ArgumentTypeError(f"expected redis://HOST:PORT[/DB], got {value!r}")
    return value


# -- the listing -------------------------------------------------------------------------------------


class ConfigKey:
    """One leaf key of a config model: its dotted name, default and docstring."""

    __slots__ = ("default", "doc", "key")

    def __init__(self, key: str, default: Any, doc: str) -> None:
        self.key, self.default, self.doc = key, default, doc

    def __repr__(self) -> str:
        return f"ConfigKey({self.key!r}, {self.default!r}, {self.doc!r})"


def config_keys(model: type[BaseModel]) -> list[ConfigKey]:
    """Every dotted leaf key of ``model``, in field order, with the model's own defaults (a section
    keeps the defaults its parent gives it, e.g. ``TrainConfig.sft.optimizer.lr``)."""
    return list(_walk(model, _defaults(model), ""))


def format_config_keys(model: type[BaseModel], title: str, notes: Mapping[str, str] | None = None) -> str:
    """The help text listing ``config_keys(model)``: ``key = default`` and its docstring below."""
    lines = [f"{title}:"]
    for item in config_keys(model):
        lines.append(f"  {item.key} = {_show(item.default)}")
        for text in (item.doc, (notes or {}).get(item.key, "")):
            if text:
                lines += textwrap.wrap(
                    text, WIDTH, initial_indent=" " * 6, subsequent_indent=" " * 6, break_on_hyphens=False
                )
    return "\n".join(lines)


def _model(source: ModelSource) -> type[BaseModel]:
    if isinstance(source, type) and issubclass(source, BaseModel):
        return source
    return source()  # type: ignore[call-arg]


def _defaults(model: type[BaseModel]) -> dict[str, Any]:
    try:
        return model().model_dump(mode="json")
    except ValidationError:  # required fields: each field's own default, where it has one
        return {}


def _walk(model: type[BaseModel], values: Mapping[str, Any], prefix: str) -> Iterator[ConfigKey]:
    docs = _docstrings(model)
    for name, field in model.model_fields.items():
        key = f"{prefix}{field.alias or name}"
        nested = nested_model(field.annotation)
        value = values.get(name, _field_default(field))
        if nested is not None and (isinstance(value, Mapping) or value is None):
            yield from _walk(nested, value or _defaults(nested), f"{key}.")
            continue
        doc = field.description or docs.get(name, "")
        yield ConfigKey(key, value, " ".join(doc.split()))


def _field_default(field: Any) -> Any:
    if field.default_factory is not None:
        value = field.default_factory()
    elif field.is_required():
        return "(required)"
    else:
        value = field.default
    return value.model_dump(mode="json") if isinstance(value, BaseModel) else value


def _show(value: Any) -> str:
    if isinstance(value, str):
        return value if value else '""'
    if isinstance(value, Path):
        return str(value)
    try:
        return json.dumps(value)
    except TypeError:
        return str(value)


@functools.cache
def _docstrings(model: type[BaseModel]) -> dict[str, str]:
    """Attribute docstrings (a string right after ``name: type = ...``) of ``model`` and its bases,
    for models that do not set ``use_attribute_docstrings``."""
    docs: dict[str, str] = {}
    for cls in reversed([c for c in model.__mro__ if issubclass(c, BaseModel) and c is not BaseModel]):
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, after in itertools.pairwise(body):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[node.target.id] = inspect.cleandoc(after.value.value)
    return docs
