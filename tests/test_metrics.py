import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from autograder.checks import references
from featurelab import metrics


def test_cluster_accuracy_is_invariant_to_renaming_clusters():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, size=200)
    permutation = rng.permutation(5)
    assert references.cluster_accuracy(y, permutation[y]) == 1.0


def test_cluster_accuracy_matches_brute_force_on_small_problems():
    from itertools import permutations

    rng = np.random.default_rng(1)
    for _ in range(20):
        y_true = rng.integers(0, 4, size=30)
        y_pred = rng.integers(0, 4, size=30)
        best = max(np.mean(np.array(p)[y_pred] == y_true) for p in permutations(range(4)))
        assert references.cluster_accuracy(y_true, y_pred) == pytest.approx(best)


def test_cluster_accuracy_with_more_clusters_than_classes_counts_unmatched_as_errors():
    y_true = [0, 0, 1, 1]
    y_pred = [0, 1, 2, 3]
    assert references.cluster_accuracy(y_true, y_pred) == 0.5


def test_nmi_ari_match_scikit_learn_and_accept_tensors():
    rng = np.random.default_rng(2)
    y_true = rng.integers(0, 3, size=50)
    y_pred = rng.integers(0, 3, size=50)
    y_true_t, y_pred_t = torch.as_tensor(y_true), torch.as_tensor(y_pred)
    assert metrics.nmi(y_true_t, y_pred_t) == pytest.approx(
        normalized_mutual_info_score(y_true, y_pred)
    )
    assert metrics.ari(y_true_t, y_pred_t) == pytest.approx(adjusted_rand_score(y_true, y_pred))


def test_confusion_matrix_matches_scikit_learn():
    rng = np.random.default_rng(3)
    y_true = rng.integers(0, 6, size=100)
    y_pred = rng.integers(0, 6, size=100)
    ours = metrics.confusion_matrix(y_true, y_pred, num_classes=6)
    np.testing.assert_array_equal(ours, sk_confusion_matrix(y_true, y_pred, labels=range(6)))


def test_bad_labels_are_clear_errors():
    with pytest.raises(ValueError, match="different or empty lengths"):
        references.cluster_accuracy([0, 1], [0])
    with pytest.raises(ValueError, match="1-D"):
        metrics.nmi(np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="integer"):
        metrics.ari([0.5, 1.0], [0, 1])
    with pytest.raises(ValueError, match="< num_classes"):
        metrics.confusion_matrix([0, 3], [0, 1], num_classes=2)
