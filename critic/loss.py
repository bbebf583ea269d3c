"""The critic's pure functions: masked max-pooling, its loss, and the token values the actor uses.

Shapes: b programs, t program tokens, c outcome classes (4, or 2 for the binary critic).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["critic_loss", "masked_max_pool", "pass_probabilities", "token_values"]


def masked_max_pool(token_logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Program logits: the per-class maximum over the program's real tokens.

    ``logits[i, k] = max_{j : mask[i, j] = 1} token_logits[i, j, k]``. Padding never wins, unlike
    the official critic, which pools over all 512 positions padding included.
    Shape: (b, t, c), (b, t) -> (b, c). Every row needs at least one real token.
    """
    if not bool(mask.any(dim=1).all()):
        raise ValueError("masked_max_pool: a program has no real tokens to pool over")
    hidden = token_logits.masked_fill(~mask.bool()[..., None], float("-inf"))
    return hidden.max(dim=1).values


def critic_loss(program_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the pooled prediction against each program's observed outcome class.

    ``L = -(1/b) * sum_i log softmax(logits_i)[label_i]``. Shape: (b, c), (b,) -> ().
    """
    return F.cross_entropy(program_logits, labels)


def token_values(
    token_logits: torch.Tensor, outcome_classes: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """CodeRL's token values: q_hat(w_j) = softmax(v_j)[u], u the program's *actual* outcome class.

    The critic's confidence, at token j, in the outcome the program really had: it weights each
    token's log-probability in the actor's policy gradient. 0 on padding.
    Shape: (b, t, c), (b,), (b, t) -> (b, t).
    """
    probabilities = token_logits.float().softmax(dim=-1)
    index = outcome_classes[:, None, None].expand(-1, token_logits.shape[1], 1)
    return probabilities.gather(-1, index).squeeze(-1) * mask


def pass_probabilities(token_logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """p(passed | w_1..w_j) per token, for critical sampling; the pass class is the last one.

    Works for both heads: the outcome critic's classes end with PASSED (3), the binary critic's
    with pass (1). Shape: (b, t, c), (b, t) -> (b, t); 0 on padding.
    """
    return token_logits.float().softmax(dim=-1)[..., -1] * mask
