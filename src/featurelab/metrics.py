"""Evaluation metrics: NMI, ARI, confusion matrix, accuracy.

Clustering accuracy with Hungarian matching is an exercise of TP5 (the reference lives on the
instructor side, in ``autograder/checks/references.py``).

Labels are 1-D integer sequences of equal length ``N`` (lists, numpy arrays or tensors).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score


def _as_labels(values, what: str) -> np.ndarray:
    if hasattr(values, "detach"):  # torch tensor
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{what} must be 1-D (N,), got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.equal(np.mod(array, 1), 0)):
            raise ValueError(f"{what} must hold integer labels, got dtype {array.dtype}")
        array = array.astype(np.int64)
    return array


def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    true, pred = _as_labels(y_true, "y_true"), _as_labels(y_pred, "y_pred")
    if true.shape != pred.shape:
        raise ValueError(f"y_true and y_pred differ in length: {true.shape[0]} vs {pred.shape[0]}")
    if true.size == 0:
        raise ValueError("empty label arrays")
    return true, pred


def confusion_matrix(y_true, y_pred, num_classes: int | None = None) -> np.ndarray:
    """Counts ``C[i, j]`` of samples with true label ``i`` predicted as ``j``: ``(K, K)`` int64.

    ``K`` is ``num_classes`` or ``max(label) + 1``. Labels must be in ``[0, K)``.
    """
    true, pred = _pair(y_true, y_pred)
    if true.min() < 0 or pred.min() < 0:
        raise ValueError("labels must be non-negative")
    k = int(num_classes if num_classes is not None else max(true.max(), pred.max()) + 1)
    if true.max() >= k or pred.max() >= k:
        raise ValueError(f"labels must be < num_classes={k}")
    matrix = np.zeros((k, k), dtype=np.int64)
    np.add.at(matrix, (true, pred), 1)
    return matrix


def nmi(y_true, y_pred) -> float:
    """Normalised mutual information (arithmetic normalisation, as scikit-learn)."""
    true, pred = _pair(y_true, y_pred)
    return float(normalized_mutual_info_score(true, pred))


def ari(y_true, y_pred) -> float:
    """Adjusted Rand index (0 for random labellings, 1 for identical partitions)."""
    true, pred = _pair(y_true, y_pred)
    return float(adjusted_rand_score(true, pred))


def accuracy(y_true, y_pred) -> float:
    """Plain classification accuracy (fraction of equal labels)."""
    true, pred = _pair(y_true, y_pred)
    return float(np.mean(true == pred))
