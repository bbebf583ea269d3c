"""The training pipeline's one metrics sink: a JSONL history, TensorBoard scalars, Ray gauges, PNG curves.

Only the learner/driver writes metrics. Keys are namespaced with ``/`` (``loss/rl``,
``exec/pass_rate``, ``exec/verdict/PASSED``, ``throughput/samples_per_s``, ``idle/learner``,
``eval/held_out_pass@1``...); the part before the first ``/`` is the namespace, and each namespace
gets one PNG of learning curves.

Layout of a run directory::

    run_dir/metrics.jsonl   one {"step", "time", **metrics} object per write; the source of truth
    run_dir/tensorboard/    TensorBoard event files (``tensorboard --logdir run_dir/tensorboard``)
    run_dir/curves/         <namespace>.png, rendered at close() and every ``plot_every`` writes

``metrics.jsonl`` is flushed on every write, so a killed run keeps its history (a truncated last
line is skipped by :func:`read_metrics` and cut off when the run resumes). Non-finite floats are
written as ``null`` (JSON has no NaN) and read back as NaN.

Resuming: a sink opened on a run directory that already holds ``metrics.jsonl`` appends to it. A
resumed run restarts at its last checkpoint's step (``resume_step``), usually earlier than the last
one a killed run logged: the records past it move to ``metrics.superseded.jsonl`` first, so
``metrics.jsonl`` never repeats a step or goes back in policy version. TensorBoard hides the stale
events through ``SummaryWriter(purge_step=...)``; the curves keep the latest records of a step
(driver/curves.py).

Ray gauges are set only while Ray is initialised in this process (the driver); a key ``loss/rl``
becomes the gauge ``coderl_loss_rl``, which Ray's Prometheus endpoint serves as
``ray_coderl_loss_rl`` about every 10 s. A non-finite value leaves a gauge at its last value.

A metrics backend never stops training: the first error of a backend (JSONL, TensorBoard, Ray,
curves) is logged as a warning and that backend is disabled for the rest of the run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

from .curves import PHASE_KEY, plot_curves

if TYPE_CHECKING:
    from ray.util.metrics import Gauge
    from torch.utils.tensorboard import SummaryWriter

__all__ = [
    "CURVES_DIR",
    "METRICS_FILE",
    "PHASE_KEY",
    "SUPERSEDED_FILE",
    "TENSORBOARD_DIR",
    "MetricsSink",
    "plot_curves",
    "ray_metric_name",
    "read_metrics",
]

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"
CURVES_DIR = "curves"
RAY_PREFIX = "coderl_"
_RESERVED = ("step", "time")
_TAIL_BYTES = 1 << 20
_INVALID_RAY_CHARS = re.compile(r"[^a-zA-Z0-9_]+")
_NAMESPACES = {
    "loss": "learner loss",
    "critic": "critic quality",
    "exec": "execution outcomes of sampled programs",
    "throughput": "pipeline throughput",
    "queue": "queue depth",
    "staleness": "policy versions between sampling and learning",
    "sync": "weight synchronisation",
    "idle": "fraction of time a component waits",
    "eval": "held-out evaluation",
}


def ray_metric_name(key: str) -> str:
    """A Ray/Prometheus metric name ([a-zA-Z_][a-zA-Z0-9_]*) for a metrics key.

    ``loss/rl`` -> ``coderl_loss_rl``; ``eval/held_out_pass@1`` -> ``coderl_eval_held_out_pass_1``.
    """
    return RAY_PREFIX + _INVALID_RAY_CHARS.sub("_", key).strip("_")


def _namespace(key: str) -> str:
    return key.split("/", 1)[0]


def _as_number(key: str, value: Any) -> float | int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    try:
        return float(value)  # floats, numpy scalars, 0-d tensors
    except (TypeError, ValueError) as exc:
        raise TypeError(f"metric {key!r}: expected a number, got {type(value).__name__}") from exc


def _checked(metrics: Mapping[str, Any]) -> dict[str, float | int]:
    """The metrics as plain numbers; a bad key or value is a caller bug, so it raises."""
    checked: dict[str, float | int] = {}
    for key, value in metrics.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"metric keys must be non-empty strings, got {key!r}")
        if key in _RESERVED:
            raise ValueError(f"metric key {key!r} is reserved: the sink writes it itself")
        checked[key] = _as_number(key, value)
    return checked


def _finite_or_none(value: float | int) -> float | int | None:
    return value if math.isfinite(value) else None


SUPERSEDED_FILE = "metrics.superseded.jsonl"
"""records a killed run wrote past the checkpoint its resumption starts from"""


def _supersede_after(path: Path, step: int) -> int:
    """Move the records past ``step`` (a killed run's, after the checkpoint the run resumes from)
    to ``metrics.superseded.jsonl`` beside it, so ``metrics.jsonl`` never repeats a step; how many."""
    kept, later = [], []
    for line in path.read_bytes().splitlines(keepends=True):
        try:
            past = json.loads(line)["step"] > step
        except (ValueError, KeyError, TypeError):
            past = False  # not a record: left where it is, for read_metrics to report
        (later if past else kept).append(line)
    if later:
        with (path.parent / SUPERSEDED_FILE).open("ab") as out:
            out.writelines(later)
        partial = path.with_name(path.name + ".partial")
        partial.write_bytes(b"".join(kept))
        os.replace(partial, path)
        log.info("metrics: %d records past step %d moved to %s", len(later), step, SUPERSEDED_FILE)
    return len(later)


def _repair_tail(path: Path) -> None:
    """Cut off a partial last line left by a killed run, so that appended records start cleanly."""
    with path.open("rb+") as file:
        size = file.seek(0, os.SEEK_END)
        offset = max(0, size - _TAIL_BYTES)  # a long run's history need not be read whole
        file.seek(offset)
        data = file.read()
        if not data or data.endswith(b"\n"):
            return
        start = offset + data.rfind(b"\n") + 1  # rfind gives -1 if the tail holds no newline
        try:
            json.loads(data[start - offset :])
        except ValueError:
            log.warning("%s: dropping a truncated last line (%d bytes) before appending", path, size - start)
            file.truncate(start)
        else:
            file.write(b"\n")  # a complete record that only lacks its newline


class MetricsSink:
    """Writes every step's metrics to ``run_dir``: JSONL, TensorBoard, Ray gauges and PNG curves.

    ``tensorboard`` and ``ray_metrics`` switch those backends; Ray gauges are set only while Ray is
    initialised in this process. ``plot_every`` also renders the curves every that many writes (they
    are always rendered at :meth:`close`). Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        run_dir: Path,
        *,
        tensorboard: bool = True,
        ray_metrics: bool = True,
        plot_every: int | None = None,
        resume_step: int | None = None,
    ) -> None:
        if plot_every is not None and plot_every < 1:
            raise ValueError(f"plot_every must be at least 1 or None, got {plot_every}")
        self.run_dir = Path(run_dir)
        self.metrics_path = self.run_dir / METRICS_FILE
        self.curves_dir = self.run_dir / CURVES_DIR
        self.plot_every = plot_every
        self.gauges: dict[str, Gauge] = {}
        """the Ray gauge of each key, created on the key's first write while Ray is up"""
        self._ray_names: dict[str, str] = {}
        self._unexported: set[str] = set()
        self._disabled: set[str] = set()
        if not tensorboard:
            self._disabled.add("tensorboard")
        if not ray_metrics:
            self._disabled.add("ray")
        self._writer: SummaryWriter | None = None
        self._writes = 0
        self._closed = False
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.resumed = self.metrics_path.exists() and self.metrics_path.stat().st_size > 0
        """whether ``metrics.jsonl`` already held records: this run appends to them"""
        if self.resumed:
            _repair_tail(self.metrics_path)
            if resume_step is not None:
                _supersede_after(self.metrics_path, resume_step)
            log.info("metrics: appending to %s (resumed run)", self.metrics_path)
        self._file: IO[str] | None = self.metrics_path.open("a", encoding="utf-8")

    def __enter__(self) -> MetricsSink:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def disabled(self) -> frozenset[str]:
        """backends switched off, by the caller or after an error: jsonl, tensorboard, ray, curves"""
        return frozenset(self._disabled)

    def write(self, step: int, metrics: Mapping[str, float | int]) -> None:
        """Record ``metrics`` at ``step`` in every enabled backend."""
        if self._closed:
            raise RuntimeError("MetricsSink.write after close()")
        values = _checked(metrics)
        now = time.time()
        self._guard("jsonl", lambda: self._write_jsonl(step, now, values))
        self._guard("tensorboard", lambda: self._write_tensorboard(step, now, values))
        self._guard("ray", lambda: self._write_ray(values))
        self._writes += 1
        if self.plot_every is not None and self._writes % self.plot_every == 0:
            self._guard("curves", self._render_curves)

    def close(self) -> None:
        """Flush and close the writers and render the PNG curves; calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        file, self._file = self._file, None
        if file is not None:
            self._release("jsonl", file.close)
        writer, self._writer = self._writer, None
        if writer is not None:
            self._release("tensorboard", writer.close)
        self._guard("curves", self._render_curves)

    def _release(self, backend: str, close: Callable[[], object]) -> None:
        """Close a backend's resource; one already disabled after an error is closed quietly."""
        if backend not in self._disabled:
            self._guard(backend, close)
            return
        with contextlib.suppress(Exception):  # its error was reported when it was disabled
            close()

    def _guard(self, backend: str, action: Callable[[], object]) -> None:
        """Run one backend's action; its first error disables it instead of stopping training."""
        if backend in self._disabled:
            return
        # The boundary between training and its metrics: whatever a backend raises (disk full, a
        # TensorBoard or Ray error) must not stop training. The catch is broad on purpose; it logs the
        # traceback, which is why ruff's BLE001 needs no noqa here.
        try:
            action()
        except Exception as exc:
            self._disabled.add(backend)
            log.warning("metrics: the %s backend failed and is disabled: %r", backend, exc, exc_info=exc)

    def _write_jsonl(self, step: int, now: float, values: Mapping[str, float | int]) -> None:
        assert self._file is not None
        record = {"step": step, "time": now, **{k: _finite_or_none(v) for k, v in values.items()}}
        self._file.write(json.dumps(record, allow_nan=False) + "\n")
        self._file.flush()  # a killed run keeps every record written so far

    def _write_tensorboard(self, step: int, now: float, values: Mapping[str, float | int]) -> None:
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter  # lazy: about 0.1-1 s on top of torch

            # A resumed run restarts at ``step``: hide the stale events of the earlier run from there on.
            purge_step = step if self.resumed else None
            self._writer = SummaryWriter(str(self.run_dir / TENSORBOARD_DIR), purge_step=purge_step)
        for key, value in values.items():
            self._writer.add_scalar(key, value, global_step=step, walltime=now)

    def _write_ray(self, values: Mapping[str, float | int]) -> None:
        ray = sys.modules.get("ray")  # never imported means never initialised: nothing to do
        if ray is None or not ray.is_initialized():
            return
        for key, value in values.items():
            if key in self._unexported:
                continue
            gauge = self.gauges.get(key)
            if gauge is None:
                gauge = self._new_gauge(key)
            if gauge is not None and math.isfinite(value):  # Ray exports no NaN; keep the last value
                gauge.set(float(value))

    def _new_gauge(self, key: str) -> Gauge | None:
        """The gauge of a new key, or None when its Ray name is taken by another key (warned once)."""
        from ray.util.metrics import Gauge

        name = ray_metric_name(key)
        owner = self._ray_names.setdefault(name, key)
        if owner != key:
            self._unexported.add(key)
            log.warning("metrics: %r and %r both map to Ray's %s; %r is not exported", owner, key, name, key)
            return None
        namespace = _NAMESPACES.get(_namespace(key), "training metric")
        gauge = Gauge(name, description=f"CodeRL {key} ({namespace})")
        self.gauges[key] = gauge
        return gauge

    def _render_curves(self) -> None:
        if self.metrics_path.exists():
            plot_curves(self.metrics_path, self.curves_dir)


def read_metrics(path: Path) -> list[dict[str, float]]:
    """The records of a ``metrics.jsonl``, in file order; ``null`` values are read as NaN.

    A last line that is not valid JSON (a run killed mid-write) is skipped; an invalid line anywhere
    else raises ValueError.
    """
    lines = Path(path).read_bytes().split(b"\n")
    numbered = [(number, line) for number, line in enumerate(lines, 1) if line.strip()]
    records: list[dict[str, float]] = []
    for index, (number, line) in enumerate(numbered):
        try:
            record = json.loads(line)
        except ValueError as exc:
            if index == len(numbered) - 1:
                log.warning("%s:%d: skipping a truncated last line (a killed run?)", path, number)
                break
            raise ValueError(f"{path}:{number}: not a JSON metrics record: {exc}") from exc
        if not isinstance(record, dict):
            raise ValueError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
        records.append({key: math.nan if value is None else value for key, value in record.items()})
    return records
