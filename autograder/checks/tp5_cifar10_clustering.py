"""Reference checks for tp5_cifar10_clustering (CIFAR-10 clustering with VGG16 features).

The hidden tests of ``solutions/tp5_cifar10_clustering`` are evidence collectors
(:mod:`featurelab.evidence`): they run the student's code on the probes of :func:`make_probes`
inside the grading sandbox, and the judges of :data:`JUDGES` (bottom of this file) score that
evidence here, outside it, with the reference functions of ``tp5_references.py`` (imported
below: they stay attributes of this module). The reference VGG16 is the one
``featurelab.backbones.load_model`` gives in the grading profile (pretrained weights, or the
seeded random initialisation of the smoke profile), built once per grading worker.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from torch import nn

from autograder.checks import reference_network, relative_error
from autograder.checks.tp5_references import (  # noqa: F401 - attributes of the judge module
    NUM_CLASSES,
    PROBE_SEED,
    dataset_images,
    direction_blobs,
    features_of_head,
    first_images,
    kmeans_inertia,
    label_probes,
    nearest_neighbour_probes,
    neighbours_problem,
    permuted_labelling,
    probe_images,
    probe_similarity,
    reference_cluster_accuracy,
    reference_cosine_similarity,
    reference_extractor,
    reference_features,
    reference_kmeans,
    reference_nearest_neighbours,
    split_targets,
)
from autograder.judge import Failed, ProbeSet, as_array, as_float, close

ASSIGNMENT = "tp5_cifar10_clustering"
FC7_NUM_PARAMS = 134_260_544  # features + fc6 + fc7 (ReLU and dropout have no parameters)
LAYER_DIMS = {"pool5": 25088, "fc6": 4096, "fc7": 4096, "relu7": 4096, "logits": 1000}
# A k-means partition found by the student must be (nearly) as good as the reference one.
INERTIA_SLACK = 1.10


# ============================================================================================
# The judge (docs/JUDGE.md): probes sent into the grading sandbox, verdicts on the evidence
# the collectors of the hidden tests bring back. Runs in the grading worker, outside the sandbox.

HELD_BACK = 2  # test images (flipped, anonymous PNGs) the notebook's extractor runs on
SPOT_ROWS = 2  # rows of fc7_features the judge recomputes (chosen in secret)
LAYER_ROWS = 1  # rows of every layer_features entry the judge recomputes (sent as probes)
ROW_TOLERANCE = 5e-2  # relative error of a feature row vs the judge's (batching, AMP)
OUTPUT_TOLERANCE = 1e-3  # relative error, same input through the same layers
# Shared cache key of the reference VGG16 (other judges may use the same model).


def make_probes(seed: int, profile: str) -> ProbeSet:
    """The inputs the collectors run the student's code on (fresh for every grading run)."""
    from PIL import ImageOps

    from featurelab.data import load_cifar10

    rng = np.random.default_rng(seed)
    sub_seed = int(rng.integers(2**31))
    arrays: dict[str, np.ndarray] = {}
    values: dict = {}
    size = int(rng.choice([96, 128, 160]))  # not 224: the adaptive avgpool must do its job
    arrays["ex1/small"] = rng.standard_normal((1, 3, size, size), dtype=np.float32)
    arrays["ex1/image"] = rng.standard_normal((1, 3, 224, 224), dtype=np.float32)
    n = int(rng.integers(3, 7))
    arrays["ex2/pool5"] = 2.0 * rng.random((n, 25088), dtype=np.float32)
    values["ex2/batch_sizes"] = [int(b) for b in rng.permutation([1, 2, n, 64])]
    values["ex2/logits_batch_size"] = int(rng.integers(1, n))
    values["layers/rows"] = [int(v) for v in rng.integers(0, 2**20, size=LAYER_ROWS)]
    rows = rng.standard_normal((int(rng.integers(6, 10)), 16))
    rows *= np.exp(rng.uniform(np.log(1e-2), np.log(1e3), size=(len(rows), 1)))
    arrays["ex3/vectors"] = rows.astype(np.float32)
    features, truth = direction_blobs(sub_seed)
    arrays["ex4/features"] = features.numpy()
    for number, (y_true, y_pred) in enumerate(label_probes(sub_seed)):
        arrays[f"ex5/true{number}"], arrays[f"ex5/pred{number}"] = y_true, y_pred
    values["ex5/pairs"] = number + 1
    arrays["ex5/permuted_true"], arrays["ex5/permuted_pred"] = permuted_labelling(sub_seed)
    cases = []
    for number, (similarity, queries, k) in enumerate(nearest_neighbour_probes(12, sub_seed)):
        arrays[f"ex6/similarity{number}"] = similarity.numpy()
        cases.append([list(queries), int(k)])
    values["ex6/cases"] = cases
    test = load_cifar10(train=False, profile=profile)
    files, names = {}, []
    for number, index in enumerate(
        rng.choice(len(test), size=min(HELD_BACK, len(test)), replace=False)
    ):
        buffer = io.BytesIO()
        ImageOps.mirror(test[int(index)][0].convert("RGB")).save(buffer, format="PNG")
        name = f"heldback/{number}.png"
        files[name] = buffer.getvalue()
        names.append(name)
    values["heldback"] = names
    return ProbeSet(values=values, arrays=arrays, files=files, private={"ex4/truth": truth})


def reference_model(context) -> nn.Module:
    """The VGG16 the notebook works on (``load_model("vgg16", profile)``), built once per worker."""
    return reference_network(context.cache, "vgg16", context.profile)[0]


def _per_run(context, name: str, compute):
    """``compute()`` once per grading run (the probes, hence the result, depend on the seed)."""
    key = (ASSIGNMENT, "per-run", context.profile, context.seed, name)
    if key not in context.cache:
        context.cache[key] = compute()
    return context.cache[key]


def model_fingerprint(model: nn.Module) -> list[np.ndarray]:
    """A few weights of a VGG16 (conv1, fc8): the collectors record the same slices."""
    return [
        model.features[0].weight[:2].detach().numpy(),
        model.classifier[-1].bias[:16].detach().numpy(),
    ]


def _check_same_model(evidence, model: nn.Module) -> None:
    got = evidence.list("model_print", "the VGG16 `model`")
    expected = model_fingerprint(model)
    if len(got) != len(expected) or not all(
        isinstance(g, np.ndarray) and close(g, e, rtol=1e-6, atol=1e-7)
        for g, e in zip(got, expected, strict=False)
    ):
        raise Failed(
            "`model` is not the VGG16 that fl.backbones.load_model returned "
            "(were its weights changed?)"
        )


def _features(evidence, key: str, what: str, shape: tuple) -> np.ndarray:
    value = evidence.array(key, what, shape=shape).astype(np.float64)
    if not np.isfinite(value).all():
        raise Failed(f"{what} contains NaN or infinite values")
    return value


def _same(got, expected, tolerance: float) -> bool:
    return (
        relative_error(
            torch.as_tensor(np.asarray(got, dtype=np.float64)),
            torch.as_tensor(np.asarray(expected, dtype=np.float64)),
        )
        < tolerance
    )


def _targets(context) -> np.ndarray:
    key = ("tp5_cifar10_clustering", "targets", context.profile)
    if key not in context.cache:
        context.cache[key] = split_targets(context.profile).numpy()
    return context.cache[key]


def _reference_pool5(context, index: int) -> torch.Tensor:
    """pool5 feature ``(1, 25088)`` of test image ``index``, by the judge (cached)."""
    key = ("tp5_cifar10_clustering", "pool5", context.profile, index)
    if key not in context.cache:
        images = dataset_images(context.profile, [index])
        context.cache[key] = reference_features(reference_model(context), "pool5", images)
    return context.cache[key]


def _held_back_images(probes: ProbeSet) -> torch.Tensor:
    import torchvision.transforms as T
    from PIL import Image

    from featurelab.backbones import preprocessing

    imagenet = preprocessing("vgg16")
    transform = T.Compose([T.ToTensor(), T.Normalize(mean=imagenet.mean, std=imagenet.std)])
    images = []
    for name in probes.values["heldback"]:
        with Image.open(io.BytesIO(probes.files[name])) as image:
            images.append(transform(image.convert("RGB")))
    return torch.nn.functional.interpolate(
        torch.stack(images), size=(224, 224), mode="bilinear", align_corners=False
    )


def _all_false(evidence, key: str, what: str) -> bool:
    flags = evidence.list(key, what)
    return bool(flags) and all(flag is False for flag in flags)


def _num_parameters(evidence, key: str, what: str) -> int:
    return sum(int(np.prod(shape)) for shape in evidence.list(key, what))


def judge_fc7_extractor(evidence, probes: ProbeSet, context) -> None:
    model = reference_model(context)
    _check_same_model(evidence, model)
    image, small = probes.tensor("ex1/image"), probes.tensor("ex1/small")
    expected = _per_run(context, "image", lambda: reference_features(model, "fc7", image))
    twice = evidence.list("extractor_twice", "fc7_extractor on an image")
    if len(twice) != 2:
        raise Failed("fc7_extractor on an image: no result")
    first = as_array(twice[0], "fc7_extractor(images)", shape=(1, 4096))
    second = as_array(twice[1], "fc7_extractor(images)", shape=(1, 4096))
    if not np.array_equal(first, second):
        raise Failed("two calls on the same images differ: is the extractor in eval mode?")
    if (
        _num_parameters(evidence, "extractor_shapes", "the parameters of fc7_extractor")
        != FC7_NUM_PARAMS
    ):
        raise Failed("features + fc6 + fc7 have 134,260,544 parameters")
    got = as_array(
        evidence.get("fresh_image", "make_fc7_extractor(model) on an image"),
        "make_fc7_extractor(model) on an image",
        shape=(1, 4096),
    )
    if not _same(got, expected, OUTPUT_TOLERANCE):
        raise Failed("output differs from VGG16 cut at fc7 (classifier[:4])")
    got_small = as_array(
        evidence.get("fresh_small", "make_fc7_extractor(model) on a smaller image"),
        "make_fc7_extractor(model) on a smaller image",
        shape=(1, 4096),
    )
    reference_small = _per_run(context, "small", lambda: reference_features(model, "fc7", small))
    if not _same(got_small, reference_small, OUTPUT_TOLERANCE):
        raise Failed("wrong output on images smaller than 224x224 (avgpool?)")
    again = as_array(evidence.get("fresh_again", "a second call"), "a second call", shape=(1, 4096))
    if not np.array_equal(got, again):
        raise Failed("the extractor is not deterministic")
    if not _same(first, expected, OUTPUT_TOLERANCE):
        raise Failed("fc7_extractor differs from VGG16 cut at fc7 (classifier[:4])")
    fresh = {int(p) for p in evidence.list("fresh_pointers", "the parameters of the extractor")}
    shared = {int(p) for p in evidence.list("model_pointers", "the parameters of model")}
    if not fresh or not fresh <= shared:
        raise Failed("the extractor must reuse the layers of the VGG16 it is given (no copy)")
    if (
        _num_parameters(evidence, "fresh_shapes", "the parameters of the extractor")
        != FC7_NUM_PARAMS
    ):
        raise Failed("the extractor holds the wrong layers")
    if not _all_false(evidence, "fresh_training", "the modes of make_fc7_extractor(model)"):
        raise Failed("make_fc7_extractor must return a module in eval mode")
    if not _all_false(evidence, "extractor_training", "the modes of fc7_extractor"):
        raise Failed("fc7_extractor is not in eval mode")


def judge_features_from_pool5(evidence, probes: ProbeSet, context) -> None:
    model = reference_model(context)
    visible_in = evidence.array("visible_in", "_p", shape=(5, 25088))
    visible_out = evidence.array("visible_out", "features_from_pool5(_p, ...)", shape=(5, 4096))
    if not _same(
        visible_out,
        features_of_head(model.classifier[:4], torch.from_numpy(visible_in)),
        OUTPUT_TOLERANCE,
    ):
        raise Failed("not the head applied to the pool5 vectors")
    pool5 = probes.tensor("ex2/pool5")
    expected = features_of_head(model.classifier[:4], pool5)
    sizes = probes.values["ex2/batch_sizes"]
    outputs = evidence.list("outputs", "features_from_pool5 on pool5 vectors")
    if len(outputs) != len(sizes):
        raise Failed("features_from_pool5: missing results")
    for size, output in zip(sizes, outputs, strict=True):
        got = as_array(
            output, f"features_from_pool5(batch_size={size})", shape=tuple(expected.shape)
        )
        if not _same(got, expected, OUTPUT_TOLERANCE):
            raise Failed(f"wrong values with batch_size={size}")
    if not _all_false(evidence, "requires_grad", "the results"):
        raise Failed("the result must not require gradients (inference mode)")
    devices = evidence.list("devices", "the devices of the results")
    if not devices or any(device != "cpu" for device in devices):
        raise Failed("the result must be on the CPU")
    logits = as_array(
        evidence.get("logits", "features_from_pool5 with the whole classifier"),
        "features_from_pool5 with the whole classifier",
        shape=(len(pool5), 1000),
    )
    if not _same(logits, features_of_head(model.classifier, pool5), OUTPUT_TOLERANCE):
        raise Failed("wrong result with the whole classifier as head")
    same = as_array(
        evidence.get("identity", "features_from_pool5 with nn.Identity()"),
        "features_from_pool5 with nn.Identity()",
        shape=tuple(pool5.shape),
    )
    if not close(same, pool5.numpy(), rtol=1e-6, atol=1e-6):
        raise Failed("an identity head must return the pool5 vectors")


def judge_layer_features(evidence, probes: ProbeSet, context) -> None:
    targets = _targets(context)
    n = len(targets)
    shapes = evidence.get("shapes", "the shapes of layer_features")
    if not isinstance(shapes, dict):
        raise Failed("layer_features must be a dict of feature tensors")
    for name, dim in LAYER_DIMS.items():
        if name not in shapes or list(shapes[name] or []) != [n, dim]:
            raise Failed(f"{name} should be ({n}, {dim})")
    if not np.array_equal(evidence.array("labels", "labels", shape=(n,)), targets):
        raise Failed("labels must follow the dataset order")
    rows = [row % n for row in probes.values["layers/rows"]]
    got_rows = evidence.get("rows", "rows of layer_features")
    if not isinstance(got_rows, dict):
        raise Failed("rows of layer_features: no result")
    model = reference_model(context)
    heads = {
        "pool5": nn.Identity(),
        "fc6": model.classifier[:1],
        "fc7": model.classifier[:4],
        "relu7": model.classifier[:5],
        "logits": model.classifier,
    }
    for name, head in heads.items():
        got = as_array(
            got_rows.get(name), f"layer_features[{name!r}]", shape=(len(rows), LAYER_DIMS[name])
        )
        for position, index in enumerate(rows):
            expected = features_of_head(head, _reference_pool5(context, index))[0]
            if not _same(got[position], expected, ROW_TOLERANCE):
                raise Failed(f"{name} features are not those of the images, in dataset order")


def judge_cosine_similarity(evidence, probes: ProbeSet, context) -> None:
    half = 0.5**0.5
    visible = evidence.array(
        "visible", "cosine_similarity_matrix on the small example", shape=(3, 3)
    )
    if not close(
        visible,
        np.array([[1.0, 0.0, half], [0.0, 1.0, half], [half, half, 1.0]]),
        rtol=0.0,
        atol=1e-6,
    ):
        raise Failed("wrong values on the small example")
    vectors = probes.arrays["ex3/vectors"]
    n = len(vectors)
    got = evidence.array("probe", f"cosine_similarity_matrix on a ({n}, 16) probe", shape=(n, n))
    expected = reference_cosine_similarity(vectors).numpy()
    if not close(got, expected, rtol=0.0, atol=1e-5):
        raise Failed("differs from the cosine similarities of the rows (rows of any norm)")
    if not np.array_equal(evidence.array("probe_after", "the input after the call"), vectors):
        raise Failed("cosine_similarity_matrix must not modify its input")


def judge_kmeans(evidence, probes: ProbeSet, context) -> None:
    first = evidence.array("visible_a", "kmeans_labels(_x, n_clusters=3)")
    second = evidence.array("visible_b", "kmeans_labels(_x, n_clusters=3)")
    if first.shape != (30,):
        raise Failed("one cluster id per row")
    if not set(first.tolist()) <= {0, 1, 2}:
        raise Failed("ids must be in [0, n_clusters)")
    if not np.array_equal(first, second):
        raise Failed("with a fixed seed, two runs must agree")
    features = probes.arrays["ex4/features"]
    found = evidence.array("probe", "kmeans_labels on direction clusters", shape=(len(features),))
    if reference_cluster_accuracy(probes.private["ex4/truth"], found) != 1.0:
        raise Failed("clusters that differ by direction only must be found (normalise the rows)")
    if not np.array_equal(evidence.array("probe_after", "the input after the call"), features):
        raise Failed("kmeans_labels must not modify its input")
    six = evidence.array("six", "kmeans_labels(..., n_clusters=6)", shape=(len(features),))
    if len(set(six.tolist())) != 6:
        raise Failed("n_clusters must be used")


def judge_cluster_accuracy(evidence, probes: ProbeSet, context) -> None:
    visible = evidence.list("visible", "cluster_accuracy on the small examples")
    expected_visible = [1.0, 1.0, 5 / 6]
    if len(visible) != 3 or any(
        abs(as_float(v, "cluster_accuracy(...)") - e) > 1e-9
        for v, e in zip(visible, expected_visible, strict=False)
    ):
        raise Failed("wrong accuracy on the small examples")
    results = evidence.list("probes", "cluster_accuracy on labellings")
    pairs = probes.values["ex5/pairs"]
    if len(results) != pairs:
        raise Failed("cluster_accuracy on labellings: missing results")
    for number, result in enumerate(results):
        y_true, y_pred = probes.arrays[f"ex5/true{number}"], probes.arrays[f"ex5/pred{number}"]
        expected = reference_cluster_accuracy(y_true, y_pred)
        got = as_float(result, "cluster_accuracy(y_true, y_pred)")
        if abs(got - expected) > 1e-9:
            raise Failed(
                f"wrong accuracy for {len(np.unique(y_true))} classes and "
                f"{len(np.unique(y_pred))} clusters (best one-to-one matching?)"
            )
    if (
        abs(
            as_float(evidence.get("permuted", "cluster_accuracy(permuted)"), "cluster_accuracy")
            - 1.0
        )
        > 1e-12
    ):
        raise Failed("a permuted labelling has accuracy 1")
    if (
        abs(
            as_float(
                evidence.get("permuted_tensors", "cluster_accuracy(tensors)"),
                "cluster_accuracy on tensors",
            )
            - 1.0
        )
        > 1e-12
    ):
        raise Failed("tensors must work too")


def judge_nearest_neighbours(evidence, probes: ProbeSet, context) -> None:
    visible = evidence.array("visible", "nearest_neighbours(_s, [0, 3], k=2)", shape=(2, 2))
    if visible.tolist() != [[2, 3], [0, 2]]:
        raise Failed("wrong neighbours on the small example")
    results = evidence.list("probes", "nearest_neighbours on similarity matrices")
    after = evidence.list("after", "the similarity matrices after the calls")
    cases = probes.values["ex6/cases"]
    if len(results) != len(cases) or len(after) != len(cases):
        raise Failed("nearest_neighbours: missing results")
    for number, ((queries, k), result, matrix) in enumerate(
        zip(cases, results, after, strict=True)
    ):
        similarity = probes.arrays[f"ex6/similarity{number}"]
        got = as_array(result, f"nearest_neighbours(similarity, {queries}, k={k})")
        problem = neighbours_problem(got, similarity, queries, k)
        if problem is not None:
            raise Failed(problem)
        if not np.array_equal(as_array(matrix, "the similarity matrix"), similarity):
            raise Failed("nearest_neighbours must not modify the similarity matrix")


def judge_fc7_clustering(evidence, probes: ProbeSet, context) -> None:
    targets = _targets(context)
    n = len(targets)
    clusters = evidence.array("fc7_clusters", "fc7_clusters")
    if clusters.shape != (n,) or not np.array_equal(clusters, np.round(clusters)):
        raise Failed("one cluster id (an integer) per image")
    clusters = clusters.astype(np.int64)
    reported = evidence.float("fc7_accuracy", "fc7_accuracy")
    if not 0.0 <= reported <= 1.0:
        raise Failed("an accuracy lies in [0, 1]")
    if abs(reported - reference_cluster_accuracy(targets, clusters)) > 1e-9:
        raise Failed("fc7_accuracy is not the matched accuracy of fc7_clusters")
    features = _features(evidence, "fc7_features", "fc7_features", (n, 4096))
    model = reference_model(context)
    rng = np.random.default_rng([context.seed, 5])  # secret rows: never sent into the sandbox
    for index in rng.choice(n, size=min(SPOT_ROWS, n), replace=False):
        expected = features_of_head(model.classifier[:4], _reference_pool5(context, int(index)))[0]
        if not _same(features[int(index)], expected, ROW_TOLERANCE):
            raise Failed("fc7_features are not the fc7 features of the images, in dataset order")
    # The metric: the judge's own k-means (the notebook's settings) on the checked features,
    # scored with the labels the judge reads itself; fc7_clusters must be as good a partition.
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # one thread: far faster than an oversubscribed pool
        reference = reference_kmeans(features, NUM_CLASSES, seed=0)
    accuracy = reference_cluster_accuracy(targets, reference)
    context.metric("accuracy", accuracy)
    if kmeans_inertia(features, clusters) > INERTIA_SLACK * kmeans_inertia(features, reference):
        raise Failed("fc7_clusters is not a k-means partition of the normalised fc7 features")
    images = _held_back_images(probes)
    held_back = _features(evidence, "heldback", "fc7_extractor on new images", (len(images), 4096))
    references = _per_run(context, "heldback", lambda: reference_features(model, "fc7", images))
    for got, expected in zip(held_back, references, strict=True):
        if not _same(got, expected, ROW_TOLERANCE):
            raise Failed("fc7_extractor does not give the fc7 features of new images")
    minimum = context.threshold("accuracy")
    if accuracy < minimum:
        raise Failed(f"clustering accuracy {accuracy:.4f} is below the threshold {minimum:.4f}")


JUDGES = {
    "test_ex1_fc7_extractor": judge_fc7_extractor,
    "test_ex2_features_from_pool5": judge_features_from_pool5,
    "test_layer_features": judge_layer_features,
    "test_ex3_cosine_similarity": judge_cosine_similarity,
    "test_ex4_kmeans": judge_kmeans,
    "test_ex5_cluster_accuracy": judge_cluster_accuracy,
    "test_fc7_clustering": judge_fc7_clustering,
    "test_ex6_nearest_neighbours": judge_nearest_neighbours,
}
