"""Part 2 of the pipeline benchmark: a source actor's CPU copy of a T5's weights through the Ray
object store into receiver actors' ``Policy.load_weights``, as the run's broadcast does."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any


@dataclass
class BroadcastResult:
    name: str
    parameters: int
    megabytes: float
    seconds: float

    @property
    def mb_per_s(self) -> float:
        return self.megabytes / self.seconds


def t5_config(d_model: int, d_ff: int, layers: int, heads: int, vocab: int) -> Any:
    """A T5 of this shape, configured as the presets of models/loading.py are."""
    from transformers import T5Config

    return T5Config(
        vocab_size=vocab, d_model=d_model, d_kv=d_model // heads, d_ff=d_ff, num_layers=layers,
        num_decoder_layers=layers, num_heads=heads, dropout_rate=0.0, feed_forward_proj="relu",
        tie_word_embeddings=True, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
    )  # fmt: skip


def _build_policy(spec: str) -> Any:
    from transformers import T5ForConditionalGeneration

    from actors.config import PolicyConfig
    from actors.policy import Policy
    from models.loading import PRESETS

    name, d, ff, layers = spec.split(":")
    preset = PRESETS["tiny" if name == "tiny" else "t5-small-random"]
    tokenizer = preset.tokenizer()
    vocab = len(tokenizer) if name == "tiny" else 32100
    heads = max(4, int(d) // 64)
    model = T5ForConditionalGeneration(t5_config(int(d), int(ff), int(layers), heads, vocab))
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
