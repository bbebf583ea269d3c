"""coderl.config: TOML/YAML loading, dotted overrides, and error messages that say what to change."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from pydantic import BaseModel, ConfigDict, Field

from coderl.config import ConfigError, dump_config, load_config, parse_override, read_config_file
from coderl.logs import setup_logging
from executor.config import ExecutorConfig


class Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timeout_s: float = Field(default=4.0, gt=0)
    retries: int = 1
    name: str = "inner"
    mode: Literal["fast", "safe"] = "safe"
    tags: list[str] = Field(default_factory=list)


class Outer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workers: int = Field(default=2, ge=1)
    label: str | None = None
    inner: Inner = Field(default_factory=Inner)
    extra: dict[str, Any] = Field(default_factory=dict)


class Wrapper(BaseModel):
    """A section whose defaults are set by the enclosing model, not by its class."""

    model_config = ConfigDict(extra="forbid")

    inner: Inner = Field(default_factory=lambda: Inner(timeout_s=9.0, name="wrapped"))


class Required(BaseModel):
    seed: int


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# -- loading -----------------------------------------------------------------------------------------


def test_defaults_without_file_or_overrides() -> None:
    assert load_config(Outer, None, []) == Outer()


def test_a_section_keeps_its_enclosing_defaults_under_overrides_and_files(tmp_path: Path) -> None:
    loaded = load_config(Wrapper, None, ["inner.retries=3"])
    assert loaded.inner == Inner(timeout_s=9.0, name="wrapped", retries=3)
    from_file = load_config(Wrapper, write(tmp_path / "c.toml", "[inner]\nmode = 'fast'\n"))
    assert from_file.inner == Inner(timeout_s=9.0, name="wrapped", mode="fast")


def test_toml(tmp_path: Path) -> None:
    file = write(tmp_path / "c.toml", 'workers = 3\n[inner]\ntimeout_s = 1.5\nmode = "fast"\n')
    config = load_config(Outer, file, [])
    assert (config.workers, config.inner.timeout_s, config.inner.mode) == (3, 1.5, "fast")
    assert config.inner.retries == 1  # untouched defaults stay


@pytest.mark.parametrize("suffix", [".yaml", ".yml"])
def test_yaml(tmp_path: Path, suffix: str) -> None:
    file = write(tmp_path / f"c{suffix}", "workers: 5\ninner:\n  tags: [a, b]\n")
    config = load_config(Outer, str(file), [])
    assert (config.workers, config.inner.tags) == (5, ["a", "b"])


def test_empty_yaml_is_defaults(tmp_path: Path) -> None:
    assert load_config(Outer, write(tmp_path / "c.yaml", "# nothing\n"), []) == Outer()


def test_executor_config_from_toml_with_overrides(tmp_path: Path) -> None:
    file = write(tmp_path / "ex.toml", "workers = 8\n[limits]\ntimeout_s = 10\n")
    config = load_config(ExecutorConfig, file, ["limits.timeout_s=2", "sandbox.backend=process", "workers=4"])
    assert (config.workers, config.limits.timeout_s, config.sandbox.backend) == (4, 2.0, "process")


# -- overrides ---------------------------------------------------------------------------------------


def test_overrides_nested_json_typed_and_string_fallback() -> None:
    config = load_config(
        Outer,
        None,
        [
            "workers=4",  # JSON int
            "inner.timeout_s=0.25",  # nested, JSON float
            "inner.mode=fast",  # not JSON: kept as a string
            'inner.tags=["x", "y"]',  # JSON list
            "extra.deep.key=true",  # free-form dict field: sections are created
            "label=null",  # JSON null
        ],
    )
    assert config.workers == 4
    assert config.inner.timeout_s == 0.25 and config.inner.mode == "fast" and config.inner.tags == ["x", "y"]
    assert config.extra == {"deep": {"key": True}}
    assert config.label is None


def test_overrides_apply_in_order_after_the_file(tmp_path: Path) -> None:
    file = write(tmp_path / "c.toml", "workers = 3\n")
    assert load_config(Outer, file, ["workers=4", "workers=5"]).workers == 5


def test_string_field_keeps_the_text_as_written() -> None:
    config = load_config(Outer, None, ["inner.name=123", "label=1e3"])
    assert (config.inner.name, config.label) == ("123", "1e3")


def test_value_may_contain_equals_signs() -> None:
    assert load_config(Outer, None, ["inner.name=a=b"]).inner.name == "a=b"
    assert parse_override(" inner.name = x") == (["inner", "name"], " x")


# -- error messages ----------------------------------------------------------------------------------


def test_unknown_key_in_override_suggests_and_lists_valid_keys() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(Outer, None, ["inner.timout_s=2"])
    message = str(info.value)
    assert "unknown key 'inner.timout_s'" in message
    assert "override 'inner.timout_s=2'" in message
    assert "did you mean 'timeout_s'?" in message
    assert "valid keys under 'inner': timeout_s, retries, name, mode, tags" in message


def test_unknown_top_level_key_in_file(tmp_path: Path) -> None:
    file = write(tmp_path / "c.toml", "wrokers = 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(Outer, file, [])
    message = str(info.value)
    assert f"unknown key 'wrokers' in config file {file}" in message
    assert "did you mean 'workers'?" in message
    assert "valid keys at the top level: workers, label, inner, extra" in message


def test_unknown_nested_key_in_yaml_without_close_match(tmp_path: Path) -> None:
    file = write(tmp_path / "c.yaml", "inner:\n  zzz: 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(Outer, file, [])
    assert str(info.value) == (
        f"unknown key 'inner.zzz' in config file {file}; "
        "valid keys under 'inner': timeout_s, retries, name, mode, tags"
    )


def test_executor_config_unknown_key() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'limits.timeout'.*did you mean 'timeout_s'"):
        load_config(ExecutorConfig, None, ["limits.timeout=3"])


def test_bad_type_names_path_value_and_expected_type() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(Outer, None, ["inner.retries=many"])
    message = str(info.value)
    assert message.startswith("invalid Outer configuration:\n")
    assert (
        "inner.retries: bad value 'many' (str, from override 'inner.retries=many'); expected int" in message
    )


def test_bad_value_in_file_names_the_file_and_bounds(tmp_path: Path) -> None:
    file = write(tmp_path / "c.toml", "[inner]\ntimeout_s = -1\n")
    with pytest.raises(ConfigError) as info:
        load_config(Outer, file, [])
    message = str(info.value)
    assert f"inner.timeout_s: bad value -1 (int, from config file {file}); expected float (> 0)" in message
    assert "greater than 0" in message


def test_bad_literal_lists_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"sandbox.backend: bad value 'dockr'.*one of 'docker', 'process'"):
        load_config(ExecutorConfig, None, ["sandbox.backend=dockr"])


def test_bad_list_item_path() -> None:
    with pytest.raises(ConfigError, match=r"inner.tags\[1\]: bad value 2 \(int, .*\); expected str"):
        load_config(Outer, None, ['inner.tags=["a", 2]'])


def test_section_replaced_by_a_value() -> None:
    with pytest.raises(ConfigError, match=r"inner: bad value 'x' .*expected a section \(Inner\) with keys"):
        load_config(Outer, None, ["inner=x"])


def test_override_below_a_value_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"'workers' is a value of type int, not a section"):
        load_config(Outer, None, ["workers.count=1"])


@pytest.mark.parametrize("item", ["workers", "=3", "inner..x=1", "inner.=1"])
def test_malformed_override(item: str) -> None:
    with pytest.raises(ConfigError, match=r"must look like dotted.key=value"):
        load_config(Outer, None, [item])


def test_missing_required_value() -> None:
    with pytest.raises(ConfigError, match=r"seed: required value missing; expected int"):
        load_config(Required, None, [])


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(Outer, missing, [])
    assert str(info.value) == f"config file not found: {missing}"


def test_unsupported_extension(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unsupported extension; use one of .toml, .yaml, .yml"):
        read_config_file(write(tmp_path / "c.json", "{}"))


@pytest.mark.parametrize(("name", "text"), [("c.toml", "workers = = 3\n"), ("c.yaml", "a: [1\n")])
def test_syntax_error_names_the_file(tmp_path: Path, name: str, text: str) -> None:
    file = write(tmp_path / name, text)
    with pytest.raises(ConfigError, match=rf"config file {file}: invalid (TOML|YAML)"):
        load_config(Outer, file, [])


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"the top level must be a mapping, not list"):
        load_config(Outer, write(tmp_path / "c.yaml", "- 1\n- 2\n"), [])


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


# -- dump --------------------------------------------------------------------------------------------


def test_dump_round_trips_through_yaml(tmp_path: Path) -> None:
    config = load_config(ExecutorConfig, None, ["workers=3", "limits.timeout_s=2", "sandbox.backend=process"])
    text = dump_config(config)
    assert "workers: 3" in text and "backend: process" in text
    assert yaml.safe_load(text)["limits"]["timeout_s"] == 2.0
    assert load_config(ExecutorConfig, write(tmp_path / "dump.yaml", text), []) == config


# -- logging -----------------------------------------------------------------------------------------


def test_setup_logging_json_and_idempotent(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        setup_logging("debug", json=True)
        setup_logging("DEBUG", json=True)  # replaces, never duplicates
        logging.getLogger("coderl.test").info("hello %s", "world")
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1
        assert '"logger": "coderl.test"' in lines[0] and '"message": "hello world"' in lines[0]
        with pytest.raises(ValueError, match="log level 'loud'"):
            setup_logging("loud")
    finally:
        for handler in list(root.handlers):
            if handler not in before:
                root.removeHandler(handler)
