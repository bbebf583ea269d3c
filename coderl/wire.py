"""The wire contract: every message that crosses Redis is one of these pydantic models, with a
schema version and a sample id. The rollout (``SampledProgram``) carries the policy version that
produced it; execution messages do not, as no executor uses it: the learner joins each result with
its rollout by sample id."""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from .execution import ExecutionResult
from .problem import Problem

SCHEMA_VERSION = 2
"""2: execution messages name the problem ``task_id``, carry no policy version and no reward;
rollouts carry their ``group_id``"""
MAX_PROGRAM_CHARS = 1 << 20


class WireMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = SCHEMA_VERSION

    @field_validator("schema_version")
    @classmethod
    def _same_version(cls, version: int) -> int:
        if version != SCHEMA_VERSION:
            raise ValueError(
                f"schema version {version} is not {SCHEMA_VERSION}: "
                "producer and worker must run the same release"
            )
        return version

    def to_wire(self) -> str:
        return self.model_dump_json()


class ExecutionRequest(WireMessage):
    """Run one program against one stored problem's tests."""

    sample_id: str = Field(min_length=1, max_length=256)
    task_id: str = Field(min_length=1, max_length=256)
    """the stored problem whose tests run (coderl.problem.Problem.task_id)"""
    program: str = Field(max_length=MAX_PROGRAM_CHARS)
    which: Literal["hidden", "example", "all"] = "hidden"
    results_stream: str | None = Field(default=None, max_length=256)
    """where the result goes; None means the shared results stream"""
    created_at: float = Field(default_factory=time.time)


class ExecutionReport(WireMessage):
    """A request's result; exactly one per sample id is published, whatever the retries."""

    sample_id: str
    task_id: str
    result: ExecutionResult
    worker_id: str
    deliveries: int = 1
    """how many times the request was delivered to a worker"""
    queued_s: float = 0.0
    """from the request's creation to the start of its execution"""
    exec_s: float = 0.0
    finished_at: float = Field(default_factory=time.time)


class DeadLetter(WireMessage):
    """A request no worker could process, with the reason."""

    sample_id: str | None = None
    reason: str
    payload: str = ""
    """the raw message, truncated"""
    deliveries: int = 1
    worker_id: str
    at: float = Field(default_factory=time.time)


class StoredProblem(WireMessage):
    """A problem stored once in Redis under its id; workers cache it."""

    problem: Problem


class SampledProgram(WireMessage):
    """A program sampled by the policy, with the exact token ids and log-probs the learner trains on.

    The sampler publishes only ``program`` to the executors; the tokens stay with the learner so the
    policy gradient is taken on what was sampled, not on a re-tokenisation of the decoded text.
    """

    sample_id: str = Field(min_length=1, max_length=256)
    task_id: str
    group_id: str = Field(min_length=1, max_length=256)
    """the sampling group: one problem's samples of one round, and that round's greedy decode
    (their baseline is shared; the learner trains on whole groups)"""
    policy_version: int = Field(ge=0)
    program: str = Field(max_length=MAX_PROGRAM_CHARS)
    """the program extracted from the decoded tokens (what the executor runs)"""
    prompt_token_ids: list[int]
    token_ids: list[int]
    """the sampled response, EOS included when ``finished``"""
    logprobs: list[float]
    """log p of each sampled token under policy ``policy_version`` at temperature 1"""
    sampling_logprobs: list[float]
    """log-probability under the temperature/top-p distribution it was drawn from"""
    finished: bool
    """False when the token budget ran out before EOS"""
    is_greedy: bool = False

    @field_validator("logprobs", "sampling_logprobs")
    @classmethod
    def _one_per_token(cls, values: list[float], info: ValidationInfo) -> list[float]:
        if len(values) != len(info.data.get("token_ids", values)):
            raise ValueError(f"{info.field_name} needs one value per token id")
        return values
