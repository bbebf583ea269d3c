"""``coderl train`` / ``python -m driver``: the whole run's configuration, defaults defined once.

The defaults are the embedded run: a tiny model on the built-in task suite, one sampler, executors
started by the driver, a Redis server started for the run; it finishes in minutes on 2 CPU cores.
``deploy/configs/`` holds presets (the tiny run, CodeT5-large-ntp-py on APPS).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from actors.config import PolicyConfig, SamplerConfig, SyncConfig
from coderl.redis_client import DEFAULT_OUTAGE_S
from executor.config import ExecutorConfig
from executor.service_config import WorkerSettings
from learner.config import CriticTrainingConfig, LearnerConfig, OptimizerConfig, PhasesConfig, SFTConfig
from problems.suite import SuiteConfig

__all__ = ["EvalConfig", "ExecutionConfig", "ProblemsConfig", "TrainConfig"]


class ProblemsConfig(BaseModel):
    """Where problems come from: the built-in suite, or problem files in any supported format."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    source: Literal["suite", "files"] = "suite"
    suite: SuiteConfig = Field(default_factory=SuiteConfig)
    sft_path: str | None = None
    """files: problems whose solutions the warm start trains on (e.g. APPS train)"""
    rl_path: str | None = None
    """files: problems the samplers draw from (default: sft_path)"""
    held_out_path: str | None = None
    """files: problems for the pass@1 evaluation (e.g. APPS test)"""
    limit: int | None = Field(default=None, ge=1)
    """use at most this many problems of each file (quick trials)"""

    @model_validator(mode="after")
    def _files_given(self) -> ProblemsConfig:
        if self.source == "files" and not (self.sft_path or self.rl_path):
            raise ValueError("problems.source='files' needs problems.sft_path or problems.rl_path")
        return self


class ExecutionConfig(BaseModel):
    """Where programs run."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    redis_url: str | None = None
    """None: start a redis-server for the run; a URL: use it (with external_workers, the compose
    stack's Redis)"""
    external_workers: bool = False
    """True: executor workers already serve redis_url (docker compose up); False: the driver starts
    executor_actors workers itself"""
    executor_actors: int = Field(default=1, ge=0)
    """executor workers the driver starts (each with worker.executor.workers sandboxes)"""
    worker: WorkerSettings = Field(default_factory=lambda: WorkerSettings(executor=ExecutorConfig(workers=2)))
    """the settings of each worker the driver starts (unused with external_workers: those have
    their own)"""
    prefix: str = "coderl"
    """namespace of the run's streams and keys in Redis (the workers' prefix too)"""
    redis_outage_s: float = Field(default=DEFAULT_OUTAGE_S, gt=0)
    """every role retries an unreachable Redis this long (with backoff), then the run stops with a
    one-line error saying how to resume; the run's own redis-server is restarted at once"""
    no_executor_grace_s: float = Field(default=60.0, gt=0)
    """stop the run (one line, exit 3) when no executor worker has heartbeated for this long while
    requests wait (driver/health.py); a worker that stops is reported at once, with what is left"""


class EvalConfig(BaseModel):
    """Held-out pass@1 (greedy decoding) before training, every ``every`` RL steps and at the end."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    problems: int | None = Field(default=None, ge=1)
    """evaluate on at most this many held-out problems (None: all)"""
    every: int = Field(default=0, ge=0)
    """also evaluate every this many RL steps (0: only before and after)"""
    max_new_tokens: int = Field(default=160, ge=1)


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    run_dir: Path = Path("runs/coderl")
    """checkpoints, metrics.jsonl, TensorBoard events, learning curves and the resolved config"""
    seed: int = 0
    mode: Literal["decoupled", "sync"] = "decoupled"
    """decoupled: sampling, execution and learning overlap; sync: generate -> execute -> learn in turn"""
    use_ray: bool = True
    """False runs every role in this process (tests, debugging)"""
    problems: ProblemsConfig = Field(default_factory=ProblemsConfig)
    policy: PolicyConfig = Field(
        default_factory=lambda: PolicyConfig(max_prompt_tokens=400, max_program_tokens=160)
    )
    critic: CriticTrainingConfig = Field(default_factory=CriticTrainingConfig)
    phases: PhasesConfig = Field(default_factory=PhasesConfig)
    sft: SFTConfig = Field(
        default_factory=lambda: SFTConfig(batch_size=16, optimizer=OptimizerConfig(lr=2e-3))
    )
    """the warm start's batches and optimizer (its length is phases.sft_steps)"""
    sampler: SamplerConfig = Field(default_factory=SamplerConfig)
    learner: LearnerConfig = Field(default_factory=LearnerConfig)
    sync: SyncConfig = Field(default_factory=SyncConfig)
    """how the learner's weights reach the samplers"""
    execution: ExecutionConfig = Field(default_factory=ExecutionConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    checkpoint_every: int = Field(default=10, ge=1)
    """critic and RL steps between checkpoints"""
    sft_checkpoint_every: int = Field(default=500, ge=1)
    """warm-start steps between checkpoints (a killed warm start resumes from the last one);
    warm-start steps are much shorter than RL steps"""
    checkpoints_kept: int = Field(default=2, ge=1)
    """rolling checkpoints kept (step-N); the end of each phase is kept besides, as
    checkpoints/after-sft, after-critic and after-rl"""

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if not self.execution.external_workers and self.execution.executor_actors == 0:
            raise ValueError(
                "execution.executor_actors is 0 without external_workers: nothing would run programs"
            )
        if self.execution.external_workers and self.execution.redis_url is None:
            raise ValueError("execution.external_workers needs execution.redis_url (the workers' Redis)")
        if self.critic.mode == "off" and self.phases.critic_steps > 0:
            raise ValueError(
                f"critic.mode='off' trains no critic, but phases.critic_steps is {self.phases.critic_steps}: "
                "set phases.critic_steps=0 (or choose critic.mode 'online' or 'frozen')"
            )
        self._check_progress()
        self._check_data_parallel()
        if self.sync.method == "collective" and not self.use_ray:
            raise ValueError(
                "sync.method='collective' needs use_ray = true (the samplers and the learner are Ray "
                "actors in a process group); the in-process run hands weights over directly: set "
                "sync.method='object_store'"
            )
        if self.learner.batch_size < self.sampler.sampling.n:
            raise ValueError(
                f"learner.batch_size ({self.learner.batch_size}) is below sampler.sampling.n "
                f"({self.sampler.sampling.n}): a batch holds whole groups"
            )
        return self

    def _check_progress(self) -> None:
        """Refuse configurations under which the update loop cannot make progress."""
        learner, sampler = self.learner, self.sampler
        per_round = sampler.problems_per_round * sampler.sampling.n
        decoupled = self.mode == "decoupled"
        cap = max(1, learner.max_policy_lag) * learner.batch_size if decoupled else learner.batch_size
        if learner.stale == "drop" and per_round > cap:
            limit = (
                "max(1, learner.max_policy_lag) x learner.batch_size" if decoupled else "learner.batch_size"
            )
            raise ValueError(
                f"sampler.problems_per_round x sampler.sampling.n = {per_round} programs per round, but "
                f"at most {cap} ({limit}) may wait for the learner: a round's later groups would go "
                "stale and be dropped while no new round is admitted, and the run stalls; lower "
                f"sampler.problems_per_round to {max(1, cap // sampler.sampling.n)} or less, raise "
                "learner.batch_size or learner.max_policy_lag, or set learner.stale='correct'"
            )
        longest = self.policy.max_prompt_tokens + max(
            sampler.sampling.max_new_tokens, self.policy.max_program_tokens
        )
        if 0 < learner.micro_batch_tokens < longest:
            raise ValueError(
                f"learner.micro_batch_tokens ({learner.micro_batch_tokens}) cannot hold one sequence of "
                f"{longest} tokens (policy.max_prompt_tokens + the longest response): raise it to "
                f"{longest} or more, or 0 for no micro-batches"
            )

    def _check_data_parallel(self) -> None:
        learner = self.learner
        if learner.world_size == 1:
            return
        if not self.use_ray:
            raise ValueError(
                f"learner.world_size = {learner.world_size} needs use_ray = true (each rank is a Ray "
                "actor); set learner.world_size = 1 to train in this process"
            )
        if learner.world_size > learner.batch_size:
            raise ValueError(
                f"learner.world_size ({learner.world_size}) exceeds learner.batch_size "
                f"({learner.batch_size}): some ranks would get no rows; lower learner.world_size"
            )
        if learner.num_gpus != int(learner.num_gpus):
            raise ValueError(
                f"learner.num_gpus = {learner.num_gpus:g} with learner.world_size > 1: NCCL needs a "
                "GPU of its own for every rank; set learner.num_gpus to 1 (or 0 to train on CPUs)"
            )

    @property
    def greedy_baseline(self) -> bool:
        return self.learner.loss.baseline == "greedy"
