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
   backward, gradient clipping (as ``learner.sft.ce_step`` does) and an AdamW step
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

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    # Run as a file, bench/ would be sys.path[0] instead of the repository root.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from transformers import PreTrainedModel

from actors.config import SamplingConfig
from actors.sampling import sample_tokens
from bench.common import background_load, host_description, write_json
from learner.config import OptimizerConfig
from learner.losses import cross_entropy_loss, policy_gradient_loss
from learner.sft import make_optimizer
from models.loading import load_model, resolve_device
from models.sequences import TokenBatch, pad_left, pad_right, response_logprobs

DEFAULT_MODELS = ("tiny", "t5-small-random")
TARGET_RATIO = 4.0
"""batched sampling must generate at least this many times the tokens/s of one-at-a-time sampling"""
TOKEN_LOW, TOKEN_HIGH = 3, 259
"""random prompt and response ids are drawn from [TOKEN_LOW, TOKEN_HIGH): bytes, no special ids"""
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
NEVER_EOS = -1
"""an EOS id no sampled token can have: every row decodes exactly max_new_tokens tokens"""
WARMUP_NEW_TOKENS = 4
PAD_ID = 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
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
# Results


@dataclass
class SamplingResult:
    batch: int
    prompt_tokens: int
    new_tokens: int
    stop_at_eos: bool
    batched_tokens: int
    batched_s: float
    sequential_tokens: int
    sequential_s: float

    @property
    def batched_tps(self) -> float:
        return self.batched_tokens / self.batched_s

    @property
    def sequential_tps(self) -> float:
        return self.sequential_tokens / self.sequential_s

    @property
    def ratio(self) -> float:
        return self.batched_tps / self.sequential_tps

    @property
    def passed(self) -> bool:
        return self.ratio >= TARGET_RATIO

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {
            "batched_tokens_per_s": self.batched_tps,
            "sequential_tokens_per_s": self.sequential_tps,
            "ratio": self.ratio,
            "target_ratio": TARGET_RATIO,
            "passed": self.passed,
        }


@dataclass
class StepResult:
    loss: str
    batch: int
    prompt_tokens: int
    response_tokens: int
    seconds: list[float] = field(default_factory=list)
    """every timed step, in order"""

    @property
    def median_s(self) -> float:
        return statistics.median(self.seconds)

    @property
    def response_tps(self) -> float:
        return self.batch * self.response_tokens / self.median_s

    @property
    def all_tps(self) -> float:
        return self.batch * (self.prompt_tokens + self.response_tokens) / self.median_s

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {
            "median_ms": 1000 * self.median_s,
            "min_ms": 1000 * min(self.seconds),
            "response_tokens_per_s": self.response_tps,
            "all_tokens_per_s": self.all_tps,
        }


@dataclass
class ModelResult:
    name: str
    model_class: str
    parameters: int
    vocab_size: int
    load_s: float
    sampling: SamplingResult
    steps: list[StepResult]

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model_class": self.model_class,
            "parameters": self.parameters,
            "vocab_size": self.vocab_size,
            "load_s": self.load_s,
            "sampling": self.sampling.as_dict(),
            "steps": [step.as_dict() for step in self.steps],
        }


# --------------------------------------------------------------------------------------------
# Measurements


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, fn: Callable[[], Any]) -> tuple[float, Any]:
    """(wall seconds, result) of ``fn()``, the device's queued work finished on both sides."""
    sync(device)
    started = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - started, out


def random_ids(rows: int, length: int, generator: torch.Generator) -> list[list[int]]:
    return torch.randint(TOKEN_LOW, TOKEN_HIGH, (rows, length), generator=generator).tolist()


def measure_sampling(
    model: PreTrainedModel, eos_id: int, device: torch.device, args: argparse.Namespace
) -> SamplingResult:
    """Generated tokens/s of the same prompts decoded all together and one by one."""
    prompts = random_ids(args.batch, args.prompt_tokens, torch.Generator().manual_seed(args.seed))
    prompt_ids, prompt_mask = (t.to(device) for t in pad_left(prompts, PAD_ID))
    params = SamplingConfig(temperature=1.0, top_p=1.0, max_new_tokens=args.new_tokens, seed=args.seed)
    warmup = params.model_copy(update={"max_new_tokens": min(WARMUP_NEW_TOKENS, args.new_tokens)})
    eos = eos_id if args.stop_at_eos else NEVER_EOS
    generator = torch.Generator(device=device).manual_seed(args.seed)

    def sample(rows: slice, config: SamplingConfig) -> int:
        out = sample_tokens(model, prompt_ids[rows], prompt_mask[rows], config, eos, PAD_ID, generator)
        return int(out.mask.sum())

    def one_by_one(config: SamplingConfig) -> int:
        return sum(sample(slice(i, i + 1), config) for i in range(args.batch))

    model.eval()
    with torch.no_grad():
        sample(slice(None), warmup)
        sample(slice(0, 1), warmup)
        batched_s, batched_tokens = timed(device, lambda: sample(slice(None), params))
        sequential_s, sequential_tokens = timed(device, lambda: one_by_one(params))
    return SamplingResult(
        batch=args.batch,
        prompt_tokens=args.prompt_tokens,
        new_tokens=args.new_tokens,
        stop_at_eos=args.stop_at_eos,
        batched_tokens=batched_tokens,
        batched_s=batched_s,
        sequential_tokens=sequential_tokens,
        sequential_s=sequential_s,
    )


def measure_steps(
    model: PreTrainedModel, eos_id: int, device: torch.device, args: argparse.Namespace
) -> list[StepResult]:
    """Median wall time of a cross-entropy step and of a policy-gradient step on one fixed batch."""
    generator = torch.Generator().manual_seed(args.seed + 1)
    prompts = random_ids(args.train_batch, args.prompt_tokens, generator)
    responses = random_ids(args.train_batch, args.response_tokens, generator)
    for response in responses:
        response[-1] = eos_id  # a ground-truth program ends with EOS
    prompt_ids, prompt_mask = pad_left(prompts, PAD_ID)
    response_ids, response_mask = pad_right(responses, PAD_ID)
    batch = TokenBatch(prompt_ids, prompt_mask, response_ids, response_mask).to(device)
    advantages = torch.randn(response_ids.shape, generator=generator).to(device)
    config = OptimizerConfig(lr=1e-5)
    optimizer = make_optimizer(model.parameters(), config)

    losses: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "cross_entropy": lambda logprobs: cross_entropy_loss(logprobs, batch.response_mask),
        "policy_gradient": lambda logprobs: policy_gradient_loss(
            logprobs, advantages, batch.response_mask, "sum"
        ),
    }
    model.train()
    results = []
    for name, loss_fn in losses.items():

        def step(loss_fn: Callable[[torch.Tensor], torch.Tensor] = loss_fn) -> float:
            loss = loss_fn(response_logprobs(model, batch))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            return float(loss.detach())

        result = StepResult(name, args.train_batch, args.prompt_tokens, args.response_tokens)
        for _ in range(args.warmup):
            step()
        for _ in range(args.repeats):
            result.seconds.append(timed(device, step)[0])
        results.append(result)
    return results


def measure_model(name: str, device: torch.device, args: argparse.Namespace) -> ModelResult:
    started = time.perf_counter()
    loaded = load_model(name, str(device), DTYPES[args.dtype], seed=args.seed)
    load_s = time.perf_counter() - started
    model = loaded.model
    vocab = int(model.get_output_embeddings().weight.shape[0])
    if vocab < TOKEN_HIGH:
        raise SystemExit(f"{name}: vocabulary of {vocab} ids, the benchmark draws ids below {TOKEN_HIGH}")
    eos_id = int(loaded.tokenizer.eos_token_id)
    parameters = sum(p.numel() for p in model.parameters())
    print(f"{name}: {type(model).__name__}, {parameters / 1e6:.2f}M parameters, loaded in {load_s:.1f} s")
    sampling = measure_sampling(model, eos_id, device, args)
    print(
        f"  sampling: batched {sampling.batched_tokens} tokens in {sampling.batched_s:.2f} s, "
        f"sequential {sampling.sequential_tokens} tokens in {sampling.sequential_s:.2f} s"
    )
    steps = measure_steps(model, eos_id, device, args)
    for step in steps:
        timings = ", ".join(f"{1000 * s:.0f}" for s in step.seconds)
        print(f"  {step.loss} step: {timings} ms")
    return ModelResult(name, type(model).__name__, parameters, vocab, load_s, sampling, steps)


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


if __name__ == "__main__":
    raise SystemExit(main())
