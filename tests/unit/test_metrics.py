"""driver.metrics: the JSONL history, TensorBoard scalars, PNG curves and backend failures (no Ray)."""

from __future__ import annotations

import json
import logging
import math
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from driver.curves import _latest_history, _plot_namespace
from driver.metrics import (
    CURVES_DIR,
    METRICS_FILE,
    SUPERSEDED_FILE,
    TENSORBOARD_DIR,
    MetricsSink,
    plot_curves,
    ray_metric_name,
    read_metrics,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _curves_only_where_asked(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rendering PNGs costs about 0.3 s a close: only the tests that take ``curves`` render them."""
    if "curves" not in request.fixturenames:
        monkeypatch.setattr(MetricsSink, "_render_curves", lambda self: None)


@pytest.fixture
def curves() -> None:
    """Marks a test that renders the real curves."""


def sink(run_dir: Path, **kwargs: object) -> MetricsSink:
    """A sink without the slow or external backends unless a test asks for them."""
    options: dict[str, object] = {"tensorboard": False, "ray_metrics": False}
    options.update(kwargs)
    return MetricsSink(run_dir, **options)  # type: ignore[arg-type]


def raw_lines(run_dir: Path) -> list[str]:
    return (run_dir / METRICS_FILE).read_text(encoding="utf-8").splitlines()


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run_dir / TENSORBOARD_DIR))
    accumulator.Reload()
    return {
        tag: [(event.step, event.value) for event in accumulator.Scalars(tag)]
        for tag in accumulator.Tags()["scalars"]
    }


def test_jsonl_records_keep_step_time_and_key_order(tmp_path: Path) -> None:
    before = time.time()
    with sink(tmp_path) as metrics:
        metrics.write(1, {"loss/rl": 0.5, "exec/pass_rate": 0.25, "queue/requests": 7})
        metrics.write(2, {"loss/rl": 0.25})
    records = [json.loads(line) for line in raw_lines(tmp_path)]
    assert [list(r) for r in records] == [
        ["step", "time", "loss/rl", "exec/pass_rate", "queue/requests"],
        ["step", "time", "loss/rl"],
    ]
    assert records[0] == {
        "step": 1,
        "time": records[0]["time"],
        "loss/rl": 0.5,
        "exec/pass_rate": 0.25,
        "queue/requests": 7,
    }
    assert isinstance(records[0]["queue/requests"], int)
    assert before <= records[0]["time"] <= records[1]["time"] <= time.time()
    assert read_metrics(tmp_path / METRICS_FILE) == records


def test_every_write_is_flushed_before_close(tmp_path: Path) -> None:
    metrics = sink(tmp_path)
    metrics.write(5, {"loss/ce": 1.0})
    assert json.loads(raw_lines(tmp_path)[0])["step"] == 5
    metrics.close()


def test_non_finite_values_are_written_as_null_and_read_as_nan(tmp_path: Path) -> None:
    with sink(tmp_path) as metrics:
        metrics.write(1, {"a/nan": math.nan, "a/inf": math.inf, "a/ninf": -math.inf, "a/ok": 1.5})
    (line,) = raw_lines(tmp_path)
    assert json.loads(line) | {"time": 0} == {
        "step": 1,
        "time": 0,
        "a/nan": None,
        "a/inf": None,
        "a/ninf": None,
        "a/ok": 1.5,
    }
    assert "NaN" not in line and "Infinity" not in line
    (record,) = read_metrics(tmp_path / METRICS_FILE)
    assert all(math.isnan(record[k]) for k in ("a/nan", "a/inf", "a/ninf")) and record["a/ok"] == 1.5


def test_numbers_of_other_types_are_converted(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    with sink(tmp_path) as metrics:
        metrics.write(1, {"loss/rl": torch.tensor(0.5), "flag/on": True})  # type: ignore[dict-item]
    (record,) = read_metrics(tmp_path / METRICS_FILE)
    assert record["loss/rl"] == 0.5 and record["flag/on"] == 1


@pytest.mark.parametrize(
    ("metrics", "error"),
    [
        ({"step": 1.0}, ValueError),
        ({"time": 1.0}, ValueError),
        ({"": 1.0}, ValueError),
        ({"loss/rl": "high"}, TypeError),
        ({"loss/rl": None}, TypeError),
    ],
)
def test_bad_keys_and_values_raise_and_write_nothing(
    tmp_path: Path, metrics: dict[str, object], error: type[Exception]
) -> None:
    with sink(tmp_path) as sink_, pytest.raises(error):
        sink_.write(1, metrics)  # type: ignore[arg-type]
    assert raw_lines(tmp_path) == []


def test_reopening_a_run_appends(tmp_path: Path) -> None:
    with sink(tmp_path) as first:
        assert not first.resumed
        first.write(1, {"loss/rl": 1.0})
        first.write(2, {"loss/rl": 0.9})
    with sink(tmp_path) as resumed:
        assert resumed.resumed
        resumed.write(3, {"loss/rl": 0.8})
    assert [r["step"] for r in read_metrics(tmp_path / METRICS_FILE)] == [1, 2, 3]


def test_read_metrics_skips_a_truncated_last_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / METRICS_FILE
    path.write_text(
        '{"step": 1, "time": 0, "loss/rl": 1.0}\n{"step": 2, "time": 0, "loss/r', encoding="utf-8"
    )
    with caplog.at_level(logging.WARNING, logger="driver.metrics"):
        assert read_metrics(path) == [{"step": 1, "time": 0, "loss/rl": 1.0}]
    assert "truncated" in caplog.text


def test_read_metrics_rejects_a_corrupt_line_in_the_middle(tmp_path: Path) -> None:
    path = tmp_path / METRICS_FILE
    path.write_text('{"step": 1, "time": 0}\n{"step": 2,\n{"step": 3, "time": 0}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"metrics\.jsonl:2"):
        read_metrics(path)


def test_resuming_after_a_crash_cuts_the_partial_line(tmp_path: Path) -> None:
    path = tmp_path / METRICS_FILE
    path.write_text('{"step": 1, "time": 0, "loss/rl": 1.0}\n{"step": 2, "ti', encoding="utf-8")
    with sink(tmp_path) as resumed:
        resumed.write(2, {"loss/rl": 0.5})
    assert [(r["step"], r["loss/rl"]) for r in read_metrics(path)] == [(1, 1.0), (2, 0.5)]
    assert path.read_text(encoding="utf-8").endswith("}\n")


def test_resuming_keeps_a_complete_last_record_without_newline(tmp_path: Path) -> None:
    path = tmp_path / METRICS_FILE
    path.write_text('{"step": 1, "time": 0, "loss/rl": 1.0}', encoding="utf-8")
    with sink(tmp_path) as resumed:
        resumed.write(2, {"loss/rl": 0.5})
    assert [r["step"] for r in read_metrics(path)] == [1, 2]


def test_tensorboard_event_files_hold_the_scalars(tmp_path: Path) -> None:
    with sink(tmp_path, tensorboard=True) as metrics:
        for step in (1, 2, 3):
            metrics.write(step, {"loss/rl": 1.0 / step, "eval/held_out_pass@1": step / 10})
    assert list((tmp_path / TENSORBOARD_DIR).glob("events.out.tfevents.*"))
    logged = scalars(tmp_path)
    assert set(logged) == {"loss/rl", "eval/held_out_pass@1"}
    assert [s for s, _ in logged["loss/rl"]] == [1, 2, 3]
    assert [v for _, v in logged["loss/rl"]] == pytest.approx([1.0, 0.5, 1 / 3])
    assert [v for _, v in logged["eval/held_out_pass@1"]] == pytest.approx([0.1, 0.2, 0.3])


def test_a_resumed_run_hides_stale_tensorboard_steps(tmp_path: Path) -> None:
    with sink(tmp_path, tensorboard=True) as first:
        for step in range(1, 6):
            first.write(step, {"loss/rl": 1.0})
    with sink(tmp_path, tensorboard=True) as resumed:  # restarted from the step-2 checkpoint
        for step in (3, 4):
            resumed.write(step, {"loss/rl": 2.0})
    assert scalars(tmp_path)["loss/rl"] == [(1, 1.0), (2, 1.0), (3, 2.0), (4, 2.0)]


def test_plot_curves_writes_one_png_per_namespace(tmp_path: Path, curves: None) -> None:
    with sink(tmp_path, plot_every=None) as metrics:
        for step in (1, 2, 3):
            metrics.write(
                step,
                {
                    "loss/rl": 1.0 / step,
                    "loss/ce": 2.0 / step,
                    "exec/pass_rate": 0.1 * step,
                    "exec/verdict/PASSED": step,
                    "exec/verdict/FAILED": 3 - step,
                    "exec/never": math.nan,
                    "idle/sampler": math.nan,
                },
            )
    out = tmp_path / "plots"
    written = plot_curves(tmp_path / METRICS_FILE, out)
    assert written == [out / "exec.png", out / "loss.png"]  # idle has no finite value: skipped
    for path in written:
        data = path.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000
    assert sorted(p.name for p in out.iterdir()) == ["exec.png", "loss.png"]  # no partial files left


def test_phase_boundaries_mark_the_curves_and_get_no_plot_of_their_own(tmp_path: Path, curves: None) -> None:
    with sink(tmp_path, plot_every=None) as metrics:
        metrics.write(0, {"run/phase": 0})
        for step in (1, 2):
            metrics.write(step, {"loss/sft": 1.0 / step})
        metrics.write(2, {"run/phase": 2})
        metrics.write(3, {"loss/rl": 0.5})
    out = tmp_path / "plots"
    plain = tmp_path / "plain.png"
    written = plot_curves(tmp_path / METRICS_FILE, out)
    assert written == [out / "loss.png"]  # run/phase is drawn on the curves, not as a curve

    _plot_namespace("loss", {"loss/sft": {1: 1.0, 2: 0.5}, "loss/rl": {3: 0.5}}, plain)
    assert plain.read_bytes() != (out / "loss.png").read_bytes()  # the boundaries change the picture


def test_close_renders_the_curves_and_plot_every_renders_during_the_run(tmp_path: Path, curves: None) -> None:
    metrics = sink(tmp_path, plot_every=2)
    metrics.write(1, {"loss/rl": 1.0})
    assert not (tmp_path / CURVES_DIR).exists()
    metrics.write(2, {"loss/rl": 0.5})
    assert (tmp_path / CURVES_DIR / "loss.png").read_bytes().startswith(PNG_MAGIC)
    metrics.write(3, {"throughput/samples_per_s": 12.0})
    metrics.close()
    assert sorted(p.name for p in (tmp_path / CURVES_DIR).iterdir()) == ["loss.png", "throughput.png"]


def test_plot_every_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="plot_every"):
        MetricsSink(tmp_path, plot_every=0)


def test_latest_history_keeps_the_resumed_runs_records() -> None:
    records = [{"step": s, "v": 1.0} for s in (1, 2, 3, 4, 5)] + [{"step": s, "v": 2.0} for s in (3, 4)]
    records.insert(2, {"step": 2, "w": 9.0})  # a second write at the same step is not a resume
    kept = _latest_history(records)
    assert [(r["step"], r.get("v"), r.get("w")) for r in kept] == [
        (1, 1.0, None),
        (2, 1.0, None),
        (2, None, 9.0),
        (3, 2.0, None),
        (4, 2.0, None),
    ]


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("loss/rl", "coderl_loss_rl"),
        ("eval/held_out_pass@1", "coderl_eval_held_out_pass_1"),
        ("exec/verdict/PASSED", "coderl_exec_verdict_PASSED"),
        ("throughput/samples_per_s", "coderl_throughput_samples_per_s"),
        ("sync/weight-broadcast (s)", "coderl_sync_weight_broadcast_s"),
        ("9lives", "coderl_9lives"),
    ],
)
def test_ray_metric_names_are_sanitised(key: str, name: str) -> None:
    assert ray_metric_name(key) == name
    assert re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", name)


def test_a_failing_backend_is_disabled_with_one_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from torch.utils.tensorboard import SummaryWriter

    calls = []

    def broken(*args: object, **kwargs: object) -> None:
        calls.append(args)
        raise OSError("disk full")

    monkeypatch.setattr(SummaryWriter, "add_scalar", broken)
    with caplog.at_level(logging.WARNING, logger="driver.metrics"), sink(tmp_path, tensorboard=True) as m:
        for step in (1, 2, 3):
            m.write(step, {"loss/rl": 1.0})
        assert m.disabled == {"tensorboard", "ray"}
    assert len(calls) == 1
    warnings = [r for r in caplog.records if "tensorboard backend failed" in r.getMessage()]
    assert len(warnings) == 1 and "disk full" in warnings[0].getMessage()
    assert [r["step"] for r in read_metrics(tmp_path / METRICS_FILE)] == [1, 2, 3]


def test_a_failing_plot_never_breaks_close(
    tmp_path: Path, curves: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object) -> list[Path]:
        raise RuntimeError("no fonts")

    monkeypatch.setattr("driver.metrics.plot_curves", broken)
    metrics = sink(tmp_path, plot_every=1)
    with caplog.at_level(logging.WARNING, logger="driver.metrics"):
        metrics.write(1, {"loss/rl": 1.0})
        metrics.write(2, {"loss/rl": 1.0})
        metrics.close()
    assert "curves" in metrics.disabled
    assert caplog.text.count("curves backend failed") == 1
    assert len(read_metrics(tmp_path / METRICS_FILE)) == 2


def test_close_is_idempotent_and_write_after_close_raises(tmp_path: Path, curves: None) -> None:
    metrics = sink(tmp_path, tensorboard=True)
    metrics.write(1, {"loss/rl": 1.0})
    metrics.close()
    png = (tmp_path / CURVES_DIR / "loss.png").stat().st_mtime_ns
    metrics.close()
    assert (tmp_path / CURVES_DIR / "loss.png").stat().st_mtime_ns == png
    with pytest.raises(RuntimeError, match="after close"):
        metrics.write(2, {"loss/rl": 1.0})


def test_ray_gauges_need_an_initialised_ray(tmp_path: Path) -> None:
    with MetricsSink(tmp_path, tensorboard=False) as metrics:
        metrics.write(1, {"loss/rl": 1.0})
        assert metrics.gauges == {} and "ray" not in metrics.disabled


def test_importing_the_module_is_cheap() -> None:
    code = (
        "import sys, driver.metrics\n"
        "heavy = {'torch', 'ray', 'matplotlib', 'tensorboard'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


class BrokenFile:
    def write(self, text: str) -> int:
        raise OSError("No space left on device")

    def flush(self) -> None: ...

    def close(self) -> None:
        raise OSError("No space left on device")


def test_a_failing_jsonl_file_is_disabled_and_close_still_succeeds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = sink(tmp_path)
    real_file = metrics._file
    metrics._file = BrokenFile()  # type: ignore[assignment]
    with caplog.at_level(logging.WARNING, logger="driver.metrics"):
        metrics.write(1, {"loss/rl": 1.0})
        metrics.write(2, {"loss/rl": 1.0})
        metrics.close()
    assert "jsonl" in metrics.disabled
    assert caplog.text.count("jsonl backend failed") == 1
    assert real_file is not None
    real_file.close()


def test_a_resumed_run_moves_the_killed_runs_later_records_aside(tmp_path: Path) -> None:
    """The checkpoint was at step 3, the killed run logged up to 5: metrics.jsonl never repeats a
    step nor goes back in policy version; the later records are kept in metrics.superseded.jsonl."""
    with sink(tmp_path) as first:
        for step in range(1, 6):
            first.write(step, {"learner/policy_version": step})
    with MetricsSink(tmp_path, tensorboard=False, ray_metrics=False, resume_step=3) as resumed:
        resumed.write(4, {"learner/policy_version": 4})
    assert [r["step"] for r in read_metrics(tmp_path / METRICS_FILE)] == [1, 2, 3, 4]
    assert [r["step"] for r in read_metrics(tmp_path / SUPERSEDED_FILE)] == [4, 5]
    with MetricsSink(tmp_path, tensorboard=False, ray_metrics=False, resume_step=4):
        pass  # nothing past the checkpoint: nothing moves
    assert [r["step"] for r in read_metrics(tmp_path / SUPERSEDED_FILE)] == [4, 5]
