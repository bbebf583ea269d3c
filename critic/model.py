"""CodeRL's critic: the encoder reads the problem, the decoder reads the program, and a per-token
head predicts the program's test outcome; max-pooling over the program's real tokens gives the
program-level prediction (critic/loss.py).

The backbone is any model ``models.loading`` loads (CodeRL uses CodeT5-base; a causal LM reads
``prompt + program`` instead). Prompt and program token ids come from the policy's tokenizer, so
critic and actor must share one: ``check_tokenizer`` says so when they do not.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from coderl.outcomes import OutcomeClass, Verdict, outcome_class
from models.loading import load_model
from models.sequences import TokenBatch, response_hidden_states

from .config import CriticConfig
from .loss import masked_max_pool

__all__ = ["CRITIC_FILE", "Critic", "CriticOutput", "critic_label"]

CRITIC_FILE = "coderl_critic.json"
HEAD_FILE = "critic_head.pt"


class CriticOutput(NamedTuple):
    token_logits: torch.Tensor
    """v_j, shape (b, t, c); padding rows are meaningless and must be masked"""
    program_logits: torch.Tensor
    """masked max-pool of token_logits over the program, shape (b, c)"""


def critic_label(verdict: Verdict, classes: str = "outcome") -> int:
    """The class a critic learns for a verdict: CodeRL's four classes, or passed (1) vs not (0)."""
    outcome = outcome_class(verdict)
    if classes == "binary":
        return int(outcome == OutcomeClass.PASSED)
    return int(outcome)


def critic_labels(outcome_classes: torch.Tensor, classes: str = "outcome") -> torch.Tensor:
    """``critic_label`` of a tensor of CodeRL outcome classes (the binary critic's 1 is PASSED)."""
    if classes == "binary":
        return (outcome_classes == int(OutcomeClass.PASSED)).long()
    return outcome_classes


class Critic(nn.Module):
    def __init__(
        self, backbone: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, config: CriticConfig
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.config = config
        width = int(
            backbone.config.d_model if backbone.config.is_encoder_decoder else backbone.config.hidden_size
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.head = nn.Sequential(
                nn.Linear(width, config.head_hidden),
                nn.ReLU(),
                nn.Linear(config.head_hidden, config.num_classes),
            )
        self.head.to(next(backbone.parameters()).device)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, batch: TokenBatch) -> CriticOutput:
        hidden = response_hidden_states(self.backbone, batch)
        token_logits = self.head(hidden.to(self.head[0].weight.dtype))
        return CriticOutput(token_logits, masked_max_pool(token_logits, batch.response_mask))

    def check_tokenizer(self, tokenizer: PreTrainedTokenizerBase) -> None:
        """Raise unless ``tokenizer`` (the policy's) produces ids this critic reads the same way."""
        mine, theirs = self.tokenizer, tokenizer
        if (
            type(mine) is not type(theirs)
            or len(mine) != len(theirs)
            or mine.get_vocab() != theirs.get_vocab()
        ):
            raise ValueError(
                f"critic tokenizer {type(mine).__name__} ({len(mine)} tokens) differs from the policy's "
                f"{type(theirs).__name__} ({len(theirs)} tokens): use a critic backbone of the same family"
            )

    @classmethod
    def load(cls, config: CriticConfig) -> Critic:
        """A fresh head on a backbone, or a whole critic saved by ``save`` (its head included)."""
        saved = Path(config.model) / CRITIC_FILE
        saved_config = config
        if saved.is_file():
            stored = json.loads(saved.read_text())
            saved_config = config.model_copy(
                update={"classes": stored["classes"], "head_hidden": stored["head_hidden"]}
            )
        loaded = load_model(config.model, config.device, seed=config.seed)
        critic = cls(loaded.model, loaded.tokenizer, saved_config)
        if saved.is_file():
            state = torch.load(Path(config.model) / HEAD_FILE, map_location=critic.device, weights_only=True)
            critic.head.load_state_dict(state)
        return critic

    def save(self, directory: str | Path) -> Path:
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        self.backbone.save_pretrained(out)
        self.tokenizer.save_pretrained(out)
        torch.save(self.head.state_dict(), out / HEAD_FILE)
        stored = {"classes": self.config.classes, "head_hidden": self.config.head_hidden}
        (out / CRITIC_FILE).write_text(json.dumps(stored, indent=2) + "\n")
        return out
