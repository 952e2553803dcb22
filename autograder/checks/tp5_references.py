"""Reference functions of tp5_cifar10_clustering's judges (issue 14: split out of
``tp5_cifar10_clustering.py``, which imports them back so that they stay attributes of the
judge module, looked up by assignment name).

The references of every exercise (VGG16 cut points and their features, cosine similarity,
Hungarian cluster accuracy, k-means, nearest neighbours), the seeded probe cases they are
checked on, and the CIFAR-10 test images and labels as the notebook sees them.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import KMeans
from torch import nn

from autograder.checks import _as_tensor

NUM_CLASSES = 10
PROBE_SEED = 20200101


def probe_images(n: int = 2, size: int = 224, seed: int = PROBE_SEED) -> torch.Tensor:
    """A fixed batch of inputs ``(n, 3, size, size)``."""
    generator = torch.Generator().manual_seed(seed + size)
    return torch.randn(n, 3, size, size, generator=generator)


def reference_extractor(model: nn.Module, point: str) -> nn.Module:
    """VGG16 ``model`` cut at ``point`` (pool5, fc6, fc7, relu7, logits), sharing parameters."""
    from autograder.checks.references import cut

    return cut(model, "vgg16", point)


def reference_features(model: nn.Module, point: str, images: torch.Tensor) -> torch.Tensor:
    """Features of ``images`` ``(N, 3, H, W)`` at ``point`` by the reference cut, ``(N, D)``."""
    with torch.inference_mode():
        return reference_extractor(model, point).eval()(images).clone()


def reference_cosine_similarity(features) -> torch.Tensor:
    """Cosine similarity matrix ``(N, N)`` of the rows of ``features`` ``(N, D)`` (float64)."""
    x = _as_tensor(features).double()
    unit = torch.nn.functional.normalize(x, dim=1)
    return unit @ unit.T


def reference_cluster_accuracy(y_true, y_pred) -> float:
    """Accuracy after the best one-to-one matching of cluster ids to classes (Hungarian).

    Cluster ids and class ids are arbitrary integers; with more clusters than classes (or the
    reverse) the unmatched ones count as errors.
    """
    true = np.asarray(_as_tensor(y_true).numpy()).astype(np.int64).ravel()
    pred = np.asarray(_as_tensor(y_pred).numpy()).astype(np.int64).ravel()
    if true.shape != pred.shape or true.size == 0:
        raise AssertionError(f"label arrays of shapes {true.shape} and {pred.shape}")
    classes, true_idx = np.unique(true, return_inverse=True)
    clusters, pred_idx = np.unique(pred, return_inverse=True)
    table = np.zeros((clusters.size, classes.size), dtype=np.int64)
    np.add.at(table, (pred_idx, true_idx), 1)
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / true.size)


def label_probes(seed: int = PROBE_SEED) -> list[tuple[np.ndarray, np.ndarray]]:
    """Pairs ``(y_true, y_pred)`` covering the cases a Hungarian accuracy must get right.

    Random labellings (several sizes), a labelling equal to the truth up to a permutation of
    the ids, more clusters than classes, fewer clusters than classes, non-contiguous ids.
    """
    rng = np.random.default_rng(seed)
    pairs = []
    for n, k_true, k_pred in ((50, 3, 3), (200, 10, 10), (120, 10, 12), (90, 6, 4)):
        y_true = rng.integers(0, k_true, n)
        # a noisy copy of the truth under a random renaming, so that the matching matters
        mapping = rng.permutation(max(k_true, k_pred))[:k_true]
        y_pred = mapping[y_true]
        noisy = rng.random(n) < 0.4
        y_pred[noisy] = rng.integers(0, k_pred, noisy.sum())
        pairs.append((y_true, y_pred))
    y_true = rng.integers(0, 10, 100)
    pairs.append((y_true, rng.permutation(10)[y_true]))  # a pure renaming: accuracy 1
    pairs.append((y_true, np.array([0, 5, 9])[rng.integers(0, 3, 100)]))  # ids 0, 5, 9
    return pairs


def permuted_labelling(seed: int = PROBE_SEED) -> tuple[np.ndarray, np.ndarray]:
    """``(y_true, y_pred)`` where ``y_pred`` renames every class: cluster accuracy 1."""
    rng = np.random.default_rng(seed + 1)
    y_true = rng.integers(0, 10, 60)
    return y_true, (rng.permutation(10) + 3)[y_true]


def direction_blobs(seed: int = PROBE_SEED) -> tuple[torch.Tensor, np.ndarray]:
    """Four clusters that differ by *direction* only, with norms spread over 0.1 .. 10.

    k-means on L2-normalised rows recovers them exactly; k-means on the raw rows splits
    them by norm instead. Returns ``(features (80, 32) float32, labels (80,))``.
    """
    rng = np.random.default_rng(seed + 2)
    directions = np.eye(4, 32) * 1.0 + 0.05 * rng.standard_normal((4, 32))
    labels = np.repeat(np.arange(4), 20)
    rows = directions[labels] + 0.05 * rng.standard_normal((80, 32))
    scales = np.exp(rng.uniform(np.log(0.1), np.log(10.0), size=(80, 1)))
    order = rng.permutation(80)
    features = torch.from_numpy((rows * scales)[order].astype(np.float32))
    return features, labels[order]


def kmeans_inertia(features, assignment) -> float:
    """k-means objective of ``assignment`` on the L2-normalised rows of ``features``.

    Sum over samples of the squared distance to the mean of their cluster.
    """
    x = torch.nn.functional.normalize(_as_tensor(features).double(), dim=1).numpy()
    labels = np.asarray(_as_tensor(assignment).numpy()).astype(np.int64).ravel()
    total = 0.0
    for cluster in np.unique(labels):
        members = x[labels == cluster]
        total += float(((members - members.mean(axis=0)) ** 2).sum())
    return total


def reference_kmeans(features, n_clusters: int = NUM_CLASSES, seed: int = 0) -> np.ndarray:
    """k-means (10 restarts, fixed seed) on the L2-normalised rows of ``features``."""
    x = torch.nn.functional.normalize(_as_tensor(features).float(), dim=1).numpy()
    return KMeans(n_clusters=n_clusters, n_init=10, random_state=seed).fit_predict(x)


def probe_similarity(n: int = 12, seed: int = PROBE_SEED) -> torch.Tensor:
    """A symmetric ``(n, n)`` similarity matrix with ones on the diagonal and no ties."""
    generator = torch.Generator().manual_seed(seed + 3)
    x = torch.randn(n, 8, generator=generator, dtype=torch.float64)
    return reference_cosine_similarity(x)


def reference_nearest_neighbours(similarity, queries, k: int) -> torch.Tensor:
    """Indices ``(Q, k)`` of the ``k`` most similar items to each query, itself excluded."""
    s = _as_tensor(similarity).double().clone()
    q = torch.as_tensor(list(queries), dtype=torch.long)
    rows = s[q]
    rows[torch.arange(len(q)), q] = -float("inf")
    return rows.topk(k, dim=1).indices


def nearest_neighbour_probes(n: int = 12, seed: int = PROBE_SEED):
    """``(similarity (n, n), queries, k)`` cases for ``nearest_neighbours``.

    The plain cosine matrix of :func:`probe_similarity` (no ties), then matrices where "the
    query itself" is not simply the first result of ``topk(k + 1)``: a cosine matrix with
    duplicate images (items 7 and 9 copy items 0 and 4: they tie with the query's own 1, and
    with each other as neighbours of the other queries), and an inner-product matrix where item
    3 is twice item 1, so that query 1's most similar item (``s[1, 3] = 2 s[1, 1]``) outranks
    the query itself.
    """
    plain = probe_similarity(n, seed)
    generator = torch.Generator().manual_seed(seed + 5)
    x = torch.randn(n, 8, generator=generator, dtype=torch.float64)
    x[7], x[9] = x[0], x[4]
    duplicates = reference_cosine_similarity(x)
    for copy, original in ((7, 0), (9, 4)):  # exact ties, whatever the rounding of the product
        duplicates[copy], duplicates[:, copy] = duplicates[original], duplicates[:, original]
    duplicates.fill_diagonal_(1.0)
    for copy, original in ((7, 0), (9, 4)):
        duplicates[copy, original] = duplicates[original, copy] = 1.0
    y = torch.randn(n, 8, generator=generator, dtype=torch.float64)
    y[3] = 2 * y[1]
    inner = y @ y.T
    return [
        (plain, [0], 3),
        (plain, [5, 2, 11], 5),
        (plain, list(range(n)), n - 1),
        (duplicates, [0, 4, 7, 2], 3),
        (duplicates, list(range(n)), n - 1),
        (inner, [1, 3, 6], 3),
    ]


def neighbours_problem(got, similarity, queries, k: int) -> str | None:
    """Why ``got`` is not the ``k`` nearest neighbours of ``queries`` (None when it is).

    Ties are judged by value: among equally similar items any order is right. The query's own
    index must not appear.
    """
    queries = list(queries)
    try:
        got = _as_tensor(got).long()
    except (TypeError, ValueError, RuntimeError):
        return "nearest_neighbours must return a tensor of indices"
    if tuple(got.shape) != (len(queries), k):
        return (
            f"expected shape {(len(queries), k)}, got {tuple(got.shape)} (queries {queries}, k={k})"
        )
    s = _as_tensor(similarity).double()
    expected = reference_nearest_neighbours(s, queries, k)
    for row, query, reference in zip(got.tolist(), queries, expected.tolist(), strict=True):
        if query in row:
            return f"query {query} is among its own neighbours {row}"
        if len(set(row)) != k or not all(0 <= index < s.shape[0] for index in row):
            return f"neighbours of query {query} must be {k} distinct indices, got {row}"
        if s[query, row].tolist() != s[query, reference].tolist():
            return f"wrong neighbours for query {query}, k={k}: {row}"
    return None


def split_targets(profile: str, root=None) -> torch.Tensor:
    """Labels ``(N,)`` of the CIFAR-10 test split of ``profile``, in dataset order."""
    from featurelab.data import load_cifar10

    return torch.as_tensor(load_cifar10(train=False, profile=profile, root=root).targets)


def features_of_head(head: nn.Module, pool5: torch.Tensor) -> torch.Tensor:
    """``head`` (eval mode, no gradients) applied to pool5 vectors ``(N, 25088)`` in one go."""
    with torch.inference_mode():
        return head(pool5).clone()


def first_images(profile: str, root=None, n: int = 2) -> torch.Tensor:
    """The first ``n`` CIFAR-10 test images as the network sees them: ``(n, 3, 224, 224)``.

    Same pipeline as the notebook: ``ToTensor`` + ImageNet ``Normalize`` at 32x32, then the
    batch upsampled to 224 (bilinear, ``align_corners=False``), as
    ``featurelab.features.extract(..., resize=224)`` does.
    """
    import torchvision.transforms as T

    from featurelab.backbones import preprocessing
    from featurelab.data import load_cifar10

    imagenet = preprocessing("vgg16")
    transform = T.Compose([T.ToTensor(), T.Normalize(mean=imagenet.mean, std=imagenet.std)])
    dataset = load_cifar10(train=False, transform=transform, profile=profile, root=root)
    batch = torch.stack([dataset[i][0] for i in range(n)])
    return torch.nn.functional.interpolate(
        batch, size=(224, 224), mode="bilinear", align_corners=False
    )


def dataset_images(profile: str, indices, root=None) -> torch.Tensor:
    """CIFAR-10 test images ``indices`` as the network sees them: ``(n, 3, 224, 224)`` (the
    pipeline of :func:`first_images`)."""
    import torchvision.transforms as T

    from featurelab.backbones import preprocessing
    from featurelab.data import load_cifar10

    imagenet = preprocessing("vgg16")
    transform = T.Compose([T.ToTensor(), T.Normalize(mean=imagenet.mean, std=imagenet.std)])
    dataset = load_cifar10(train=False, transform=transform, profile=profile, root=root)
    batch = torch.stack([dataset[int(i)][0] for i in indices])
    return torch.nn.functional.interpolate(
        batch, size=(224, 224), mode="bilinear", align_corners=False
    )
