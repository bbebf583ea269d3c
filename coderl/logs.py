"""Logging setup for command-line entry points.

Library code only does ``log = logging.getLogger(__name__)``; a CLI entry point calls
``setup_logging`` once to send records to stderr, as text or as one JSON object per line.
"""

from __future__ import annotations

import json as jsonlib
import logging
import sys
from datetime import UTC, datetime
from typing import IO

__all__ = ["JsonFormatter", "setup_logging"]

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, message, and exc_info when present."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return jsonlib.dumps(entry, ensure_ascii=False, default=str)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at emit time (survives redirection, e.g. in tests)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, _value: IO[str]) -> None:
        pass


def setup_logging(level: str = "INFO", json: bool = False) -> None:
    """Route the root logger to stderr at ``level`` (a level name), as text or JSON lines.

    Calling it again replaces the handler it installed before, so it is safe to call per command.
    """
    name = level.upper()
    if name not in _LEVELS:
        raise ValueError(f"log level {level!r}: expected one of {', '.join(_LEVELS)}")
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _StderrHandler):
            root.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(JsonFormatter() if json else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(name)


LOG_LEVEL_ENV = "CODERL_LOG_LEVEL"
LOG_JSON_ENV = "CODERL_LOG_JSON"


def setup_worker_logging() -> None:
    """``setup_logging`` for processes a launcher starts (Ray workers), from the environment:
    CODERL_LOG_LEVEL (default INFO) and CODERL_LOG_JSON=1."""
    import os

    level = os.environ.get(LOG_LEVEL_ENV, "INFO").upper()
    setup_logging(level if level in _LEVELS else "INFO", json=os.environ.get(LOG_JSON_ENV) == "1")
