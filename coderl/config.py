"""Configuration plumbing shared by every command: a TOML or YAML file, then ``key=value`` overrides,
validated by a pydantic model.

``load_config(ExecutorConfig, "executor.toml", ["limits.timeout_s=2", "sandbox.backend=process"])``
reads the file (by extension), applies the dotted overrides in order (values parsed as JSON when
possible, else kept as strings) and validates the result. Every mistake is a ``ConfigError`` whose
message says what to change: the unknown key and the valid ones at its level, or the dotted path,
the bad value and the expected type, or the missing file.
"""

from __future__ import annotations

import difflib
import enum
import json
import re
import tomllib
from collections.abc import Sequence
from pathlib import Path
from types import UnionType
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

__all__ = ["ConfigError", "dump_config", "load_config", "nested_model", "parse_override", "read_config_file"]

M = TypeVar("M", bound=BaseModel)

_SUFFIXES = {".toml": "TOML", ".yaml": "YAML", ".yml": "YAML"}
_CONSTRAINTS = {
    "gt": ">",
    "ge": ">=",
    "lt": "<",
    "le": "<=",
    "min_length": "length >=",
    "max_length": "length <=",
}


class ConfigError(ValueError):
    """A configuration mistake; the message says what to change."""


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a ``.toml``, ``.yaml`` or ``.yml`` file (an empty YAML file is ``{}``)."""
    file = Path(path)
    kind = _SUFFIXES.get(file.suffix.lower())
    if kind is None:
        raise ConfigError(f"config file {file}: unsupported extension; use one of {', '.join(_SUFFIXES)}")
    if not file.is_file():
        raise ConfigError(f"config file not found: {file}")
    try:
        text = file.read_text(encoding="utf-8")
        data = tomllib.loads(text) if kind == "TOML" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {file}: invalid {kind}: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {file}: the top level must be a mapping, not {type(data).__name__}")
    return data


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"limits.timeout_s=2"`` -> ``(["limits", "timeout_s"], 2)``; JSON values, else the raw string."""
    key, sep, raw = item.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(part.strip() for part in parts):
        raise ConfigError(f"override {item!r} must look like dotted.key=value (e.g. limits.timeout_s=2)")
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return [part.strip() for part in parts], value


def load_config(model_cls: type[M], path: str | Path | None = None, overrides: Sequence[str] = ()) -> M:
    """``model_cls`` validated from the file at ``path`` (if any) with ``overrides`` applied in order."""
    data = read_config_file(path) if path is not None else {}
    origin = f"config file {path}" if path is not None else "the defaults"
    _check_keys(model_cls, data, (), origin)
    sources: dict[tuple[str, ...], str] = {}
    for item in overrides:
        parts, value = parse_override(item)
        _apply_override(model_cls, data, parts, value, item)
        sources[tuple(parts)] = f"override {item!r}"
    try:
        return model_cls.model_validate(_onto_defaults(model_cls, data))
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(model_cls, exc, sources, origin)) from None


def _onto_defaults(model_cls: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    """``data`` merged key by key onto ``model_cls()``'s values.

    A section's defaults may be set by the enclosing model (``TrainConfig.sft`` has its own batch
    size and learning rate); validating ``{"sft": {"steps": 10}}`` alone would rebuild the section
    from its class defaults and silently drop them.
    """
    try:
        defaults = model_cls().model_dump(mode="python", round_trip=True)
    except ValidationError:  # a model with required fields: no defaults to keep
        return data
    return _deep_merge(defaults, data)


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def dump_config(model: BaseModel) -> str:
    """The resolved configuration as YAML (loadable again with ``load_config``), for logs and a
    run's config.yaml. Passwords in URLs (``redis://:PASSWORD@HOST``) are written as ``***``: a run
    resumed from the same command line gets its password from there, never from this dump."""
    data = _redacted(model.model_dump(mode="json"))
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True).rstrip("\n")


_URL_WITH_PASSWORD = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@]*:[^/@]*@|[?&](ssl_)?password=", re.I)


def _redacted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    if isinstance(value, str) and _URL_WITH_PASSWORD.search(value):
        from .redis_client import redact_url  # imports redis only when there is a URL to hide

        return redact_url(value)
    return value


# -- keys --------------------------------------------------------------------------------------------


def nested_model(annotation: Any) -> type[BaseModel] | None:
    """The model class behind ``Model`` or ``Model | None``; None for anything else."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, UnionType):
        models = [m for m in map(nested_model, get_args(annotation)) if m is not None]
        return models[0] if len(models) == 1 else None
    return None


def _checks_keys(model_cls: type[BaseModel]) -> bool:
    return model_cls.model_config.get("extra") != "allow"


def _valid_keys(model_cls: type[BaseModel]) -> list[str]:
    keys = list(model_cls.model_fields)
    keys += [f.alias for f in model_cls.model_fields.values() if f.alias and f.alias not in keys]
    return keys


def _field_name(model_cls: type[BaseModel], key: str) -> str | None:
    for name, field in model_cls.model_fields.items():
        if key in (name, field.alias):
            return name
    return None


def _unknown_key(model_cls: type[BaseModel], prefix: tuple[str, ...], key: str, origin: str) -> ConfigError:
    valid = _valid_keys(model_cls)
    dotted = ".".join((*prefix, key))
    close = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
    hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
    level = f"under {'.'.join(prefix)!r}" if prefix else "at the top level"
    return ConfigError(
        f"unknown key {dotted!r} in {origin}{hint}; valid keys {level}: {', '.join(valid) or '(none)'}"
    )


def _check_keys(
    model_cls: type[BaseModel], data: dict[str, Any], prefix: tuple[str, ...], origin: str
) -> None:
    """Every key of ``data`` (recursively, through nested models) must be a field of its model."""
    for key, value in data.items():
        name = _field_name(model_cls, str(key))
        if name is None:
            if _checks_keys(model_cls):
                raise _unknown_key(model_cls, prefix, str(key), origin)
            continue
        child = nested_model(model_cls.model_fields[name].annotation)
        if child is not None and isinstance(value, dict):
            _check_keys(child, value, (*prefix, str(key)), origin)


def _apply_override(
    model_cls: type[BaseModel] | None, data: dict[str, Any], parts: list[str], value: Any, item: str
) -> None:
    """Set ``data[parts[0]][parts[1]]... = value``, checking each key against the model."""
    origin = f"override {item!r}"
    annotation: Any = None
    for depth, key in enumerate(parts):
        prefix = tuple(parts[:depth])
        name = _field_name(model_cls, key) if model_cls is not None else None
        if model_cls is not None and name is None and _checks_keys(model_cls):
            raise _unknown_key(model_cls, prefix, key, origin)
        annotation = model_cls.model_fields[name].annotation if model_cls is not None and name else None
        if depth == len(parts) - 1:
            break
        node = data.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(
                f"{origin}: {'.'.join((*prefix, key))!r} is a value ({node!r}), not a section with keys"
            )
        data, model_cls = node, nested_model(annotation)
        if model_cls is None and annotation is not None and not _is_section(annotation):
            raise ConfigError(
                f"{origin}: {'.'.join((*prefix, key))!r} is a value of type {_describe(annotation)}, "
                "not a section with keys"
            )
    if _is_str(annotation) and value is not None and not isinstance(value, str):
        value = item.partition("=")[2]  # a string field keeps the text as written ("123" stays "123")
    data[parts[-1]] = value


def _is_section(annotation: Any) -> bool:
    """Can a value of this type hold keys (a model, a dict, Any)?"""
    if annotation is Any or nested_model(annotation) is not None or get_origin(annotation) is dict:
        return True
    if isinstance(annotation, type) and issubclass(annotation, dict):
        return True
    return get_origin(annotation) in (Union, UnionType) and any(map(_is_section, get_args(annotation)))


def _is_str(annotation: Any) -> bool:
    if annotation is str:
        return True
    args = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else ()
    return str in args and all(a in (str, type(None)) for a in args)


# -- validation errors -------------------------------------------------------------------------------


def _describe(annotation: Any) -> str:
    """A short human name for a type annotation: ``float``, ``one of 'docker', 'process'``, ..."""
    if annotation is None or annotation is type(None):
        return "null"
    if get_origin(annotation) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"a section ({annotation.__name__}) with keys {', '.join(_valid_keys(annotation))}"
    if get_origin(annotation) in (Union, UnionType):
        return " or ".join(_describe(a) for a in get_args(annotation))
    if isinstance(annotation, type) and not get_args(annotation):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _expected_at(model_cls: type[BaseModel], loc: tuple[Any, ...]) -> str | None:
    """The expected type (and bounds) of the field at ``loc``, or None if it cannot be resolved."""
    current: Any = model_cls
    field = None
    for part in loc:
        model = nested_model(current)
        origin = get_origin(current)
        if model is not None and isinstance(part, str) and (name := _field_name(model, part)):
            field = model.model_fields[name]
            current = field.annotation
        elif origin in (list, tuple, set, frozenset) and isinstance(part, int) and get_args(current):
            current, field = get_args(current)[0], None
        elif origin is dict and len(get_args(current)) == 2:
            current, field = get_args(current)[1], None
        else:
            break
    if current is model_cls:
        return None
    bounds = []
    for meta in field.metadata if field is not None else ():
        bounds += [f"{op} {getattr(meta, name)}" for name, op in _CONSTRAINTS.items() if hasattr(meta, name)]
    return _describe(current) + (f" ({', '.join(bounds)})" if bounds else "")


def _dotted(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _format_validation_error(
    model_cls: type[BaseModel], exc: ValidationError, sources: dict[tuple[str, ...], str], origin: str
) -> str:
    lines = []
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        path = _dotted(loc)
        source = next((sources[loc[:i]] for i in range(len(loc), 0, -1) if loc[:i] in sources), origin)
        expected = _expected_at(model_cls, loc)
        expected_text = f"; expected {expected}" if expected else ""
        if not loc or (error["type"] == "value_error" and isinstance(error["input"], dict)):
            # A check across keys (a model validator): its message names the keys; the input is
            # the whole section, too long to repeat.
            lines.append(f"{path}: {str(error['msg']).removeprefix('Value error, ')}")
        elif error["type"] == "missing":
            lines.append(f"{path}: required value missing{expected_text}")
        elif error["type"] == "extra_forbidden":
            lines.append(f"{path}: unknown key (from {source}); remove it")
        else:
            value = error["input"]
            lines.append(
                f"{path}: bad value {value!r} ({type(value).__name__}, from {source}){expected_text}: "
                f"{error['msg']}"
            )
    return f"invalid {model_cls.__name__} configuration:\n" + "\n".join(f"  {line}" for line in lines)
