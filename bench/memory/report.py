"""The memory benchmark's report: the rank's update, the peak and its breakdown, and last the one
machine-readable line ``peak_bytes_per_rank=N``."""

from __future__ import annotations

from coderl.cli import plural

from .measure import MemoryResult, ModelInfo

__all__ = ["PEAK_LINE_PREFIX", "format_report"]

PEAK_LINE_PREFIX = "peak_bytes_per_rank="
GIB = 1024**3
MIB = 1024**2


def _amount(n: int, unit: int) -> str:
    return f"{n / GIB:8.2f} GiB" if unit == GIB else f"{n / MIB:8.1f} MiB"


def _model_line(role: str, model: ModelInfo) -> str:
    built = "" if model.built == model.name else f" built as {model.built} ({model.shape})"
    return f"  {role}: {model.name}{built}, random weights: {model.parameters / 1e6:.1f}M parameters"


def _setup_lines(r: MemoryResult, config_name: str) -> list[str]:
    s = r.shape
    checkpointing = "on" if r.activation_checkpointing else "off"
    lines = [
        f"learner memory of one update: {config_name}",
        f"  device {r.device} ({r.device_name}), torch {r.torch_version}, {r.threads} torch threads",
        _model_line("policy", r.policy),
    ]
    if r.critic is not None:
        lines.append(_model_line(f"critic ({r.critic_mode})", r.critic))
    lines += [
        f"  rank 0 of {s['world_size']} (the largest share): {plural(s['sampled'], 'sampled program')} "
        f"and {plural(s['greedy'], 'greedy decode')} of {s['prompt_tokens']} + {s['sampled_tokens']} "
        f"tokens, {plural(s['ground_truth'], 'ground-truth row')} of {s['prompt_tokens']} + "
        f"{s['program_tokens']} tokens",
        f"  precision {r.precision}, activation checkpointing {checkpointing}, "
        f"micro-batches of <= {r.micro_batch_tokens or 'all'} padded tokens; forward passes: "
        f"RL {r.passes['rl']}, CE {r.passes['ce']}, critic values {r.passes['critic_values']} (no grad), "
        f"critic step {r.passes['critic']}",
        f"  one whole Learner.train_on: {r.update_s:.1f} s wall (building the learner and batch: "
        f"{r.build_s:.1f} s); " + ", ".join(f"{k} {v:.4g}" for k, v in r.losses.items()),
    ]
    return lines


def _memory_lines(r: MemoryResult) -> list[str]:
    on_gpu = r.device.startswith("cuda")
    if on_gpu:
        title = "CUDA allocator's max_memory_allocated (not counting the CUDA context)"
    else:
        reset = "" if r.peak_reset else "; high-water mark not resettable here: it covers the whole process"
        title = f"peak resident set of the rank's process; host allocator: {r.malloc}{reset}"
    critic = r.critic.parameter_bytes if r.critic is not None else 0
    other = r.before_update_bytes - r.baseline_bytes - r.parameter_bytes
    rows = [
        (f"parameters (policy {r.policy.parameter_bytes / MIB:.0f} + critic {critic / MIB:.0f} MiB)",
         r.parameter_bytes),
        ("other in use before the update (tokenizers, batch, allocator)", other),
        ("gradients (the largest model's: each frees its own after its step)", r.gradient_bytes),
        ("optimizer states (AdamW)", r.optimizer_bytes),
        ("the rest of the peak: activations, workspace (at least this much)", r.activation_bytes),
        ("peak of the update", r.update_peak_bytes),
        ("peak before it (building the models and the batch)", r.build_peak_bytes),
    ]  # fmt: skip
    if not on_gpu:
        rows.insert(0, ("libraries and interpreter (after the imports)", r.baseline_bytes))
    unit = GIB if r.peak_bytes_per_rank >= 4 * GIB else MIB  # small runs in MiB
    lines = [f"memory ({title}):"]
    lines += [f"  {label:<66}{_amount(value, unit)}" for label, value in rows]
    if on_gpu:
        reserved = r.device_reserved_bytes or 0
        lines.append(f"  {'peak reserved by the CUDA allocator':<66}{_amount(reserved, unit)}")
        lines.append(f"  {'host: peak resident set of the process':<66}{_amount(r.host_peak_bytes, unit)}")
    lines += _phase_lines(r, unit)
    if r.shape["world_size"] > 1:
        lines.append(
            "  not measured (one process stands for the rank): the transient buckets in which ranks "
            "sum gradients (about 64 MiB, or the largest parameter) and the collectives' own buffers"
        )
    peak = r.peak_bytes_per_rank
    lines.append(f"  {'=> per learner rank':<66}{_amount(peak, unit)}  ({peak / 1e9:.3g} GB)")
    return lines


def _phase_lines(r: MemoryResult, unit: int) -> list[str]:
    """Where the peak falls: each phase's memory in use at its start, its peak and its wall time."""
    lines = ["  by phase of the update: in use at its start -> its peak (wall time)"]
    for phase in r.phases:
        mark = "  <- the peak" if phase.peak_bytes == r.update_peak_bytes else ""
        lines.append(
            f"    {phase.name:<36}{_amount(phase.start_bytes, unit)} ->{_amount(phase.peak_bytes, unit)}"
            f"  ({phase.seconds:.1f} s){mark}"
        )
    return lines


def format_report(result: MemoryResult, config_name: str) -> str:
    """The report; its last line is ``peak_bytes_per_rank=N``."""
    lines = _setup_lines(result, config_name) + _memory_lines(result)
    lines.append(f"{PEAK_LINE_PREFIX}{result.peak_bytes_per_rank}")
    return "\n".join(lines)
