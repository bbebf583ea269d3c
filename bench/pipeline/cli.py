"""Pipeline benchmark: synchronous vs. decoupled RL training end to end, and weight broadcast time
against model size, in one run.

    python -m bench.pipeline                        # about 6 minutes on 2 CPUs (Docker, Ray, Redis)
    python -m bench.pipeline --rl-steps 40 --json runs/bench/pipeline.json
    python -m bench.pipeline --skip-modes           # only the broadcast table (about 2 minutes)

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
   ``Policy``: the time from asking the source for its weights to every receiver having applied
   them, three ways side by side (bench/pipeline/broadcast.py): the old state dict through the Ray
   object store, the packed weights through it (``Learner.weights``, as ``RayRoles.broadcast``
   sends them), and the collective gloo broadcast in ``--bucket-mb`` buckets
   (``sync.method = "collective"``). Median of ``--repeats``; MB/s of fp32 weights and each path's
   ratio to the old one. Target: the packed path moves T5-base at 1,000 MB/s or more to 2 receivers
   (exit status 1 when it does not).

The broadcast part needs no Docker. ``--json PATH`` also writes the numbers.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import asdict
from pathlib import Path

from bench.common import host_description, write_json
from bench.pipeline.broadcast import BroadcastResult, measure_broadcast, print_broadcast
from bench.pipeline.modes import ModeResult, print_modes, run_mode, warm_start

PATHS = ("dict", "packed", "collective")

DEFAULT_SIZES = ("tiny:64:256:2", "small:256:1024:4", "t5-small:512:2048:6", "t5-base:768:3072:12")
"""name:d_model:d_ff:layers (T5 shapes; 32,100-token vocabulary except the tiny preset's)"""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--sft-steps", type=int, default=400, help="warm start before the RL phases")
    parser.add_argument("--rl-steps", type=int, default=30, help="RL updates per mode")
    parser.add_argument("--sizes", nargs="+", default=list(DEFAULT_SIZES), metavar="NAME:D:FF:LAYERS")
    parser.add_argument("--receivers", type=int, default=2, help="receiving actors (samplers)")
    parser.add_argument("--repeats", type=int, default=3, help="broadcasts per size and path (median)")
    parser.add_argument("--bucket-mb", type=float, default=64.0, help="collective broadcast bucket size")
    parser.add_argument("--skip-collective", action="store_true", help="only the object-store paths")
    parser.add_argument("--skip-modes", action="store_true", help="only the broadcast table")
    parser.add_argument("--work-dir", type=Path, help="run directories (default: a temporary one)")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    if min(args.rl_steps, args.sft_steps, args.receivers, args.repeats) < 1:
        parser.error("--sft-steps, --rl-steps, --receivers and --repeats must be >= 1")
    if args.bucket_mb <= 0:
        parser.error("--bucket-mb must be above 0")
    return args


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
        broadcasts = [
            measure_broadcast(spec, args.receivers, args.repeats, args.bucket_mb, not args.skip_collective)
            for spec in args.sizes
        ]
        met = print_broadcast(broadcasts, args.receivers, args.repeats)
    ray.shutdown()
    if args.json:
        write_json(
            args.json,
            {
                "host": host_description(),
                "modes": [asdict(m) for m in modes],
                "broadcast": [_broadcast_json(b) for b in broadcasts],
            },
        )
    return 1 if met is False else 0


def _broadcast_json(result: BroadcastResult) -> dict[str, object]:
    rates = {f"{path}_mb_per_s": result.mb_per_s(getattr(result, f"{path}_s")) for path in PATHS}
    return asdict(result) | rates
