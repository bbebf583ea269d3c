"""Training and evaluating the critic on executed programs.

A ``CriticExample`` is a (prompt, program) token pair with the program's observed outcome class;
the learner builds them from sampled programs and their execution results, and may add the
ground-truth programs *after* verifying them (CodeRL labels every APPS solution as passing without
running it, although many fail their own tests).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch

from models.sequences import TokenBatch, pad_left, pad_right, take_rows

from .evaluation import CriticEvaluation, evaluate_predictions
from .loss import critic_loss, token_values
from .model import Critic

__all__ = [
    "CriticExample",
    "critic_batch",
    "critic_step",
    "critic_token_values",
    "evaluate_critic",
    "predict_classes",
]


@dataclass(frozen=True)
class CriticExample:
    prompt_ids: list[int]
    program_ids: list[int]
    label: int
    """the outcome class (critic.model.critic_label)"""


def critic_batch(critic: Critic, examples: Sequence[CriticExample]) -> tuple[TokenBatch, torch.Tensor]:
    """The examples as a token batch (on the critic's device) and their labels, shape (b,)."""
    pad = int(critic.tokenizer.pad_token_id)
    prompt_ids, prompt_mask = pad_left([e.prompt_ids for e in examples], pad)
    program_ids, program_mask = pad_right([e.program_ids for e in examples], pad)
    labels = torch.tensor([e.label for e in examples], dtype=torch.long)
    batch = TokenBatch(prompt_ids, prompt_mask, program_ids, program_mask).to(critic.device)
    return batch, labels.to(critic.device)


def critic_step(
    critic: Critic,
    optimizer: torch.optim.Optimizer,
    batch: TokenBatch,
    labels: torch.Tensor,
    max_grad_norm: float,
    micro_batches: Sequence[slice] | None = None,
    autocast: Callable[[], AbstractContextManager[object]] = nullcontext,
    sum_gradients: Callable[[Iterable[torch.nn.Parameter]], None] | None = None,
) -> dict[str, float]:
    """One optimizer step of the critic's cross-entropy on ``batch`` (``critic_batch`` builds one
    from examples) with outcome ``labels``, shape (b,); returns its loss and batch accuracy.

    ``micro_batches``: row ranges whose gradients accumulate, each loss weighted by its rows' share
    b_k / b (the loss is a mean over programs): the same step as one pass. ``autocast``: the
    context of the forward passes (e.g. bf16). ``sum_gradients``: with data parallelism, sums
    the ranks' gradients before clipping (each rank given its own ``micro_batches``); the returned
    loss and accuracy are then this rank's parts, which add up over the ranks.
    """
    critic.train()
    batch, labels = batch.to(critic.device), labels.to(critic.device)
    total = labels.shape[0]
    optimizer.zero_grad(set_to_none=True)
    loss, correct = 0.0, 0
    for selected in [slice(0, total)] if micro_batches is None else micro_batches:
        with autocast():
            output = critic(take_rows(batch, selected))
        logits = output.program_logits.float()
        part = critic_loss(logits, labels[selected]) * (logits.shape[0] / total)
        part.backward()
        loss += float(part.detach())
        correct += int((logits.argmax(dim=-1) == labels[selected]).sum())
    if sum_gradients is not None:
        sum_gradients(critic.parameters())
    torch.nn.utils.clip_grad_norm_(critic.parameters(), max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)  # free the gradients' memory until the next step
    return {"loss/critic": loss, "critic/batch_accuracy": correct / max(1, total)}


@torch.no_grad()
def predict_classes(critic: Critic, examples: Sequence[CriticExample], batch_size: int = 32) -> list[int]:
    was_training = critic.training
    critic.eval()
    predictions: list[int] = []
    try:
        for start in range(0, len(examples), batch_size):
            batch, _ = critic_batch(critic, examples[start : start + batch_size])
            predictions += critic(batch).program_logits.argmax(dim=-1).tolist()
    finally:
        critic.train(was_training)
    return predictions


def evaluate_critic(
    critic: Critic, examples: Sequence[CriticExample], batch_size: int = 32
) -> CriticEvaluation:
    """Accuracy and confusion matrix on ``examples``, beside the majority-class baseline."""
    predictions = predict_classes(critic, examples, batch_size)
    return evaluate_predictions([e.label for e in examples], predictions, critic.config.num_classes)


@torch.no_grad()
def critic_token_values(critic: Critic, batch: TokenBatch, outcome_classes: torch.Tensor) -> torch.Tensor:
    """q_hat(w_j) = softmax(v_j)[u] for the actor's loss, u each program's observed class.

    ``batch`` holds the actor's sampled ids (same tokenizer). Shape: (b, t), 0 on padding.
    """
    was_training = critic.training
    critic.eval()
    try:
        output = critic(batch.to(critic.device))
    finally:
        critic.train(was_training)
    mask = batch.response_mask.to(critic.device)
    return token_values(output.token_logits, outcome_classes.to(critic.device), mask)
