"""Sandboxed execution of model-written programs: verdicts and CodeRL rewards.

Never imports torch or ray (the executor runs on CPU-only hosts and in slim images).
"""

from .config import ExecutorConfig, LimitsConfig, SandboxConfig
from .engine import ExecutionItem, Executor

__all__ = ["ExecutionItem", "Executor", "ExecutorConfig", "LimitsConfig", "SandboxConfig"]
