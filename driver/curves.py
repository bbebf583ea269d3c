"""Learning curves of a run: one PNG per metric namespace of its ``metrics.jsonl``, rendered
headless (Agg), the phase boundaries drawn on every curve."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = ["PHASE_KEY", "PHASE_NAMES", "plot_curves"]

_RESERVED = ("step", "time")
_INVALID_FILE_CHARS = re.compile(r"[^a-zA-Z0-9_.-]+")


def _namespace(key: str) -> str:
    return key.split("/", 1)[0]


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
    from .metrics import read_metrics  # the metrics module renders curves through this one

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
