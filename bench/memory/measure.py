"""The measurement: one learner rank's peak memory in one ``Learner.train_on`` of a configuration.

``measure_rank`` builds the configuration's ``Learner`` (hub names replaced by random-weight
presets of the same shape, bench/memory/architectures.py) with this rank's share of the batch
(bench/memory/workload.py) and ``world_size`` 1, runs one whole update on the synthetic batch (the
actor's RL and CE micro-batches, the critic's token values, and the online critic's step), and
reads the peak: the CUDA allocator's ``max_memory_allocated`` on a GPU, the peak resident set on
the host. ``run_in_child`` runs it in a fresh process, so the libraries' own memory is measured
before any model exists and nothing from an earlier measurement remains.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing
import time
from collections.abc import Iterable

import torch
from pydantic import BaseModel, ConfigDict

from coderl.rollouts import TrainStreams
from coderl.streams import StreamNames
from driver.train_config import TrainConfig
from learner.batch import TrainBatch
from learner.learner import Learner
from learner.reports import StepReport
from models.loading import resolve_device

from . import probe
from .architectures import architecture_for
from .phases import Phase, PhaseTracker
from .workload import RankShape, check_ground_truth, ground_truth_problems, rank_shape, train_batch

__all__ = [
    "MemoryRequest",
    "MemoryResult",
    "ModelInfo",
    "build_learner",
    "measure_rank",
    "passes",
    "run_in_child",
]

UNUSED_REDIS_URL = "redis://127.0.0.1:1/0"
"""the learner's Redis client connects lazily, and ``train_on`` reads nothing from it"""


class MemoryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    config: TrainConfig
    mmap_large_allocations: bool = False
    """host only: unmap freed tensors (probe.mmap_large_allocations); default: glibc as it is"""
    threads: int | None = None
    """torch intra-op threads (None: torch's default)"""


class ModelInfo(BaseModel):
    name: str
    """as the configuration names it"""
    built: str
    """the preset or directory actually built"""
    shape: str
    parameters: int
    parameter_bytes: int


class MemoryResult(BaseModel):
    device: str
    device_name: str
    torch_version: str
    threads: int
    shape: dict[str, int]
    policy: ModelInfo
    critic: ModelInfo | None
    critic_mode: str
    precision: str
    micro_batch_tokens: int
    activation_checkpointing: bool
    passes: dict[str, int]
    """forward passes of the update (rl, ce, critic_values, critic), each with its backward pass
    but the critic's token values"""
    malloc: str
    peak_reset: bool
    build_s: float
    update_s: float
    baseline_bytes: int
    """host: resident set after the imports, before any model; GPU: 0"""
    before_update_bytes: int
    """host: resident set; GPU: allocated, both just before the update"""
    build_peak_bytes: int
    """peak before the update (building the models and the batch)"""
    gradient_bytes: int
    optimizer_bytes: int
    update_peak_bytes: int
    phases: list[Phase]
    """the update phase by phase (bench/memory/phases.py): where its peak falls"""
    device_reserved_bytes: int | None
    host_peak_bytes: int
    losses: dict[str, float]

    @property
    def parameter_bytes(self) -> int:
        return self.policy.parameter_bytes + (self.critic.parameter_bytes if self.critic else 0)

    @property
    def activation_bytes(self) -> int:
        """The update's peak beyond what was there before it, the largest gradient set and the
        optimizer states: activations, autocast's bf16 weight copies, logits, workspace, allocator
        slack. A lower bound of those at the peak, where not every state may exist yet (0 when the
        parts subtracted are not all held at once)."""
        held = self.before_update_bytes + self.gradient_bytes + self.optimizer_bytes
        return max(0, self.update_peak_bytes - held)

    @property
    def peak_bytes_per_rank(self) -> int:
        return max(self.update_peak_bytes, self.build_peak_bytes)


def _tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _optimizer_bytes(optimizer: torch.optim.Optimizer | None) -> int:
    if optimizer is None:
        return 0
    states = optimizer.state.values()
    return _tensor_bytes(v for state in states for v in state.values() if isinstance(v, torch.Tensor))


def _model_info(name: str, module: torch.nn.Module) -> ModelInfo:
    arch = architecture_for(name)
    params = list(module.parameters())
    return ModelInfo(
        name=name,
        built=arch.preset,
        shape=arch.shape,
        parameters=sum(p.numel() for p in params),
        parameter_bytes=_tensor_bytes(params),
    )


def build_learner(config: TrainConfig, shape: RankShape) -> Learner:
    """The configuration's learner, as the driver builds it (driver/roles.learner_arguments), with
    this rank's share of the batch in one process and random weights at the models' shapes."""
    learner_update: dict[str, object] = {
        "batch_size": shape.sampled,
        "ground_truth_batch_size": shape.ground_truth,
    }
    if hasattr(config.learner, "world_size"):
        learner_update["world_size"] = 1  # one rank's share, measured in one process
    critic = config.critic
    if critic.enabled:
        critic = critic.model_copy(update={"model": architecture_for(critic.model).preset})
    return Learner(
        config=config.learner.model_copy(update=learner_update),
        policy=config.policy.model_copy(update={"model": architecture_for(config.policy.model).preset}),
        critic=critic,
        sft=config.sft,
        samples_per_group=config.sampler.sampling.n,
        sft_problems=ground_truth_problems(shape, config.seed),
        redis_url=UNUSED_REDIS_URL,
        channel=TrainStreams(StreamNames(prefix=config.execution.prefix), "bench-memory"),
        seed=config.seed,
    )


def passes(config: TrainConfig, shape: RankShape) -> dict[str, int]:
    """Forward passes of the update (each with its backward, but the critic's token values)."""
    budget = config.learner.micro_batch_tokens

    def count(rows: int, width: int) -> int:
        per_pass = rows if budget <= 0 else max(1, budget // width)
        return -(-rows // max(1, per_pass)) if rows else 0

    sampled_width = shape.prompt_tokens + shape.sampled_tokens
    critic = config.critic.mode != "off"
    return {
        "rl": count(shape.sampled, sampled_width) if config.learner.loss.rl_weight > 0 else 0,
        "ce": count(shape.ground_truth, shape.prompt_tokens + shape.program_tokens),
        "critic_values": 1 if critic and shape.sampled else 0,
        "critic": count(shape.sampled + shape.greedy, sampled_width) if config.critic.mode == "online" else 0,
    }


def _set_up_allocator(request: MemoryRequest, device: torch.device) -> str:
    """Set the host allocator up as asked; what it is, for the report."""
    if device.type == "cuda":
        return "CUDA caching allocator"
    if not request.mmap_large_allocations:
        return "glibc's default (freed heap blocks stay resident for reuse)"
    if probe.mmap_large_allocations():
        return f"allocations >= {probe.MMAP_THRESHOLD // 1024} KiB mapped, unmapped when freed"
    return "default (mallopt unavailable)"


def _prepare(config: TrainConfig, shape: RankShape) -> tuple[Learner, TrainBatch]:
    learner = build_learner(config, shape)
    check_ground_truth(learner.ground_truth, shape)
    policy = learner.policy
    vocab = min(len(policy.tokenizer), int(policy.model.config.vocab_size))
    rewards = config.learner.rewards
    batch = train_batch(shape, vocab, policy.eos_id, rewards, config.greedy_baseline, config.seed)
    return learner, batch


def _update(learner: Learner, batch: TrainBatch, meter: probe.PeakMeter) -> tuple[StepReport, list[Phase]]:
    """One ``train_on``, its peak read phase by phase."""
    tracker = PhaseTracker(learner.policy.model, learner.critic, meter.in_use, meter.take_peak)
    try:
        report = learner.train_on(batch)
        if meter.on_gpu:
            torch.cuda.synchronize(meter.device)
    finally:
        phases = tracker.stop()
    return report, phases


def measure_rank(request: MemoryRequest) -> MemoryResult:
    """Build the configuration's learner and run one update; its peak memory and breakdown."""
    config = request.config
    meter = probe.PeakMeter(resolve_device(config.learner.device))
    malloc = _set_up_allocator(request, meter.device)  # before any model: it applies to later allocations
    if request.threads:
        torch.set_num_threads(request.threads)
    shape = rank_shape(config)
    baseline = 0 if meter.on_gpu else probe.resident()  # GPU: nothing there before the models
    started = time.perf_counter()
    learner, batch = _prepare(config, shape)
    build_s = time.perf_counter() - started
    before, build_peak = meter.in_use(), meter.take_peak()  # the update's peak starts from here
    started = time.perf_counter()
    report, phases = _update(learner, batch, meter)
    update_s = time.perf_counter() - started
    update_peak = max(p.peak_bytes for p in phases)
    # GPU: the host's high-water mark was never reset; host: the phases' resets split it up
    host_peak = probe.peak_resident() if meter.on_gpu else max(build_peak, update_peak)

    policy, critic = learner.policy.model, learner.critic
    modules = [policy, *([critic] if critic is not None else [])]
    # Each model's gradients exist from its backward passes to the end of its own step (the learner
    # frees them after every optimizer step, and the models step in turn): the largest set counts.
    largest_grads = max(_tensor_bytes(p.detach() for p in m.parameters() if p.requires_grad) for m in modules)
    return MemoryResult(
        device=str(meter.device),
        device_name=torch.cuda.get_device_name(meter.device) if meter.on_gpu else "cpu",
        torch_version=torch.__version__,
        threads=torch.get_num_threads(),
        shape=dataclasses.asdict(shape),
        policy=_model_info(config.policy.model, policy),
        critic=_model_info(config.critic.model, critic) if critic is not None else None,
        critic_mode=config.critic.mode,
        precision=config.learner.precision,
        micro_batch_tokens=config.learner.micro_batch_tokens,
        activation_checkpointing=config.learner.activation_checkpointing,
        passes=passes(config, shape),
        malloc=malloc,
        peak_reset=meter.resettable,
        build_s=build_s,
        update_s=update_s,
        baseline_bytes=baseline,
        before_update_bytes=before,
        build_peak_bytes=build_peak,
        gradient_bytes=largest_grads,
        optimizer_bytes=sum(map(_optimizer_bytes, (learner.actor_optimizer, learner.critic_optimizer))),
        update_peak_bytes=update_peak,
        phases=phases,
        device_reserved_bytes=meter.reserved if meter.on_gpu else None,
        host_peak_bytes=host_peak,
        losses={k: v for k, v in report.stats.items() if k.startswith("loss/")},
    )


def run_in_child(request: MemoryRequest) -> MemoryResult:
    """``measure_rank`` in a fresh process (spawned: no memory shared with this one)."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        try:
            return pool.submit(measure_rank, request).result()
        except concurrent.futures.process.BrokenProcessPool:
            raise RuntimeError(
                "the measuring process died before it reported: killed for lack of memory? "
                "(the kernel log says: dmesg | grep -i oom)"
            ) from None
