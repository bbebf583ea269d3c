"""How good is the critic: accuracy and confusion matrix, next to the majority-class baseline."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict

__all__ = ["CriticEvaluation", "confusion_matrix", "evaluate_predictions"]


class CriticEvaluation(BaseModel):
    model_config = ConfigDict(frozen=True)

    count: int
    accuracy: float
    """fraction of programs whose predicted class is the observed one"""
    majority_class: int
    majority_accuracy: float
    """accuracy of always predicting the most frequent observed class: the bar to clear"""
    confusion: list[list[int]]
    """confusion[observed][predicted] counts"""
    per_class_recall: list[float | None]
    """recall of each observed class; None where the class never occurs"""


def confusion_matrix(labels: Sequence[int], predictions: Sequence[int], num_classes: int) -> np.ndarray:
    """``m[i, j]`` = number of programs with observed class i predicted as j. Shape: (c, c)."""
    observed, predicted = np.asarray(labels, dtype=np.int64), np.asarray(predictions, dtype=np.int64)
    for name, values in (("label", observed), ("prediction", predicted)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(
                f"a {name} is outside the classes 0..{num_classes - 1}: {sorted(set(values.tolist()))}"
            )
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (observed, predicted), 1)
    return matrix


def evaluate_predictions(
    labels: Sequence[int], predictions: Sequence[int], num_classes: int
) -> CriticEvaluation:
    """Accuracy = trace(m) / n; the majority baseline predicts argmax_i(row sums of m) for all."""
    if len(labels) != len(predictions):
        raise ValueError(f"{len(labels)} labels but {len(predictions)} predictions")
    if not labels:
        raise ValueError("no programs to evaluate the critic on")
    matrix = confusion_matrix(labels, predictions, num_classes)
    observed = matrix.sum(axis=1)
    count = int(observed.sum())
    majority = int(observed.argmax())
    return CriticEvaluation(
        count=count,
        accuracy=float(np.trace(matrix)) / count,
        majority_class=majority,
        majority_accuracy=float(observed[majority]) / count,
        confusion=matrix.tolist(),
        per_class_recall=[
            float(matrix[i, i] / observed[i]) if observed[i] else None for i in range(num_classes)
        ],
    )
