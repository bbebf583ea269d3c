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
resumed run usually restarts at an earlier step than the last one logged (the last checkpoint), so
the file may hold steps that the resumed run logs again. The raw file keeps both; the curves keep
the resumed run's values (a step lower than the previous record's starts a new segment that replaces
every earlier record at or after that step), and TensorBoard hides the stale events through
``SummaryWriter(purge_step=...)``.

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
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ray.util.metrics import Gauge
    from torch.utils.tensorboard import SummaryWriter

__all__ = [
    "CURVES_DIR",
    "METRICS_FILE",
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
_INVALID_FILE_CHARS = re.compile(r"[^a-zA-Z0-9_.-]+")
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
    else raises ValueError. A resumed run may repeat steps: the file keeps both runs' records.
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


def _latest_history(records: Iterable[Mapping[str, float]]) -> list[Mapping[str, float]]:
    """The records a resumed run did not overwrite.

    A step below the previous record's marks a resume: the records at or after it are dropped.
    """
    kept: list[Mapping[str, float]] = []
    for record in records:
        step = record["step"]
        if kept and step < kept[-1]["step"]:
            while kept and kept[-1]["step"] >= step:
                kept.pop()
        kept.append(record)
    return kept


def _series(records: Iterable[Mapping[str, float]]) -> dict[str, dict[float, float]]:
    """key -> {step: value}; a later record at the same step wins. Keys with no finite value are dropped."""
    series: dict[str, dict[float, float]] = {}
    for record in records:
        for key, value in record.items():
            if key not in _RESERVED:
                series.setdefault(key, {})[record["step"]] = float(value)
    return {key: points for key, points in series.items() if any(map(math.isfinite, points.values()))}


def _panels(keys: Iterable[str]) -> dict[str, list[str]]:
    """Subplot title -> its keys: ``exec/verdict/*`` share one subplot, other keys get their own."""
    panels: dict[str, list[str]] = {}
    for key in sorted(keys):
        panels.setdefault(key.rsplit("/", 1)[0] if key.count("/") >= 2 else key, []).append(key)
    return panels


PHASE_KEY = "run/phase"
"""written where each phase starts (0 sft, 1 critic, 2 rl): drawn as boundaries on every curve"""
PHASE_NAMES = ("sft", "critic", "rl")


def _plot_namespace(
    namespace: str,
    series: Mapping[str, Mapping[float, float]],
    path: Path,
    phases: Mapping[float, float] | None = None,
) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    panels = _panels(series)
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig = Figure(figsize=(5 * ncols, 3.4 * nrows), layout="constrained")
    FigureCanvasAgg(fig)  # Agg, headless; no pyplot, so no global state or GUI backend is touched
    axes = fig.subplots(nrows, ncols, squeeze=False).flatten()
    for ax, (title, keys) in zip(axes, panels.items(), strict=False):
        for key in keys:
            steps = sorted(series[key])
            marker = "o" if len(steps) <= 30 else None
            label = key[len(title) + 1 :] or key
            ax.plot(steps, [series[key][s] for s in steps], marker=marker, markersize=3, label=label)
        for step, phase in sorted((phases or {}).items()):
            ax.axvline(step, color="grey", linestyle="--", linewidth=0.8)
            name = PHASE_NAMES[int(phase)] if 0 <= phase < len(PHASE_NAMES) else f"phase {phase:g}"
            ax.annotate(
                name,
                (step, 1.0),
                xycoords=("data", "axes fraction"),
                fontsize="x-small",
                ha="left",
                va="top",
                color="grey",
            )
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.set_ylabel(keys[0] if len(keys) == 1 else "value")
        ax.grid(True, alpha=0.3)
        if len(keys) > 1:
            ax.legend(fontsize="small")
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    fig.suptitle(namespace)
    partial = path.with_name(path.name + ".partial")
    fig.savefig(partial, format="png", dpi=100)
    os.replace(partial, path)  # a viewer never sees a half-written PNG


def plot_curves(metrics_path: Path, out_dir: Path) -> list[Path]:
    """Render ``<namespace>.png`` learning curves (value against step) into ``out_dir``.

    One PNG per namespace (the part of a key before the first ``/``), one subplot per key (keys one
    level deeper, like ``exec/verdict/*``, share a subplot). Keys with no finite value are skipped;
    non-finite points are gaps. Returns the written paths, sorted.
    """
    by_namespace: dict[str, dict[str, dict[float, float]]] = {}
    series = _series(_latest_history(read_metrics(metrics_path)))
    phases = series.pop(PHASE_KEY, {})
    for key, points in series.items():
        by_namespace.setdefault(_namespace(key), {})[key] = points
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for namespace in sorted(by_namespace):
        path = out_dir / f"{_INVALID_FILE_CHARS.sub('_', namespace)}.png"
        _plot_namespace(namespace, by_namespace[namespace], path, phases)
        written.append(path)
    return written
