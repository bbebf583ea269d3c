"""Policy model benchmark: batched vs. one-at-a-time sampling, and the time of a training step.

    python -m bench.models                                  # tiny and t5-small-random, ~1.5 min on 2 CPUs
    python -m bench.models --models tiny tiny-causal --device cpu --json runs/bench/models.json
    python -m bench.models --models t5-small-random --device cuda --batch 64 --new-tokens 256

For each model (presets of ``models/loading.py`` with random weights, or a checkpoint / hub name),
in one run:

1. **Sampling throughput**, in generated tokens per second, of ``actors.sampling.sample_tokens``
   (temperature 1.0, top-p 1.0, model in eval mode, no grad):

   - *batched*: the B prompts (``--batch``, default 32) decoded together in one call;
   - *sequential*: the same B prompts, one call per prompt (batch 1), one after the other.

   Prompts are random token ids in [3, 259) (the byte range of the byte-level tokenizer, no special
   ids) of a fixed length (``--prompt-tokens``, default 64), no padding. Each call asks for
   ``--new-tokens`` (default 64) tokens. So that every row decodes exactly that many, sampling is
   given an EOS id that no token can have (-1); ``--stop-at-eos`` uses the tokenizer's real EOS
   instead (rows then may stop early). Generated tokens are counted as the sum of the returned
   mask either way. The ratio batched/sequential has to reach 4 ("batched generation beats
   one-at-a-time by a wide margin"): PASS or FAIL is printed with the threshold. One untimed
   warm-up call of each kind (a few tokens) runs first.

2. **Training step time**: a forward pass with ``models.sequences.response_logprobs``, the loss,
   backward, gradient clipping (as the learner's SFT step does) and an AdamW step
   (``learner.sft.make_optimizer``), model in train mode, on a batch of ``--train-batch`` (default 8)
   rows of ``--prompt-tokens`` prompt and ``--response-tokens`` (default 128) response tokens
   (random ids, no padding). Two losses: cross-entropy (``learner.losses.cross_entropy_loss``) and
   the RL loss (``learner.losses.policy_gradient_loss``, the default ``sum`` normalisation, random
   normal advantages). ``--warmup`` (default 1) untimed steps, then the median of ``--repeats``
   (default 3) timed steps; reported as ms/step and as tokens/s, both of response tokens (the
   tokens the loss covers) and of prompt + response tokens.

Timings use ``time.perf_counter``, with ``torch.cuda.synchronize()`` around each timed region on
CUDA. The header gives the device, torch's intra-op thread count (``--threads`` sets it) and the
host; the table gives each model's parameter count. ``--json PATH`` also writes the numbers.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from bench.common import background_load, host_description, write_json
from bench.models.measure import DTYPES, TARGET_RATIO, ModelResult, measure_model
from models.loading import resolve_device

DEFAULT_MODELS = ("tiny", "t5-small-random")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.models", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", nargs="+", default=list(DEFAULT_MODELS), metavar="NAME",
        help="presets (tiny, tiny-causal, t5-small-random), checkpoint directories or hub names",
    )  # fmt: skip
    parser.add_argument("--device", default="auto", help="auto (cuda when present, else cpu), cpu, cuda")
    parser.add_argument(
        "--dtype", default="float32", choices=sorted(DTYPES),
        help="weights and activations; bfloat16 trains in pure bf16 (AdamW on bf16 weights)",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--batch", type=int, default=32, help="prompts sampled together (and one by one)")
    parser.add_argument("--prompt-tokens", type=int, default=64, help="prompt length, sampling and training")
    parser.add_argument("--new-tokens", type=int, default=64, help="tokens sampled per prompt")
    parser.add_argument("--stop-at-eos", action="store_true", help="let rows stop at the tokenizer's EOS")
    parser.add_argument("--train-batch", type=int, default=8, help="rows per training step")
    parser.add_argument("--response-tokens", type=int, default=128, help="response length per training row")
    parser.add_argument("--warmup", type=int, default=1, help="untimed training steps of each loss")
    parser.add_argument("--repeats", type=int, default=3, help="timed training steps of each loss (median)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    for name in ("batch", "prompt_tokens", "new_tokens", "train_batch", "response_tokens", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")
    if args.threads is not None and args.threads < 1:
        parser.error("--threads must be >= 1")
    try:
        args.resolved_device = resolve_device(args.device)
    except (ValueError, RuntimeError) as e:
        parser.error(str(e))
    return args


# --------------------------------------------------------------------------------------------
# Report


def print_report(results: list[ModelResult], args: argparse.Namespace) -> None:
    print()
    print(
        f"Sampling: {args.batch} prompts of {args.prompt_tokens} random ids, {args.new_tokens} new tokens "
        f"each, temperature 1.0, top-p 1.0, "
        f"{'stopping at EOS' if args.stop_at_eos else 'no EOS stop'}; target batched/sequential "
        f">= {TARGET_RATIO:g}x"
    )
    header = f"  {'model':<18}{'params':>9}{'batched tok/s':>15}{'sequential tok/s':>18}{'ratio':>9}  verdict"
    print(header)
    for r in results:
        s = r.sampling
        verdict = "PASS" if s.passed else "FAIL"
        print(
            f"  {r.name:<18}{r.parameters / 1e6:>8.2f}M{s.batched_tps:>15.0f}{s.sequential_tps:>18.0f}"
            f"{s.ratio:>8.1f}x  {verdict} (>= {TARGET_RATIO:g}x)"
        )
    print()
    print(
        f"Training step (forward + backward + clip + AdamW): batch {args.train_batch}, prompt "
        f"{args.prompt_tokens} + response {args.response_tokens} tokens; median of {args.repeats} "
        f"after {args.warmup} warm-up"
    )
    print(f"  {'model':<18}{'loss':<17}{'ms/step':>10}{'min ms':>10}{'response tok/s':>16}{'all tok/s':>11}")
    for r in results:
        for step in r.steps:
            print(
                f"  {r.name:<18}{step.loss:<17}{1000 * step.median_s:>10.1f}{1000 * min(step.seconds):>10.1f}"
                f"{step.response_tps:>16.0f}{step.all_tps:>11.0f}"
            )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device: torch.device = args.resolved_device
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    load_before = background_load()
    print(
        f"host: {host_description()}; torch {torch.__version__}, device {device} ({device_name}), "
        f"{args.dtype}, {torch.get_num_threads()} torch threads; seed {args.seed}; "
        f"background load before start {100 * load_before:.0f}% of the host"
    )
    started = time.perf_counter()
    results = [measure_model(name, device, args) for name in args.models]
    total_s = time.perf_counter() - started
    load_after = background_load()
    print_report(results, args)
    print(
        f"\ntotal {total_s:.1f} s; background load (host CPU busy while this benchmark idles): "
        f"{100 * load_before:.0f}% before, {100 * load_after:.0f}% after; other work on the host "
        "slows every measurement (torch's threads wait for each other on a busy CPU)"
    )
    if args.json:
        write_json(
            args.json,
            {
                "host": host_description(),
                "torch": torch.__version__,
                "device": str(device),
                "device_name": device_name,
                "dtype": args.dtype,
                "torch_threads": torch.get_num_threads(),
                "seed": args.seed,
                "target_ratio": TARGET_RATIO,
                "total_s": total_s,
                "background_load_before": load_before,
                "background_load_after": load_after,
                "models": [r.as_dict() for r in results],
            },
        )
        print(f"wrote {args.json}")
    return 0
