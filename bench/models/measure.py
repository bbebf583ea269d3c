"""The measurements of the policy model benchmark (``python -m bench.models``; bench/models/cli.py
describes them): sampling throughput batched and one by one, and the time of a training step."""

from __future__ import annotations

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
from learner.config import OptimizerConfig
from learner.losses import cross_entropy_loss, policy_gradient_loss
from learner.sft import make_optimizer
from models.loading import load_model
from models.sequences import TokenBatch, pad_left, pad_right, response_logprobs

TARGET_RATIO = 4.0
"""batched sampling must generate at least this many times the tokens/s of one-at-a-time sampling"""
TOKEN_LOW, TOKEN_HIGH = 3, 259
"""random prompt and response ids are drawn from [TOKEN_LOW, TOKEN_HIGH): bytes, no special ids"""
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
NEVER_EOS = -1
"""an EOS id no sampled token can have: every row decodes exactly max_new_tokens tokens"""
WARMUP_NEW_TOKENS = 4
PAD_ID = 0


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
