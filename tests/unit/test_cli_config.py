"""The options every command shares: ``--config``/``--set`` (one helper), every config key in
``--help``, help without torch, the renamed worker command, one Redis URL flag, plural grammar."""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any, get_args, get_origin

import pytest
from pydantic import BaseModel

from coderl.cli import ALIASES, COMMANDS, build_parser, main, plural
from coderl.cliconfig import (
    CommandParser,
    add_config_options,
    config_keys,
    format_config_keys,
    load_command_config,
)
from coderl.config import ConfigError

HEAVY = ("torch", "transformers", "ray")


def _model_classes() -> dict[str, list[type[BaseModel]]]:
    from actors.config import SamplingConfig
    from driver.train_config import TrainConfig
    from executor.client import ClientConfig
    from executor.config import ExecutorConfig
    from executor.service_config import WorkerConfig
    from learner.config import SFTCommandConfig
    from problems.suite import SuiteConfig

    return {
        "execute": [ExecutorConfig, ClientConfig],
        "worker": [WorkerConfig],
        "sft": [SFTCommandConfig],
        "train": [TrainConfig],
        "sample": [SamplingConfig],
        "suite": [SuiteConfig],
    }


def _leaf_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every dotted leaf key, walked independently of coderl.cliconfig."""
    keys = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        options = get_args(annotation) if get_origin(annotation) is not None else (annotation,)
        nested = [a for a in options if isinstance(a, type) and issubclass(a, BaseModel)]
        if nested:
            keys += _leaf_keys(nested[0], f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


def _help(command: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert main([command, "--help"]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", ["execute", "worker", "sft", "train", "sample", "suite"])
def test_help_lists_every_config_key_with_its_default(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    text = _help(command, capsys)
    assert "--config FILE" in text and "--set KEY=VALUE" in text
    for model in _model_classes()[command]:
        assert f"{model.__name__} keys" in text
        for key in _leaf_keys(model):
            assert f"\n  {key} = " in text, f"coderl {command} --help does not list {key}"


def test_help_shows_docstrings_also_of_models_without_attribute_docstrings(
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = _help("execute", capsys)
    # ExecutorConfig's sections do not collect their docstrings; the listing reads them from source.
    assert "  limits.timeout_s = 4.0\n      CPU seconds per test (APPS uses 4)\n" in text
    assert "  sandbox.backend = docker\n      docker: hardened long-lived containers" in text


def test_listed_defaults_are_the_parents_defaults() -> None:
    from driver.train_config import TrainConfig

    defaults = {item.key: item.default for item in config_keys(TrainConfig)}
    resolved = TrainConfig()
    assert (
        defaults["sft.optimizer.lr"] == resolved.sft.optimizer.lr
    )  # set by TrainConfig, not OptimizerConfig
    assert defaults["sampler.sampling.n"] == resolved.sampler.sampling.n
    assert defaults["run_dir"] == str(resolved.run_dir)


def test_format_config_keys_layout() -> None:
    class Section(BaseModel):
        depth: int = 3
        """how deep"""

    class Model(BaseModel):
        name: str = "x"
        """the name"""
        section: Section = Section()
        ratio: float | None = None

    text = format_config_keys(Model, "Model keys", notes={"section.depth": "a note"})
    assert text.splitlines() == [
        "Model keys:",
        "  name = x",
        "      the name",
        "  section.depth = 3",
        "      how deep",
        "      a note",
        "  ratio = null",
    ]


def test_a_plain_parser_gets_the_listing_as_epilog() -> None:
    from actors.config import SamplingConfig

    parser = argparse.ArgumentParser(prog="p")
    add_config_options(parser, SamplingConfig, "SamplingConfig", "top_p=0.9")
    assert "  top_p = 0.95" in parser.format_help()
    assert isinstance(build_parser("sample"), CommandParser)


@pytest.mark.parametrize("command", ["train", "sft", "sample", "worker", "execute", "suite"])
def test_help_imports_neither_torch_transformers_nor_ray(command: str) -> None:
    code = (
        "import sys\n"
        "from coderl.cli import main\n"
        f"assert main([{command!r}, '--help']) == 0\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "[]"


# -- loading ------------------------------------------------------------------------------------------


def _args(config: Path | None = None, overrides: list[str] | None = None) -> argparse.Namespace:
    return argparse.Namespace(config=config, overrides=overrides or [])


def test_load_command_config_precedence(tmp_path: Path) -> None:
    from actors.config import SamplingConfig

    file = tmp_path / "s.toml"
    file.write_text("n = 3\ntop_p = 0.5\ntemperature = 0.1\n")
    args = _args(file, ["top_p=0.7", "temperature=0.2"])
    config = load_command_config(SamplingConfig, args, {"temperature": 0.3, "seed": None})
    assert (config.n, config.top_p, config.temperature, config.seed) == (3, 0.7, 0.3, 0)


def test_defaults_stay_under_whatever_the_user_set(tmp_path: Path) -> None:
    from learner.config import SFTCommandConfig

    defaults = {"optimizer.lr": 1e-3, "batch_size": 4}
    config = load_command_config(SFTCommandConfig, _args(), None, defaults)
    assert (config.optimizer.lr, config.batch_size) == (1e-3, 4)
    config = load_command_config(SFTCommandConfig, _args(None, ["optimizer.lr=5e-4"]), None, defaults)
    assert (config.optimizer.lr, config.batch_size) == (5e-4, 4)
    config = load_command_config(SFTCommandConfig, _args(), {"batch_size": 2}, defaults)
    assert (config.optimizer.lr, config.batch_size) == (1e-3, 2)
    file = tmp_path / "c.yaml"
    file.write_text("optimizer:\n  weight_decay: 0\n")  # a section named, not its lr
    config = load_command_config(SFTCommandConfig, _args(file), None, defaults)
    assert (config.optimizer.lr, config.optimizer.weight_decay) == (1e-3, 0)
    file.write_text("optimizer:\n  lr: 3.0e-5\n")
    assert load_command_config(SFTCommandConfig, _args(file), None, defaults).optimizer.lr == 3e-5
    section = ['optimizer={"lr": 7e-5}']
    assert load_command_config(SFTCommandConfig, _args(None, section), None, defaults).optimizer.lr == 7e-5


def test_config_errors_still_say_what_to_change() -> None:
    from actors.config import SamplingConfig

    with pytest.raises(ConfigError, match=r"unknown key 'top_k'.*did you mean 'top_p'"):
        load_command_config(SamplingConfig, _args(None, ["top_k=3"]))


# -- names --------------------------------------------------------------------------------------------


def test_worker_is_the_service_command_and_executor_a_hidden_alias(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert "worker" in COMMANDS and "executor" not in COMMANDS and ALIASES == {"executor": "worker"}
    assert main(["--help"]) == 0
    listing = capsys.readouterr().out
    assert "    worker " in listing and "executor " not in listing.replace("(an executor", "")
    assert main(["executor", "--help"]) == 0
    assert "WorkerConfig keys" in capsys.readouterr().out


def test_the_old_worker_name_warns(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import executor.__main__ as worker_cli

    seen: list[Any] = []
    monkeypatch.setattr(worker_cli, "run", lambda args: seen.append(args) or 0)
    with caplog.at_level(logging.WARNING, logger="coderl.cli"):
        assert main(["executor", "--redis-url", "redis://h:1/0"]) == 0
    assert "coderl executor is deprecated" in caplog.text and "use coderl worker" in caplog.text
    assert seen[0].redis_url == "redis://h:1/0"


def test_worker_config_from_environment_file_set_and_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from executor.__main__ import resolve_config

    monkeypatch.setenv("CODERL_REDIS_URL", "redis://env:1/0")
    monkeypatch.setenv("CODERL_PREFIX", "envprefix")
    parser = build_parser("worker")
    args = parser.parse_args(["worker", "--set", "prefix=setprefix", "--workers", "3"])
    config = resolve_config(args)
    assert (config.redis_url, config.prefix, config.executor.workers) == ("redis://env:1/0", "setprefix", 3)
    args = parser.parse_args(["worker", "--redis-url", "redis://flag:2/0"])
    assert resolve_config(args).redis_url == "redis://flag:2/0"


def test_python_m_executor_reports_config_errors_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from executor.__main__ import main as worker_main

    assert worker_main(["--set", "prefetc=2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m executor: error: unknown key 'prefetc'") and "Traceback" not in err


@pytest.mark.parametrize("flag", ["--redis-url", "--via"])
def test_execute_takes_the_redis_url_under_one_name(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser("execute").parse_args(
        ["execute", "--problems", "p", "--samples", "s", "--out", "o", flag, "redis://h:1/0"]
    )
    assert args.redis_url == "redis://h:1/0"
    assert main(["execute", "--help"]) == 0
    assert "--via" not in capsys.readouterr().out  # the old name stays hidden


def test_a_redis_url_flag_checks_its_value(capsys: pytest.CaptureFixture[str]) -> None:
    for command in (["execute", "--problems", "p", "--samples", "s", "--out", "o"], ["worker"]):
        assert main([*command, "--redis-url", "localhost:6379"]) == 2
        assert "expected redis://HOST:PORT[/DB], got 'localhost:6379'" in capsys.readouterr().err


def test_plural() -> None:
    assert [plural(n, "problem") for n in (0, 1, 2)] == ["0 problems", "1 problem", "2 problems"]
    assert plural(1, "scored sample") == "1 scored sample"
    assert plural(3, "child", "children") == "3 children"


def test_train_logs_one_line_for_the_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from driver import train_cli

    class Stop(Exception):
        pass

    def fake_train(*_: object, **__: object) -> None:
        raise Stop

    import driver.train

    monkeypatch.setattr(driver.train, "train", fake_train)
    caplog.set_level(logging.INFO)
    with pytest.raises(Stop):
        main(["train", "--run-dir", str(tmp_path / "run"), "--set", "phases.rl_steps=7"])
    lines = [r.getMessage() for r in caplog.records if r.name == train_cli.log.name]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert "rl 7 steps" in lines[0] and str(tmp_path / "run" / "config.yaml") in lines[0]
