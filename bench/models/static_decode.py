"""Tokens/s of today's decoder (``actors.sampling.sample_tokens``) against the static decode path
(``actors.static_decode``), on CPU or one GPU:

    python -m bench.models.static_decode                       # tiny and tiny-causal, batch 16, CPU
    python -m bench.models.static_decode --models t5-small-random --device cuda --batch 64

Two workloads, each on ``--batch`` rows of random prompts (ids in [3, 259), ``--prompt-tokens``
long), temperature 1.0, top-p 1.0, model in eval mode, no grad:

- *fixed*: every row decodes exactly ``--new-tokens`` tokens (an EOS id no token has); the same
  prompts through ``sample_tokens`` and through ``static_sample_tokens``;
- *ragged*: ``--queue`` x ``--batch`` prompts whose responses end after a length drawn uniformly
  from [1, new tokens] (a forced prefix of random ids ending with EOS: a stand-in for programs of
  different lengths); ``sample_tokens`` decodes them ``--batch`` at a time, each chunk as long as
  its longest row, the ``ContinuousDecoder`` keeps ``--batch`` slots busy, refilled as rows end.

Tokens counted are the returned tokens (EOS included), the same for both paths. One untimed warm-up
call of each path runs first; then the best of ``--repeats`` timed runs.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from actors.config import SamplingConfig
from actors.sampling import sample_tokens
from actors.static_batch import static_sample_tokens
from actors.static_decode import ContinuousDecoder, DecodeRequest
from bench.models.measure import NEVER_EOS, PAD_ID, random_ids, sync
from models.loading import load_model, resolve_device
from models.sequences import pad_left, pad_right


def _best(device: torch.device, repeats: int, fn: Callable[[], int]) -> tuple[float, int]:
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


def fixed(model: torch.nn.Module, device: torch.device, args: argparse.Namespace) -> dict[str, float]:
    prompts = random_ids(args.batch, args.prompt_tokens, torch.Generator().manual_seed(0))
    ids, mask = (t.to(device) for t in pad_left(prompts, PAD_ID))
    params = SamplingConfig(temperature=1.0, top_p=1.0, max_new_tokens=args.new_tokens)
    out = {}
    for name, sampler in (("dynamic", sample_tokens), ("static", static_sample_tokens)):

        def run(sampler: Callable[..., object] = sampler) -> int:
            samples = sampler(
                model, ids, mask, params, NEVER_EOS, PAD_ID, torch.Generator(device).manual_seed(0)
            )
            return int(samples.mask.sum())  # type: ignore[attr-defined]

        seconds, tokens = _best(device, args.repeats, run)
        out[name] = tokens / seconds
    return out


def ragged(
    model: torch.nn.Module, eos_id: int, device: torch.device, args: argparse.Namespace
) -> dict[str, float]:
    rows = args.queue * args.batch
    generator = torch.Generator().manual_seed(1)
    prompts = random_ids(rows, args.prompt_tokens, generator)
    lengths = torch.randint(1, args.new_tokens + 1, (rows,), generator=generator).tolist()
    prefixes = [
        [*ids[: length - 1], eos_id]
        for ids, length in zip(random_ids(rows, args.new_tokens, generator), lengths, strict=True)
    ]
    params = SamplingConfig(temperature=1.0, top_p=1.0, max_new_tokens=args.new_tokens)

    def chunks() -> int:
        tokens = 0
        for start in range(0, rows, args.batch):
            ids, mask = (t.to(device) for t in pad_left(prompts[start : start + args.batch], PAD_ID))
            prefix_ids, prefix_mask = (
                t.to(device) for t in pad_right(prefixes[start : start + args.batch], PAD_ID)
            )
            forced = (prefix_ids, prefix_mask.sum(dim=1))
            samples = sample_tokens(model, ids, mask, params, eos_id, PAD_ID, prefixes=forced)
            tokens += int(samples.mask.sum())
        return tokens

    def continuous() -> int:
        decoder = ContinuousDecoder(model, params, eos_id, PAD_ID, args.batch, args.prompt_tokens)
        requests = [DecodeRequest(p, f) for p, f in zip(prompts, prefixes, strict=True)]
        return sum(len(row.token_ids) for row in decoder.decode(requests))

    out = {}
    for name, fn in (("dynamic", chunks), ("continuous", continuous)):
        seconds, tokens = _best(device, args.repeats, fn)
        out[name] = tokens / seconds
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["tiny", "tiny-causal"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--queue", type=int, default=4, help="ragged: prompts per slot")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    print(
        f"device {device}, {torch.get_num_threads()} threads, batch {args.batch}, "
        f"{args.prompt_tokens} prompt / {args.new_tokens} new tokens; generated tokens/s"
    )
    for name in args.models:
        loaded = load_model(name, device=str(device))
        model = loaded.model.eval()
        with torch.no_grad():
            one = fixed(model, device, args)
            two = ragged(model, int(loaded.tokenizer.eos_token_id), device, args)
        print(
            f"{name:>16}  fixed: dynamic {one['dynamic']:9.0f}  static {one['static']:9.0f}  "
            f"x{one['static'] / one['dynamic']:.2f}   ragged ({args.queue}x): dynamic {two['dynamic']:9.0f}  "
            f"continuous {two['continuous']:9.0f}  x{two['continuous'] / two['dynamic']:.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
