"""driver/role_metrics.py without Ray: reports turned into readings, the meters' rates, idle share
and lag, the recorder's handling of counters and errors, and the Grafana dashboard kept in step
with the metrics the code defines."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

import driver.role_metrics as role_metrics
from actors.sampler import RoundReport, SamplerState
from driver.role_metrics import (
    METRICS,
    ROLE_TAGS,
    ExecutorMeter,
    Reading,
    RoleRecorder,
    SamplerMeter,
    prometheus_names,
    sft_readings,
    step_readings,
)
from learner.reports import LearnerStatus, SFTReport, StepReport

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "coderl-run.json"


def _status(version: int) -> LearnerStatus:
    return LearnerStatus(
        policy_version=version, settled_samples=8, executions=9, exec_busy_s=1.0, counters={}
    )


def _values(readings: list[Reading]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    values = {(r.metric, tuple(sorted(r.tags.items()))): r.value for r in readings}
    assert len(values) == len(readings), "a metric with the same tags read twice"
    for reading in readings:  # every reading names a defined metric, with exactly its tags
        assert set(reading.tags) == set(METRICS[reading.metric].tags), reading
    return values


def _round(version: int, samples: int = 8, tokens: int = 400) -> RoundReport:
    return RoundReport(
        sampler_id=1,
        round_index=0,
        policy_version=version,
        problems=2,
        samples=samples,
        tokens=tokens,
        generate_s=2.0,
        publish_s=0.5,
        weights_s=0.25,
        state=SamplerState(),
    )


def test_step_report_readings() -> None:
    report = StepReport(
        samples=8,
        stats={"loss/rl": 0.5, "loss/ce": 1.5, "exec/pass_rate": 0.25, "buffer/settled/samples": 8.0},
        wait_s=3.0,
        train_s=1.25,
        status=_status(34),
    )
    assert _values(step_readings(report, "rl")) == {
        ("coderl_learner_loss", (("loss", "rl"),)): 0.5,
        ("coderl_learner_loss", (("loss", "ce"),)): 1.5,
        ("coderl_learner_update_seconds", (("update", "rl"),)): 1.25,
        ("coderl_learner_wait_seconds", (("update", "rl"),)): 3.0,
        ("coderl_learner_policy_version", ()): 34,
        ("coderl_learner_updates", (("update", "rl"),)): 1,
        ("coderl_learner_samples", ()): 8,
    }


def test_sft_report_readings() -> None:
    report = SFTReport(steps=4, losses=[(2, 2.0), (4, 1.0)], seconds=2.0, status=_status(4))
    assert _values(sft_readings(report)) == {
        ("coderl_learner_policy_version", ()): 4,
        ("coderl_learner_loss", (("loss", "sft"),)): 1.0,
        ("coderl_learner_update_seconds", (("update", "sft"),)): 0.5,
        ("coderl_learner_updates", (("update", "sft"),)): 4,
    }


def test_sampler_meter_rates_idle_share_and_lag() -> None:
    meter = SamplerMeter(now=100.0)
    assert meter.received(3) == []  # no round yet: no lag to tell
    values = _values(meter.round(_round(3), started=101.0, ended=104.0))
    assert values[("coderl_sampler_samples_per_s", ())] == 8 / 2.5
    assert values[("coderl_sampler_tokens_per_s", ())] == 400 / 2.0
    assert values[("coderl_sampler_idle_fraction", ())] == 1 / 4  # 1 s idle, 3 s in the round
    assert values[("coderl_sampler_policy_lag", ())] == 0
    assert values[("coderl_sampler_policy_version", ())] == 3
    assert values[("coderl_sampler_weights_seconds", ())] == 0.25
    assert values[("coderl_sampler_rounds", ())] == 1
    assert values[("coderl_sampler_samples", ())] == 8
    assert values[("coderl_sampler_tokens", ())] == 400
    # Newer weights arrive after the round: the round's lag grows; versions never go back.
    assert meter.received(5) == [Reading("coderl_sampler_policy_lag", 2)]
    assert meter.received(4) == [Reading("coderl_sampler_policy_lag", 2)]
    values = _values(meter.round(_round(5), started=110.0, ended=112.0))
    assert values[("coderl_sampler_idle_fraction", ())] == 6 / 8
    assert values[("coderl_sampler_policy_lag", ())] == 0


def test_executor_meter_increments_and_rates() -> None:
    meter = ExecutorMeter(now=0.0)
    counters = {
        "verdict_PASSED": 10.0,
        "verdict_FAILED_TEST": 5.0,
        "published": 15.0,
        "pool_sandbox_recycles": 2.0,
        "sandbox_errors": 1.0,
        "in_flight": 3.0,
        "uptime_s": 5.0,
        "programs_per_s": 3.0,
    }
    values = _values(meter.readings(counters, now=5.0, waiting=7))
    assert values == {
        ("coderl_executor_programs_per_s", (("verdict", "PASSED"),)): 2.0,
        ("coderl_executor_programs", (("verdict", "PASSED"),)): 10.0,
        ("coderl_executor_programs_per_s", (("verdict", "FAILED_TEST"),)): 1.0,
        ("coderl_executor_programs", (("verdict", "FAILED_TEST"),)): 5.0,
        ("coderl_executor_errors", (("kind", "sandbox_errors"),)): 1.0,
        ("coderl_executor_sandbox_recycles", ()): 2.0,
        ("coderl_executor_in_flight", ()): 3.0,
        ("coderl_executor_queue_depth", ()): 7,
    }
    later = counters | {"verdict_PASSED": 14.0, "pool_sandbox_recycles": 2.0, "in_flight": 0.0}
    values = _values(meter.readings(later, now=7.0, waiting=None))  # Redis did not answer
    assert values[("coderl_executor_programs_per_s", (("verdict", "PASSED"),))] == 2.0
    assert values[("coderl_executor_programs", (("verdict", "PASSED"),))] == 4.0
    assert values[("coderl_executor_programs", (("verdict", "FAILED_TEST"),))] == 0.0
    assert values[("coderl_executor_sandbox_recycles", ())] == 0.0
    assert ("coderl_executor_queue_depth", ()) not in values


class _FakeMetric:
    def __init__(self) -> None:
        self.calls: list[tuple[str, float, dict[str, str]]] = []

    def set(self, value: float, tags: dict[str, str]) -> None:
        self.calls.append(("set", value, tags))

    def inc(self, value: float, tags: dict[str, str]) -> None:
        if value <= 0:
            raise ValueError("Ray refuses a counter increment that is not positive")
        self.calls.append(("inc", value, tags))


def test_recorder_tags_skips_zero_increments_and_disables_itself_on_error(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fakes: dict[str, Any] = {name: _FakeMetric() for name in METRICS}
    monkeypatch.setattr(role_metrics, "_metrics", fakes)
    recorder = RoleRecorder("executor", "run1", 2)
    recorder.record(
        [
            Reading("coderl_executor_queue_depth", 4),
            Reading("coderl_executor_programs", 0.0, {"verdict": "PASSED"}),
            Reading("coderl_executor_programs", 3.0, {"verdict": "TIMEOUT"}),
        ]
    )
    role = {"role": "executor", "run_id": "run1", "index": "2"}
    assert fakes["coderl_executor_queue_depth"].calls == [("set", 4.0, role)]
    assert fakes["coderl_executor_programs"].calls == [("inc", 3.0, role | {"verdict": "TIMEOUT"})]

    recorder.record([Reading("coderl_no_such_metric", 1.0)])  # an error: recording stops, the role goes on
    assert not recorder.enabled
    assert "disabled" in caplog.text
    recorder.record([Reading("coderl_executor_queue_depth", 5)])
    assert fakes["coderl_executor_queue_depth"].calls == [("set", 4.0, role)]


def test_every_metric_is_documented_and_named_consistently() -> None:
    doc = role_metrics.__doc__ or ""
    documented = set(re.findall(r"\bcoderl_[a-z_]+\b", doc))
    assert documented == set(METRICS)
    for name, spec in METRICS.items():
        assert re.fullmatch(r"coderl_(learner|sampler|executor)_[a-z_]+", name)
        assert not set(spec.tags) & set(ROLE_TAGS)
        assert "instance" not in spec.tags  # Prometheus overwrites it with the scraped target


def _queries(dashboard: dict[str, Any]) -> list[str]:
    queries = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    queries += [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return queries


def test_dashboard_queries_only_metrics_the_code_defines() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    served = {prom: spec.name for spec in METRICS.values() for prom in prometheus_names(spec)}
    queries = _queries(dashboard)
    queried = {name for query in queries for name in re.findall(r"\bray_[A-Za-z0-9_]+", query)}
    assert queried, "the dashboard queries nothing"
    assert queried <= set(served), f"not defined in driver/role_metrics.py: {sorted(queried - set(served))}"
    roles = {served[name].split("_")[1] for name in queried}
    assert roles == {"learner", "sampler", "executor"}
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "run_id"} <= variables
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            assert 'run_id=~"$run_id"' in target["expr"], f"{panel['title']}: not filtered by run"
            assert target["datasource"]["uid"] == "${datasource}"
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
