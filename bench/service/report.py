"""The executor service benchmark's results: the table of configurations (throughput, ratios to
in-process, latency, utilisation, load from others), CPU per program, the target and the
verdicts."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable
from typing import Any

from bench.common import percentile, print_cpu_table
from bench.service.measure import CPU_BUCKETS, CPU_SHORT, Config, Run
from bench.service.workload import Job

TARGET_RATIO = 0.80
TARGET_TEXT = "Redis path keeps ≥ 80% of in-process throughput"
LEGEND = """\
  prog/s: median throughput; ratio: median over rounds of (throughput / in-process throughput in
  the same round); best: best run / best in-process run; adj.: like ratio, on throughput / (1 -
  others), an estimate for an idle host, meaningful when the host is CPU-saturated; p50/p99:
  per-program latency, request created -> result read (in-process: batch start -> result),
  median over runs; util.: sum of Executor.execute time / (wall x sandboxes); slot ovh: ms per
  program a sandbox slot spends outside Executor.execute, (wall x sandboxes - sum exec) / N;
  others: share of the host's CPU used during the run by processes this benchmark did not start
  (other users); start s: until ready, outside the timed region"""


def paired_ratios(config: Config, base: Config, fn: Callable[[Run], float] | None = None) -> list[float]:
    """Per round: this configuration's throughput (or ``fn``) over in-process's in the same round."""
    fn = fn or (lambda r: r.throughput)
    return [fn(r) / fn(b) for r, b in zip(config.runs, base.runs, strict=True) if fn(b)]


def run_row(run: Run, n: int) -> dict[str, Any]:
    return {
        "wall_s": run.wall_s,
        "throughput": run.throughput,
        "p50_latency_ms": 1000 * percentile(run.latencies, 50),
        "p99_latency_ms": 1000 * percentile(run.latencies, 99),
        "submit_s": run.submit_s,
        "utilisation": run.utilisation,
        "slot_overhead_ms": run.slot_overhead_ms,
        "others_load": run.foreign_share(n),
        "mean_exec_ms": 1000 * statistics.fmean(run.exec_s) if run.exec_s else None,
        "mean_queued_ms": 1000 * statistics.fmean(run.queued) if run.queued else None,
        "publish_to_read_p50_ms": 1000 * percentile(run.publish_to_read, 50) if run.publish_to_read else None,
        "per_worker": dict(run.per_worker),
        "cpu_ms_per_program": run.cpu,
        "missing": run.missing,
    }


def config_row(config: Config, base: Config, n: int) -> dict[str, Any]:
    """A configuration's numbers: medians over its runs, ratios to ``base`` (in-process)."""
    best_base = max(r.throughput for r in base.runs)
    ratios = paired_ratios(config, base)
    adjusted = paired_ratios(config, base, lambda r: r.adjusted_throughput(n))
    return {
        "label": config.label,
        "variant": config.variant,
        "processes": config.processes,
        "sandboxes_per_process": config.per_process,
        "sandboxes": config.sandboxes,
        "throughput": config.median(lambda r: r.throughput),
        "ratio_to_in_process": statistics.median(ratios) if ratios else float("nan"),
        "ratio_per_round": ratios,
        "ratio_best_of": max(r.throughput for r in config.runs) / best_base if best_base else float("nan"),
        "ratio_load_adjusted": statistics.median(adjusted) if adjusted else float("nan"),
        "ratio_load_adjusted_per_round": adjusted,
        "p50_latency_ms": 1000 * config.median(lambda r: percentile(r.latencies, 50)),
        "p99_latency_ms": 1000 * config.median(lambda r: percentile(r.latencies, 99)),
        "utilisation": config.median(lambda r: r.utilisation),
        "slot_overhead_ms": config.median(lambda r: r.slot_overhead_ms),
        "others_load": config.median(lambda r: r.foreign_share(n)),
        "startup_s": config.startup_s,
        "runs": [run_row(r, n) for r in config.runs],
    }


def print_table(configs: list[Config], n: int, cores: int) -> dict[str, Any]:
    """The table of configurations, the first one (in-process) the baseline; returns its rows."""
    header = (
        f"{'configuration':<24}{'sandb.':>7}{'prog/s':>8}{'ratio':>7}{'best':>6}{'adj.':>6}"
        f"{'p50 ms':>8}{'p99 ms':>8}{'util.':>7}{'slot ovh':>9}{'others':>8}{'start s':>8}"
    )
    print(header)
    print("-" * len(header))
    rows: dict[str, Any] = {}
    for config in configs:
        row = rows[config.key] = config_row(config, configs[0], n)
        note = " (oversub.)" if config.sandboxes > cores else ""
        print(
            f"{config.key + note:<24}{config.sandboxes:>7}{row['throughput']:>8.1f}"
            f"{row['ratio_to_in_process']:>7.2f}{row['ratio_best_of']:>6.2f}{row['ratio_load_adjusted']:>6.2f}"
            f"{row['p50_latency_ms']:>8.0f}{row['p99_latency_ms']:>8.0f}{100 * row['utilisation']:>6.0f}%"
            f"{row['slot_overhead_ms']:>9.2f}{100 * row['others_load']:>7.0f}%{config.startup_s:>8.1f}"
        )
    for config in configs[1:]:
        print(
            f"  {config.key}: ratio per round "
            + ", ".join(f"{r:.2f}" for r in rows[config.key]["ratio_per_round"])
        )
    return rows


def _print_cpu(configs: list[Config], n: int) -> None:
    print("\nCPU per program, ms (medians over runs):")
    rows = [
        (f"{c.key:<22}", [c.median(lambda r, b=b: r.cpu.get(b, float("nan"))) for b in CPU_BUCKETS])
        for c in configs
    ]
    print_cpu_table(f"{'configuration':<22}", [CPU_SHORT[b] for b in CPU_BUCKETS], rows, 11)
    for config in configs[1:]:
        run = config.runs[-1]
        print(
            f"  {config.key}: submitting {n} requests took {1000 * run.submit_s:.0f} ms; worker -> reader "
            f"p50 {1000 * percentile(run.publish_to_read, 50):.1f} ms; results per worker "
            f"{sorted(run.per_worker.values(), reverse=True)}"
        )


def _print_target(configs: list[Config], rows: dict[str, Any], cores: int) -> dict[str, bool]:
    """PASS/FAIL of the target for each configuration with as many sandboxes as in-process."""
    matching = [c for c in configs[1:] if c.sandboxes == configs[0].sandboxes]
    verdicts = {c.key: rows[c.key]["ratio_to_in_process"] >= TARGET_RATIO for c in matching}
    cells = [
        f"{c.key} {rows[c.key]['ratio_to_in_process']:.2f} " + ("PASS" if verdicts[c.key] else "FAIL")
        for c in matching
    ]
    overall = "PASS" if verdicts and all(verdicts.values()) else "FAIL"
    print(
        f"\ntarget: {TARGET_TEXT}: {overall} ({'; '.join(cells) or 'no matching configuration'}; "
        f"{configs[0].sandboxes} sandboxes each)"
    )
    print(
        "  load-adjusted estimate (adj.): "
        + "; ".join(f"{c.key} {rows[c.key]['ratio_load_adjusted']:.2f}" for c in matching)
        + " (the target is judged on the measured ratio)"
    )
    for config in configs[1:]:
        if config.sandboxes != configs[0].sandboxes:
            print(
                f"  informational: {config.key} runs {config.sandboxes} sandboxes on {cores} cores "
                f"(oversubscribed): ratio {rows[config.key]['ratio_to_in_process']:.2f}"
            )
    return verdicts


def verdict_mismatches(configs: list[Config], jobs: list[Job]) -> list[dict[str, Any]]:
    reference = configs[0].runs[0].verdicts
    out = []
    for job in jobs:
        seen = {c.key: [run.verdicts.get(job.index, "MISSING") for run in c.runs] for c in configs}
        if len({v for values in seen.values() for v in values}) > 1:
            out.append({"program": job.key, "reference": reference.get(job.index, "MISSING"), "seen": seen})
    return out


def report(configs: list[Config], jobs: list[Job], cores: int) -> dict[str, Any]:
    n = len(jobs)
    print()
    rows = print_table(configs, n, cores)
    print(LEGEND)
    _print_cpu(configs, n)
    verdicts = _print_target(configs, rows, cores)
    mismatches = verdict_mismatches(configs, jobs)
    missing = sum(r.missing for c in configs for r in c.runs)
    counts = Counter(configs[0].runs[0].verdicts.values())
    print(
        f"\nverdicts: {n} programs x {sum(len(c.runs) for c in configs)} runs; in-process "
        f"{dict(sorted(counts.items()))}; {len(mismatches)} programs differ between configurations or runs"
        + (f"; {missing} results missing" if missing else "")
    )
    for item in mismatches[:20]:
        print(f"  MISMATCH {item['program']}: in-process {item['reference']}; {item['seen']}")
    return {"configs": rows, "target": verdicts, "mismatches": mismatches, "missing": missing}
