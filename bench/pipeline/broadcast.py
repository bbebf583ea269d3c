"""Part 2 of the pipeline benchmark: a T5's weights from a source actor into receiver actors, three
ways, side by side in one run:

- *dict*, the old path: a CPU state-dict copy (``Policy.cpu_weights``) through the Ray object store
  into ``Policy.load_weights`` (every tensor pickled; tied embeddings sent once per name);
- *packed*, the run's object-store path: ``Policy.packed_weights`` (one buffer per dtype, a typed
  manifest, numpy buffers Ray moves out of band) into ``Policy.load_packed``;
- *collective*, ``sync.method = "collective"``: a gloo broadcast in buckets from the source (rank 0)
  to the receivers (models/weight_group.py), each receiving into staging and applying it.

Each time runs from asking the source for its weights to every receiver having applied them.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

TARGET_MB_PER_S = 1000.0
"""the packed object-store path's target on the T5-base shape, to 2 receivers (issue 14)"""
TARGET_MODEL = "t5-base"


@dataclass
class BroadcastResult:
    name: str
    parameters: int
    megabytes: float
    """fp32 MB of the model's parameters (tied ones counted once)"""
    dict_s: float
    packed_s: float
    collective_s: float | None

    def mb_per_s(self, seconds: float | None) -> float:
        return self.megabytes / seconds if seconds else float("nan")

    @property
    def packed_mb_per_s(self) -> float:
        return self.mb_per_s(self.packed_s)


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
    """The learner's side."""

    def __init__(self, spec: str) -> None:
        self.policy = _build_policy(spec)
        self.sync: Any = None

    def parameters(self) -> int:
        return sum(p.numel() for p in self.policy.model.parameters())

    def weights(self) -> dict[str, Any]:
        return self.policy.cpu_weights()

    def packed(self, version: int) -> Any:
        self.policy.version = version
        return self.policy.packed_weights()

    def open_group(self, host: str, receivers: int, bucket_mb: float) -> Any:
        from models.weight_group import SyncHost

        self.sync = SyncHost(host, receivers + 1, "gloo", int(bucket_mb * 2**20), timeout_s=300.0)
        return self.sync.address

    def join_group(self) -> None:
        self.sync.join(self.policy.model)

    def send(self, version: int) -> int:
        self.sync.send(version)
        return version


class WeightReceiver:
    """A sampler's side."""

    def __init__(self, spec: str) -> None:
        self.policy = _build_policy(spec)
        self.inbox: Any = None

    def set_weights(self, weights: dict[str, Any], version: int) -> int:
        self.policy.load_weights(weights, version)
        return self.policy.version

    def set_packed(self, packed: Any) -> int:
        self.policy.load_packed(packed)
        return self.policy.version

    def join_group(self, address: Any, rank: int) -> None:
        from models.weight_group import WeightInbox

        self.inbox = WeightInbox(self.policy.model)
        self.inbox.join(address, rank)

    def receive(self) -> int:
        """Receive one broadcast and apply it (as a sampler does at its next round)."""
        self.inbox.receive()
        applied = self.inbox.apply(self.policy.version)
        assert applied is not None, "a received broadcast was not applied"
        self.policy.version = applied
        return applied


def measure_broadcast(
    spec: str, receivers: int, repeats: int, bucket_mb: float, collective: bool = True
) -> BroadcastResult:
    """Median time of each path for the model ``spec`` (name:d_model:d_ff:layers)."""
    import ray

    source = ray.remote(num_cpus=0)(WeightSource).remote(spec)
    sinks = [ray.remote(num_cpus=0)(WeightReceiver).remote(spec) for _ in range(receivers)]
    parameters = ray.get(source.parameters.remote())
    versions = iter(range(1, 10_000))

    def via_dict() -> None:
        version, ref = next(versions), source.weights.remote()
        ray.wait([ref], fetch_local=False)
        assert ray.get([s.set_weights.remote(ref, version) for s in sinks]) == [version] * receivers

    def via_packed() -> None:
        version = next(versions)
        ref = source.packed.remote(version)
        ray.wait([ref], fetch_local=False)
        assert ray.get([s.set_packed.remote(ref) for s in sinks]) == [version] * receivers

    def via_collective() -> None:
        version = next(versions)
        done = ray.get([source.send.remote(version), *[s.receive.remote() for s in sinks]])
        assert done == [version] * (receivers + 1)

    paths: dict[str, Callable[[], None]] = {"dict": via_dict, "packed": via_packed}
    if collective:
        address = ray.get(source.open_group.remote(ray.util.get_node_ip_address(), receivers, bucket_mb))
        joins = [sink.join_group.remote(address, rank) for rank, sink in enumerate(sinks, start=1)]
        ray.get([source.join_group.remote(), *joins])
        paths["collective"] = via_collective
    times: dict[str, list[float]] = {name: [] for name in paths}
    for round_index in range(repeats + 1):  # the first round warms every path up, untimed
        for name, path in paths.items():  # interleaved: background noise hits every path alike
            started = time.perf_counter()
            path()
            if round_index:
                times[name].append(time.perf_counter() - started)
    for actor in [source, *sinks]:
        ray.kill(actor)
    median = {name: statistics.median(values) for name, values in times.items()}
    name, megabytes = spec.split(":")[0], parameters * 4 / 1e6
    return BroadcastResult(
        name, parameters, megabytes, median["dict"], median["packed"], median.get("collective")
    )


def print_broadcast(results: list[BroadcastResult], receivers: int, repeats: int) -> bool | None:
    """The table, then the target line; whether the target was met (None: its model not measured)."""
    print(f"\nweight broadcast to {receivers} receivers (median of {repeats}), MB/s of fp32 weights")
    print(f"{'model':<10}{'params':>13}{'fp32 MB':>9}{'dict s':>9}{'MB/s':>7}{'packed s':>10}{'MB/s':>7}"
          f"{'x dict':>8}{'collective s':>14}{'MB/s':>7}{'x dict':>8}")  # fmt: skip
    for r in results:
        old, new, coll = r.dict_s, r.packed_s, r.collective_s
        collective = f"{coll:>14.3f}{r.mb_per_s(coll):>7.0f}{old / coll:>7.1f}x" if coll else f"{'-':>29}"
        print(f"{r.name:<10}{r.parameters:>13,}{r.megabytes:>9.1f}{old:>9.3f}{r.mb_per_s(old):>7.0f}"
              f"{new:>10.3f}{r.mb_per_s(new):>7.0f}{old / new:>7.1f}x{collective}")  # fmt: skip
    target = [r for r in results if r.name == TARGET_MODEL]
    if not target:
        return None
    rate = target[0].packed_mb_per_s
    met = rate >= TARGET_MB_PER_S
    print(f"target: packed object-store broadcast of {TARGET_MODEL} >= {TARGET_MB_PER_S:.0f} MB/s to "
          f"{receivers} receivers: {rate:.0f} MB/s, {'PASS' if met else 'FAIL'}")  # fmt: skip
    return met
