"""critic/loss.py and critic/evaluation.py against values worked out by hand."""

from __future__ import annotations

from math import log

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from critic.evaluation import confusion_matrix, evaluate_predictions
from critic.loss import critic_loss, masked_max_pool, pass_probabilities, token_values

# ---- masked_max_pool ------------------------------------------------------------------------------------


def test_masked_max_pool_takes_the_max_over_real_tokens() -> None:
    token_logits = torch.tensor(
        [
            # row 0: tokens 0, 1 real; the padding token holds huge values
            [[1.0, 5.0], [3.0, 2.0], [1e9, 1e9]],
            # row 1: tokens 0, 2 real, all negative: padding filled with 0 instead of -inf would win
            [[-2.0, -7.0], [1e30, 1e30], [-4.0, -1.0]],
        ]
    )
    mask = torch.tensor([[1, 1, 0], [1, 0, 1]])
    # row 0: max(1, 3) = 3, max(5, 2) = 5; row 1: max(-2, -4) = -2, max(-7, -1) = -1
    assert_close(masked_max_pool(token_logits, mask), torch.tensor([[3.0, 5.0], [-2.0, -1.0]]))


def test_masked_max_pool_accepts_a_bool_mask() -> None:
    token_logits = torch.tensor([[[0.0], [-1.0], [7.0]]])
    mask = torch.tensor([[False, True, False]])
    assert_close(masked_max_pool(token_logits, mask), torch.tensor([[-1.0]]))


def test_masked_max_pool_gradient_reaches_only_the_winning_tokens() -> None:
    token_logits = torch.tensor([[[1.0, 5.0], [3.0, 2.0], [9.0, 9.0]]], requires_grad=True)
    masked_max_pool(token_logits, torch.tensor([[1, 1, 0]])).sum().backward()
    # class 0 is won by token 1, class 1 by token 0; the padding token gets nothing
    assert_close(token_logits.grad, torch.tensor([[[0.0, 1.0], [1.0, 0.0], [0.0, 0.0]]]))


def test_masked_max_pool_rejects_a_program_without_real_tokens() -> None:
    token_logits = torch.zeros(2, 2, 3)
    with pytest.raises(ValueError, match="no real tokens"):
        masked_max_pool(token_logits, torch.tensor([[1, 0], [0, 0]]))


# ---- critic_loss ----------------------------------------------------------------------------------------


def test_critic_loss_is_the_mean_cross_entropy() -> None:
    logits = torch.tensor([[0.0, 0.0, log(2)], [log(3), 0.0, 0.0]], dtype=torch.float64)
    labels = torch.tensor([2, 1])
    # row 0: softmax = (1, 1, 2) / 4, label 2 -> -ln(1/2) = ln 2
    # row 1: softmax = (3, 1, 1) / 5, label 1 -> -ln(1/5) = ln 5
    # mean: (ln 2 + ln 5) / 2 = ln(10) / 2
    assert critic_loss(logits, labels).item() == pytest.approx(log(10) / 2, rel=1e-12)


def test_critic_loss_gradient_is_softmax_minus_onehot_over_b() -> None:
    logits = torch.tensor([[0.0, 0.0, log(2)], [log(3), 0.0, 0.0]], dtype=torch.float64, requires_grad=True)
    critic_loss(logits, torch.tensor([2, 1])).backward()
    # (p - onehot) / b, b = 2
    expected = torch.tensor(
        [[0.25 / 2, 0.25 / 2, (0.5 - 1) / 2], [0.6 / 2, (0.2 - 1) / 2, 0.2 / 2]], dtype=torch.float64
    )
    assert_close(logits.grad, expected)


# ---- token_values / pass_probabilities ------------------------------------------------------------------

# b = 2 programs, t = 3 tokens, c = 4 classes; exp(logits) are small integers:
#   row 0: (1, 1, 2, 4)/8, (5, 1, 1, 3)/10, padding (huge logits)
#   row 1: (3, 3, 3, 3)/12, (7, 1, 1, 1)/10, (1, 2, 1, 5)/9
TOKEN_LOGITS = torch.tensor(
    [
        [[0.0, 0.0, log(2), log(4)], [log(5), 0.0, 0.0, log(3)], [50.0, 0.0, 80.0, 90.0]],
        [[log(3)] * 4, [log(7), 0.0, 0.0, 0.0], [0.0, log(2), 0.0, log(5)]],
    ]
)
TOKEN_MASK = torch.tensor([[1, 1, 0], [1, 1, 1]])


def test_token_values_pick_the_actual_outcome_class() -> None:
    outcomes = torch.tensor([2, 0])
    # row 0, class 2: 2/8, 1/10, padding 0; row 1, class 0: 3/12, 7/10, 1/9
    expected = torch.tensor([[1 / 4, 1 / 10, 0.0], [1 / 4, 7 / 10, 1 / 9]])
    assert_close(token_values(TOKEN_LOGITS, outcomes, TOKEN_MASK), expected)


def test_token_values_binary_critic() -> None:
    # softmax(0, ln 3) = (1/4, 3/4); softmax(ln 3, 0) = (3/4, 1/4)
    logits = torch.tensor([[[0.0, log(3)], [log(3), 0.0]], [[0.0, log(3)], [log(3), 0.0]]])
    outcomes = torch.tensor([1, 0])
    mask = torch.tensor([[1, 1], [1, 0]])
    expected = torch.tensor([[3 / 4, 1 / 4], [1 / 4, 0.0]])
    assert_close(token_values(logits, outcomes, mask), expected)


def test_token_values_are_float32_for_half_precision_logits() -> None:
    logits = torch.tensor([[[0.0, log(3)]]], dtype=torch.bfloat16)
    out = token_values(logits, torch.tensor([1]), torch.tensor([[1]]))
    assert out.dtype == torch.float32
    # ln 3 rounded to bfloat16 is 1.09375: softmax = 1 / (1 + e^-1.09375) ~ 0.7491
    assert out.item() == pytest.approx(0.75, abs=2e-3)


def test_pass_probabilities_are_the_last_class() -> None:
    # last class: row 0: 4/8, 3/10, padding 0; row 1: 3/12, 1/10, 5/9
    expected = torch.tensor([[1 / 2, 3 / 10, 0.0], [1 / 4, 1 / 10, 5 / 9]])
    assert_close(pass_probabilities(TOKEN_LOGITS, TOKEN_MASK), expected)


def test_pass_probabilities_binary_critic() -> None:
    logits = torch.tensor([[[0.0, log(3)], [log(3), 0.0], [0.0, 0.0]]])
    # (1/4, 3/4) -> 3/4; (3/4, 1/4) -> 1/4; equal logits -> 1/2
    expected = torch.tensor([[3 / 4, 1 / 4, 1 / 2]])
    assert_close(pass_probabilities(logits, torch.ones(1, 3)), expected)


# ---- confusion_matrix / evaluate_predictions ------------------------------------------------------------

# (observed, predicted): (0,0) (0,1) (1,1) (2,2) (2,0) (2,2) (0,0) (2,3); class 3 is never observed
LABELS = [0, 0, 1, 2, 2, 2, 0, 2]
PREDICTIONS = [0, 1, 1, 2, 0, 2, 0, 3]
CONFUSION = [
    [2, 1, 0, 0],
    [0, 1, 0, 0],
    [1, 0, 2, 1],
    [0, 0, 0, 0],
]


def test_confusion_matrix_counts_repeated_pairs() -> None:
    matrix = confusion_matrix(LABELS, PREDICTIONS, 4)
    assert matrix.shape == (4, 4)
    assert np.issubdtype(matrix.dtype, np.integer)
    assert matrix.tolist() == CONFUSION


def test_confusion_matrix_binary() -> None:
    # (1,1) x3, (0,1) x1, (1,0) x2
    matrix = confusion_matrix([1, 1, 0, 1, 1, 1], [1, 1, 1, 0, 0, 1], 2)
    assert matrix.tolist() == [[0, 1], [2, 3]]


def test_evaluate_predictions() -> None:
    result = evaluate_predictions(LABELS, PREDICTIONS, 4)
    assert result.count == 8
    assert result.accuracy == pytest.approx(5 / 8)  # trace = 2 + 1 + 2 + 0
    # observed counts (3, 1, 4, 0): class 2 is the majority, always predicting it is right 4/8
    assert result.majority_class == 2
    assert result.majority_accuracy == pytest.approx(0.5)
    assert result.confusion == CONFUSION
    # recall = diagonal / row sum: 2/3, 1/1, 2/4, and None for class 3 (never observed)
    assert result.per_class_recall[:3] == pytest.approx([2 / 3, 1.0, 0.5])
    assert result.per_class_recall[3] is None
    assert len(result.per_class_recall) == 4


def test_evaluate_predictions_perfect_and_all_wrong() -> None:
    perfect = evaluate_predictions([0, 1, 1], [0, 1, 1], 2)
    assert perfect.accuracy == 1.0
    assert perfect.majority_class == 1
    assert perfect.majority_accuracy == pytest.approx(2 / 3)
    assert perfect.per_class_recall == [1.0, 1.0]
    wrong = evaluate_predictions([0, 1, 1], [1, 0, 0], 2)
    assert wrong.accuracy == 0.0
    assert wrong.per_class_recall == [0.0, 0.0]


def test_evaluate_predictions_rejects_a_length_mismatch() -> None:
    with pytest.raises(ValueError, match="2 labels but 3 predictions"):
        evaluate_predictions([0, 1], [0, 1, 1], 2)


def test_evaluate_predictions_rejects_empty_input() -> None:
    with pytest.raises(ValueError, match="no programs"):
        evaluate_predictions([], [], 4)


def test_confusion_matrix_rejects_classes_out_of_range() -> None:
    with pytest.raises(ValueError, match=r"outside the classes 0\.\.1"):
        confusion_matrix([-1, 0], [0, 0], 2)
    with pytest.raises(ValueError, match="prediction"):
        confusion_matrix([0, 1], [0, 2], 2)
