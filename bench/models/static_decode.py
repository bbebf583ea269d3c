"""Tokens/s of the growing-cache decoder (``actors.sampling.sample_tokens``) against the static
decoder (``actors.static_decode.ContinuousDecoder``, the sampler's default), side by side:

    python -m bench.models.static_decode                      # tiny and tiny-causal, batch 16, CPU
    python -m bench.models.static_decode --batch 64 256 --new-tokens 128 512 --repeats 1
    python -m bench.models.static_decode --device cuda --dtype bfloat16 --models t5-large-random \\
        --batch 64 256 --new-tokens 128 512 --json runs/bench/gpu/static_decode.json

For each model and each (batch, new tokens) cell, on random prompts (ids in [3, 259),
``--prompt-tokens`` long), temperature 1.0, top-p 1.0, eval mode, no grad:

- *fixed*: every row decodes exactly the new tokens (an EOS id no token has): ``sample_tokens`` on
  the batch against one kept ``ContinuousDecoder`` of ``batch`` slots (as a sampler keeps it; on
  CUDA its steps replay CUDA graphs captured in the warm-up run);
- *ragged*: ``--queue`` x batch prompts whose responses end after a length drawn uniformly from
  [1, new tokens] (a forced prefix of random ids ending with EOS: programs of different lengths);
  ``sample_tokens`` takes them ``batch`` at a time, each chunk as long as its longest row; the
  kept decoder keeps ``batch`` slots busy, refilled as rows end.

Tokens counted are the returned tokens (EOS included), the same for both decoders. One untimed
warm-up run of each, then the fastest of ``--repeats``. On CUDA, ``busy`` is the GPU's share of a
fixed decode's wall time: the kernel time one profiled run records over the fastest unprofiled
wall time (issue 17: at least half of each step).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from actors.config import SamplingConfig
from actors.sampling import sample_tokens
from actors.static_decode import ContinuousDecoder, DecodeRequest
from bench.common import host_description, write_json
from bench.models.measure import DTYPES, NEVER_EOS, PAD_ID, random_ids, sync
from models.loading import load_model, resolve_device
from models.sequences import pad_left, pad_right

Decode = Callable[[], int]
"""one decode of the workload; returns the tokens generated"""


def fastest(device: torch.device, repeats: int, fn: Decode) -> tuple[float, int]:
    """(fastest wall seconds, tokens) over ``repeats`` runs after one warm-up."""
    fn()
    best, tokens = float("inf"), 0
    for _ in range(repeats):
        sync(device)
        started = time.perf_counter()
        tokens = fn()
        sync(device)
        best = min(best, time.perf_counter() - started)
    return best, tokens


def kernel_seconds(device: torch.device, fn: Decode) -> float | None:
    """GPU kernel time of one run of ``fn`` (profiled), or None off CUDA."""
    if device.type != "cuda":
        return None
    from torch.profiler import ProfilerActivity, profile

    sync(device)
    with profile(activities=[ProfilerActivity.CUDA]) as profiled:
        fn()
        sync(device)
    events = profiled.key_averages()
    micros = sum(getattr(e, "self_device_time_total", getattr(e, "self_cuda_time_total", 0)) for e in events)
    return micros / 1e6


def _decoder(model: torch.nn.Module, params: SamplingConfig, eos_id: int, slots: int, width: int) -> Any:
    return ContinuousDecoder(model, params, eos_id, PAD_ID, slots=slots, max_prompt_tokens=width)


def fixed_decodes(
    model: torch.nn.Module, device: torch.device, batch: int, new_tokens: int, args: argparse.Namespace
) -> dict[str, Decode]:
    prompts = random_ids(batch, args.prompt_tokens, torch.Generator().manual_seed(0))
    ids, mask = (t.to(device) for t in pad_left(prompts, PAD_ID))
    params = SamplingConfig(temperature=1.0, top_p=1.0, max_new_tokens=new_tokens)
    decoder = _decoder(model, params, NEVER_EOS, batch, args.prompt_tokens)
    requests = [DecodeRequest(prompt) for prompt in prompts]

    def dynamic() -> int:
        generator = torch.Generator(device).manual_seed(0)
        return int(sample_tokens(model, ids, mask, params, NEVER_EOS, PAD_ID, generator).mask.sum())

    def static() -> int:
        generator = torch.Generator(device).manual_seed(0)
        return sum(len(row.token_ids) for row in decoder.decode(requests, params, generator))

    return {"dynamic": dynamic, "static": static}


def ragged_decodes(
    model: torch.nn.Module,
    eos_id: int,
    device: torch.device,
    batch: int,
    new_tokens: int,
    args: argparse.Namespace,
) -> dict[str, Decode]:
    rows = args.queue * batch
    generator = torch.Generator().manual_seed(1)
    prompts = random_ids(rows, args.prompt_tokens, generator)
    lengths = torch.randint(1, new_tokens + 1, (rows,), generator=generator).tolist()
    prefixes = [
        [*ids[: length - 1], eos_id]
        for ids, length in zip(random_ids(rows, new_tokens, generator), lengths, strict=True)
    ]
    params = SamplingConfig(temperature=1.0, top_p=1.0, max_new_tokens=new_tokens)
    decoder = _decoder(model, params, eos_id, batch, args.prompt_tokens)
    requests = [DecodeRequest(p, f) for p, f in zip(prompts, prefixes, strict=True)]

    def chunks() -> int:
        tokens = 0
        for start in range(0, rows, batch):
            ids, mask = (t.to(device) for t in pad_left(prompts[start : start + batch], PAD_ID))
            prefix_ids, prefix_mask = (
                t.to(device) for t in pad_right(prefixes[start : start + batch], PAD_ID)
            )
            forced = (prefix_ids, prefix_mask.sum(dim=1))
            samples = sample_tokens(model, ids, mask, params, eos_id, PAD_ID, prefixes=forced)
            tokens += int(samples.mask.sum())
        return tokens

    def continuous() -> int:
        return sum(len(row.token_ids) for row in decoder.decode(requests, params))

    return {"dynamic": chunks, "continuous": continuous}


def measure_cell(
    model: torch.nn.Module,
    eos_id: int,
    device: torch.device,
    batch: int,
    new_tokens: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Tokens/s of each decoder on both workloads of one (batch, new tokens) cell."""
    cell: dict[str, Any] = {"batch": batch, "new_tokens": new_tokens}
    for workload, decodes in (
        ("fixed", fixed_decodes(model, device, batch, new_tokens, args)),
        ("ragged", ragged_decodes(model, eos_id, device, batch, new_tokens, args)),
    ):
        counts = set()
        for name, fn in decodes.items():
            seconds, tokens = fastest(device, args.repeats, fn)
            counts.add(tokens)
            cell[f"{workload}_{name}_tps"] = tokens / seconds
            if workload == "fixed":
                kernels = kernel_seconds(device, fn)
                cell[f"fixed_{name}_gpu_busy"] = None if kernels is None else min(1.0, kernels / seconds)
        if len(counts) != 1:  # the same work, or the ratio means nothing
            raise RuntimeError(f"{workload}: the decoders generated different token counts {sorted(counts)}")
        cell[f"{workload}_tokens"] = counts.pop()
    cell["fixed_ratio"] = cell["fixed_static_tps"] / cell["fixed_dynamic_tps"]
    cell["ragged_ratio"] = cell["ragged_continuous_tps"] / cell["ragged_dynamic_tps"]
    return cell


def row_text(name: str, cell: dict[str, Any]) -> str:
    def busy(key: str) -> str:
        value = cell[key]
        return "" if value is None else f" (GPU {value:.0%})"

    head = f"{name:>16} {cell['batch']:>5} {cell['new_tokens']:>5}"
    return (
        f"{head}  fixed: dynamic {cell['fixed_dynamic_tps']:8.0f}{busy('fixed_dynamic_gpu_busy')}"
        f"  static {cell['fixed_static_tps']:8.0f}{busy('fixed_static_gpu_busy')}  x{cell['fixed_ratio']:.2f}"
        f"   ragged: dynamic {cell['ragged_dynamic_tps']:8.0f}"
        f"  continuous {cell['ragged_continuous_tps']:8.0f}  x{cell['ragged_ratio']:.2f}"
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["tiny", "tiny-causal"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    parser.add_argument("--batch", type=int, nargs="+", default=[16])
    parser.add_argument("--new-tokens", type=int, nargs="+", default=[64])
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--queue", type=int, default=4, help="ragged: prompts per slot")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path, help="write every cell here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    print(
        f"device {device}, {args.dtype}, {torch.get_num_threads()} threads, {args.prompt_tokens} prompt "
        f"tokens, ragged {args.queue}x batch prompts; generated tokens/s, static/dynamic ratios"
    )
    print(f"{'model':>16} {'batch':>5} {'new':>5}")
    results = []
    for name in args.models:
        loaded = load_model(name, device=str(device), dtype=DTYPES[args.dtype])
        model, eos_id = loaded.model.eval(), int(loaded.tokenizer.eos_token_id)
        for batch in args.batch:
            for new_tokens in args.new_tokens:
                with torch.no_grad():
                    cell = measure_cell(model, eos_id, device, batch, new_tokens, args)
                print(row_text(name, cell), flush=True)
                results.append({"model": name, **cell})
        del model, loaded
    if args.json:
        write_json(args.json, {"host": host_description(), "args": vars(args), "cells": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
