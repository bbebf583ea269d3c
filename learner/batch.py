"""The learner's one sample type and one batch type.

A ``ScoredSample`` is a sampled program joined with its verdict, scored by the learner under the
run's reward settings (coderl.outcomes); a ``TrainBatch`` is one update's data: the sampled
programs W^s (actor and critic data) then the greedy decodes W^b (critic data only), tokenised and
padded once for the actor's loss, the critic's token values and the critic's own step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from coderl.outcomes import OutcomeClass, RewardConfig, Verdict, outcome_class
from coderl.wire import SampledProgram
from models.sequences import TokenBatch, pad_left, pad_right, take_rows

__all__ = ["ScoredSample", "TrainBatch", "score"]


@dataclass(frozen=True)
class ScoredSample:
    """A sampled program with its verdict, CodeRL class and reward."""

    sample: SampledProgram
    verdict: Verdict
    outcome_class: OutcomeClass
    reward: float
    baseline_reward: float | None = None
    """reward of the greedy decode of the same group (the ``greedy`` baseline); None without one"""


def score(sample: SampledProgram, verdict: Verdict, rewards: RewardConfig) -> ScoredSample:
    """The one place a verdict becomes a class and a reward: ``rewards.for_class(outcome_class(v))``.

    Raises coderl.outcomes.InfrastructureFault for SANDBOX_ERROR (never scored).
    """
    cls = outcome_class(verdict)
    return ScoredSample(sample, Verdict(verdict), cls, rewards.for_class(cls))


@dataclass
class TrainBatch:
    sampled: list[ScoredSample]
    """W^s with rewards and baselines: what the actor trains on (and the critic learns from)"""
    greedy: list[ScoredSample] = field(default_factory=list)
    """W^b: critic data only (the actor never trains on the greedy decode)"""
    max_lag: int = 0
    """the largest policy lag of a group in the batch, against the learner's version when taken"""
    _tokens: TokenBatch | None = field(default=None, repr=False)

    @property
    def everything(self) -> list[ScoredSample]:
        """W^s then W^b, in the rows order of ``tokens``."""
        return [*self.sampled, *self.greedy]

    def tokens(self, pad_id: int, device: torch.device) -> TokenBatch:
        """Every row (W^s then W^b) padded once: prompts left, responses right. Cached."""
        if self._tokens is None:
            rows = self.everything
            prompt_ids, prompt_mask = pad_left([s.sample.prompt_token_ids for s in rows], pad_id)
            response_ids, response_mask = pad_right([s.sample.token_ids for s in rows], pad_id)
            self._tokens = TokenBatch(prompt_ids, prompt_mask, response_ids, response_mask).to(device)
        return self._tokens

    def sampled_tokens(self, pad_id: int, device: torch.device) -> TokenBatch:
        """The first ``len(sampled)`` rows of ``tokens``: W^s only."""
        return take_rows(self.tokens(pad_id, device), slice(0, len(self.sampled)))

    def rewards(self) -> torch.Tensor:
        return torch.tensor([s.reward for s in self.sampled])

    def classes(self, rows: Sequence[ScoredSample] | None = None) -> torch.Tensor:
        return torch.tensor([int(s.outcome_class) for s in (self.sampled if rows is None else rows)])
