"""Pipeline benchmark: synchronous vs. decoupled RL training end to end, and weight broadcast time
against model size, in one run.

    python -m bench.pipeline                        # about 6 minutes on 2 CPUs (Docker, Ray, Redis)
    python -m bench.pipeline --rl-steps 40 --json runs/bench/pipeline.json
    python -m bench.pipeline --skip-modes           # only the broadcast table

1. **Sync vs. decoupled.** One warm start (``--sft-steps`` of SFT on the built-in suite, the
   embedded tiny model), then, from that checkpoint, the same RL phase (``--rl-steps`` updates, no
   critic pre-training) through ``driver.train.train`` on local Ray with the driver's own Redis
   server and Docker executor workers, once per mode:

   - *sync*: generate one batch, execute it, update, broadcast, repeat (``mode="sync"``);
   - *decoupled*: samplers, executors and the learner overlap, with admission control bounding the
     policy lag (``mode="decoupled"``, the default).

   From the RL phase's metrics (``metrics.jsonl``, written by the run): sampled programs per second
   over the phase, the fraction of the phase each role was idle (waiting on the others): sampler
   (not generating), learner (not updating) and executor (sandbox slots not running a program), the
   mean policy lag of trained samples, and the phase's wall time. The ratio of decoupled to sync
   samples/s is printed.

2. **Weight broadcast vs. model size.** For T5 shapes from the tiny preset to T5-base (about 220M
   parameters), a source actor holding the model and ``--receivers`` receiver actors each holding a
   ``Policy``: the time from asking the source for a CPU copy of its weights (``Learner.weights``'s
   code path) to every receiver having applied them (``Policy.load_weights``), through the Ray object
   store, as ``RayRoles.broadcast`` does. Median of ``--repeats``; also MB/s of fp32 weights.

The broadcast part needs no Docker. ``--json PATH`` also writes the numbers.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any

from bench.common import host_description, write_json

DEFAULT_SIZES = ("tiny:64:256:2", "small:256:1024:4", "t5-small:512:2048:6", "t5-base:768:3072:12")
"""name:d_model:d_ff:layers (T5 shapes; 32,100-token vocabulary except the tiny preset's)"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sft-steps", type=int, default=400, help="warm start before the RL phases")
    parser.add_argument("--rl-steps", type=int, default=30, help="RL updates per mode")
    parser.add_argument("--sizes", nargs="+", default=list(DEFAULT_SIZES), metavar="NAME:D:FF:LAYERS")
    parser.add_argument("--receivers", type=int, default=2, help="receiving actors (samplers)")
    parser.add_argument("--repeats", type=int, default=3, help="broadcasts per size (median)")
    parser.add_argument("--skip-modes", action="store_true", help="only the broadcast table")
    parser.add_argument("--work-dir", type=Path, help="run directories (default: a temporary one)")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    if min(args.rl_steps, args.sft_steps, args.receivers, args.repeats) < 1:
        parser.error("--sft-steps, --rl-steps, --receivers and --repeats must be >= 1")
    return args


# --------------------------------------------------------------------------------------------
# 1. sync vs. decoupled


@dataclass
class ModeResult:
    mode: str
    samples_per_s: float
    idle_sampler: float
    idle_learner: float
    idle_executor: float
    policy_lag_mean: float
    rl_wall_s: float
    stale_dropped: float


def _config(run_dir: Path, *overrides: str) -> Any:
    """The embedded defaults with ``overrides``, as ``coderl train --set`` would give them."""
    from coderl.config import load_config
    from driver.train_config import TrainConfig

    return load_config(TrainConfig, None, [f"run_dir={run_dir}", "eval.problems=1", *overrides])


def warm_start(work: Path, sft_steps: int) -> Path:
    from driver.train import train
    from learner.checkpoint import latest_checkpoint

    run_dir = work / "warm"
    train(_config(run_dir, f"phases.sft_steps={sft_steps}", "phases.critic_steps=0", "phases.rl_steps=0"))
    checkpoint = latest_checkpoint(run_dir)
    assert checkpoint is not None, f"the warm start left no checkpoint in {run_dir}"
    return checkpoint / "policy"


def run_mode(work: Path, mode: str, policy_dir: Path, rl_steps: int) -> ModeResult:
    from driver.train import train

    run_dir = work / mode
    phases = ["phases.sft_steps=0", "phases.critic_steps=0", f"phases.rl_steps={rl_steps}"]
    train(_config(run_dir, f"mode={mode}", f"policy.model={policy_dir}", *phases))
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rl = [r for r in rows if "loss/rl" in r]
    if not rl:
        raise RuntimeError(f"{mode}: no RL updates in {run_dir / 'metrics.jsonl'}")
    last = rl[-1]
    return ModeResult(
        mode=mode,
        samples_per_s=last["throughput/samples_per_s"],
        idle_sampler=last["idle/sampler"],
        idle_learner=last["idle/learner"],
        idle_executor=last.get("idle/executor", float("nan")),
        policy_lag_mean=statistics.mean(r["staleness/policy_lag_mean"] for r in rl),
        rl_wall_s=rl[-1]["time"] - rl[0]["time"],
        stale_dropped=last.get("buffer/dropped/stale_samples", 0.0),
    )


def print_modes(results: list[ModeResult]) -> None:
    print(f"\n{'mode':<11}{'samples/s':>10}{'idle sampler':>14}{'idle learner':>14}"
          f"{'idle executor':>15}{'lag':>6}{'stale':>7}{'RL wall s':>11}")  # fmt: skip
    for r in results:
        idle = f"{r.idle_sampler:>14.2f}{r.idle_learner:>14.2f}{r.idle_executor:>15.2f}"
        print(f"{r.mode:<11}{r.samples_per_s:>10.1f}{idle}{r.policy_lag_mean:>6.2f}"
              f"{r.stale_dropped:>7.0f}{r.rl_wall_s:>11.1f}")  # fmt: skip
    by_mode = {r.mode: r for r in results}
    if {"sync", "decoupled"} <= set(by_mode):
        ratio = by_mode["decoupled"].samples_per_s / by_mode["sync"].samples_per_s
        print(f"decoupled / sync samples/s: {ratio:.2f}x")


# --------------------------------------------------------------------------------------------
# 2. broadcast vs. model size


@dataclass
class BroadcastResult:
    name: str
    parameters: int
    megabytes: float
    seconds: float

    @property
    def mb_per_s(self) -> float:
        return self.megabytes / self.seconds


def _build_policy(spec: str) -> Any:
    from transformers import T5ForConditionalGeneration

    from actors.config import PolicyConfig
    from actors.policy import Policy
    from models.loading import PRESETS, _t5

    name, d, ff, layers = spec.split(":")
    preset = PRESETS["tiny" if name == "tiny" else "t5-small-random"]
    tokenizer = preset.tokenizer()
    vocab = len(tokenizer) if name == "tiny" else 32100
    heads = max(4, int(d) // 64)
    model = T5ForConditionalGeneration(_t5(int(d), int(ff), int(layers), heads, vocab))
    return Policy(model, tokenizer, PolicyConfig(model=name, device="cpu"))


class WeightSource:
    def __init__(self, spec: str) -> None:
        self.policy = _build_policy(spec)

    def parameters(self) -> int:
        return sum(p.numel() for p in self.policy.model.parameters())

    def weights(self) -> dict[str, Any]:
        return self.policy.cpu_weights()


class WeightReceiver:
    def __init__(self, spec: str) -> None:
        self.policy = _build_policy(spec)

    def set_weights(self, weights: dict[str, Any], version: int) -> int:
        self.policy.load_weights(weights, version)
        return self.policy.version


def measure_broadcast(spec: str, receivers: int, repeats: int) -> BroadcastResult:
    import ray

    source_cls = ray.remote(num_cpus=0)(WeightSource)
    receiver_cls = ray.remote(num_cpus=0)(WeightReceiver)
    source = source_cls.remote(spec)
    sinks = [receiver_cls.remote(spec) for _ in range(receivers)]
    parameters = ray.get(source.parameters.remote())
    ray.get([s.set_weights.remote(ray.get(source.weights.remote()), 0) for s in sinks])  # warm-up
    times = []
    for version in range(1, repeats + 1):
        started = time.perf_counter()
        ref = source.weights.remote()
        ray.wait([ref], fetch_local=False)
        assert ray.get([s.set_weights.remote(ref, version) for s in sinks]) == [version] * receivers
        times.append(time.perf_counter() - started)
    for actor in [source, *sinks]:
        ray.kill(actor)
    return BroadcastResult(spec.split(":")[0], parameters, parameters * 4 / 1e6, statistics.median(times))


def print_broadcast(results: list[BroadcastResult], receivers: int) -> None:
    print(f"\nweight broadcast to {receivers} receivers (median)")
    print(f"{'model':<10}{'params':>12}{'fp32 MB':>10}{'seconds':>10}{'MB/s':>9}")
    for r in results:
        print(f"{r.name:<10}{r.parameters:>12,}{r.megabytes:>10.1f}{r.seconds:>10.3f}{r.mb_per_s:>9.0f}")


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from coderl.logs import setup_logging

    setup_logging("WARNING")
    import ray

    print(f"host: {host_description()}")
    with tempfile.TemporaryDirectory(prefix="coderl-bench-") as tmp:
        work = args.work_dir or Path(tmp)
        modes: list[ModeResult] = []
        if not args.skip_modes:
            policy_dir = warm_start(work, args.sft_steps)
            modes = [run_mode(work, mode, policy_dir, args.rl_steps) for mode in ("sync", "decoupled")]
            print_modes(modes)
        if not ray.is_initialized():
            ray.init(log_to_driver=False)
        broadcasts = [measure_broadcast(spec, args.receivers, args.repeats) for spec in args.sizes]
        print_broadcast(broadcasts, args.receivers)
    ray.shutdown()
    if args.json:
        write_json(
            args.json,
            {
                "host": host_description(),
                "modes": [asdict(m) for m in modes],
                "broadcast": [asdict(b) | {"mb_per_s": b.mb_per_s} for b in broadcasts],
            },
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
