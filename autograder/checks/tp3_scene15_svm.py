"""Reference checks for tp3_scene15_svm (15 Scene: VGG16 relu7 + linear SVM).

The hidden tests of ``solutions/tp3_scene15_svm`` are evidence collectors
(:mod:`featurelab.evidence`): they run the student's code on the probes of :func:`make_probes`
inside the grading sandbox, and the judges of :data:`JUDGES` (bottom of this file) score that
evidence here, outside it, with the reference functions below. The reference VGG16 is the one
``featurelab.backbones.load_model`` gives in the grading profile (pretrained weights, or the
seeded random initialisation of the smoke profile), built once per grading worker.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from sklearn.svm import LinearSVC
from torch import nn

from autograder.checks import reference_network, relative_error
from autograder.judge import Failed, ProbeSet, as_array, as_float, close

ASSIGNMENT = "tp3_scene15_svm"
NUM_CLASSES = 15
RELU7_DIM = 4096
# features (14,714,688) + fc6 (25088*4096 + 4096) + fc7 (4096*4096 + 4096)
RELU7_NUM_PARAMS = 134_260_544
PROBE_SEED = 20140101


def probe_images(n: int = 2, size: int = 224, seed: int = PROBE_SEED) -> torch.Tensor:
    """A fixed batch of ImageNet-normalised-looking inputs ``(n, 3, size, size)``."""
    generator = torch.Generator().manual_seed(seed + size)
    return torch.randn(n, 3, size, size, generator=generator)


def reference_to_three_channels(grey: torch.Tensor) -> torch.Tensor:
    """``(N, 1, H, W) -> (N, 3, H, W)``: the grey plane copied into R, G and B."""
    return grey.repeat(1, 3, 1, 1)


def reference_relu7(model: nn.Module) -> nn.Module:
    """The reference relu7 extractor on ``model`` (shares its parameters)."""
    from autograder.checks.references import cut

    return cut(model, "vgg16", "relu7")


def reference_relu7_features(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """relu7 features ``(N, 4096)`` of ``images`` ``(N, 3, H, W)`` by the reference cut."""
    with torch.inference_mode():
        return reference_relu7(model).eval()(images).clone()


def probe_features(seed: int = PROBE_SEED) -> torch.Tensor:
    """``(6, 32)`` float32 rows of very different norms (incl. negative values)."""
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randn(6, 32, generator=generator)
    scales = torch.tensor([1e-3, 0.5, 1.0, 3.0, 40.0, 1e3]).unsqueeze(1)
    return rows * scales


def reference_l2_normalize(features: torch.Tensor) -> torch.Tensor:
    """Rows of ``features`` ``(N, D)`` divided by their L2 norm (zero rows stay zero)."""
    return torch.nn.functional.normalize(features, p=2.0, dim=1)


def synthetic_svm_problem(seed: int = PROBE_SEED):
    """A linearly separable 3-class problem whose *test* labels are 20% wrong on purpose.

    Returns ``(X_train, y_train, X_test, y_test, expected_test_accuracy)``. Any sensible
    linear classifier separates the three far-apart blobs perfectly, so its test accuracy is
    exactly 0.8 (the flipped labels) while its training accuracy is 1.0.
    """
    rng = np.random.default_rng(seed)
    dim, per_class = 20, 30
    centres = np.zeros((3, dim), dtype=np.float32)
    centres[0, 0], centres[1, 1], centres[2, 2] = 10.0, 10.0, 10.0

    def blobs(n):
        x = np.concatenate([c + 0.3 * rng.standard_normal((n, dim)) for c in centres])
        return x.astype(np.float32), np.repeat(np.arange(3), n)

    x_train, y_train = blobs(per_class)
    x_test, y_test = blobs(10)
    flipped = rng.permutation(len(y_test))[: len(y_test) // 5]
    y_test = y_test.copy()
    y_test[flipped] = (y_test[flipped] + 1) % 3
    return x_train, y_train, x_test, y_test, 0.8


def split_targets(split: str, profile: str, root=None) -> torch.Tensor:
    """Labels ``(N,)`` of ``split`` in dataset order."""
    from featurelab.data import load_scene15

    return torch.as_tensor(load_scene15(split, profile=profile, root=root).targets)


def dataset_image(split: str, profile: str, index: int, root=None) -> torch.Tensor:
    """Image ``index`` of ``split`` as the network sees it: ``(1, 3, 224, 224)``."""
    from featurelab.backbones import preprocessing
    from featurelab.data import load_scene15

    dataset = load_scene15(split, transform=preprocessing("vgg16"), profile=profile, root=root)
    return dataset[index][0].unsqueeze(0)


# ============================================================================================
# The judge (docs/JUDGE.md): probes sent into the grading sandbox, verdicts on the evidence
# the collectors of the hidden tests bring back. Runs in the grading worker, outside the sandbox.

HELD_BACK = 2  # test images (flipped, anonymous PNGs) the notebook's extractor runs on
SPOT_ROWS = 1  # rows of X_train, and of X_test, the judge recomputes (chosen in secret)
ROW_TOLERANCE = 5e-2  # relative error of a feature row vs the judge's (batching, AMP)
OUTPUT_TOLERANCE = 1e-3  # relative error, same input through the same layers
# Shared cache key of the reference VGG16 (other judges may use the same model).


def make_probes(seed: int, profile: str) -> ProbeSet:
    """The inputs the collectors run the student's code on (fresh for every grading run)."""
    from PIL import ImageOps

    from featurelab.data import load_scene15

    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    n, height, width = (int(v) for v in rng.integers((2, 3, 3), (5, 10, 10)))
    arrays["ex1/grey"] = rng.random((n, 1, height, width), dtype=np.float32)
    size = int(rng.choice([96, 128, 160]))  # not 224: the adaptive avgpool must do its job
    arrays["ex2/small"] = rng.standard_normal((1, 3, size, size), dtype=np.float32)
    arrays["ex2/image"] = rng.standard_normal((1, 3, 224, 224), dtype=np.float32)
    rows = rng.standard_normal((int(rng.integers(5, 9)), 32))
    rows *= np.exp(rng.uniform(np.log(1e-3), np.log(1e3), size=(len(rows), 1)))
    rows[int(rng.integers(len(rows)))] = 0.0  # a zero row must stay zero (no NaN)
    arrays["ex4/features"] = rows.astype(np.float32)
    x_train, y_train, x_test, y_test, _ = synthetic_svm_problem(int(rng.integers(2**31)))
    arrays.update(
        {"ex5/X_train": x_train, "ex5/y_train": y_train, "ex5/X_test": x_test, "ex5/y_test": y_test}
    )
    test = load_scene15("test", profile=profile)
    files, names = {}, []
    for number, index in enumerate(
        rng.choice(len(test), size=min(HELD_BACK, len(test)), replace=False)
    ):
        buffer = io.BytesIO()
        ImageOps.mirror(test[int(index)][0].convert("RGB")).save(buffer, format="PNG")
        name = f"heldback/{number}.png"
        files[name] = buffer.getvalue()
        names.append(name)
    return ProbeSet(
        values={"ex4/rows": [int(v) for v in rng.integers(0, 2**20, size=3)], "heldback": names},
        arrays=arrays,
        files=files,
    )


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


def _reference_row(context, split: str, index: int) -> np.ndarray:
    """relu7 feature ``(4096,)`` of image ``index`` of ``split``, by the judge (cached)."""
    key = ("tp3_scene15_svm", "relu7", context.profile, split, index)
    if key not in context.cache:
        image = dataset_image(split, context.profile, index)
        context.cache[key] = (
            reference_relu7_features(reference_model(context), image)[0].double().numpy()
        )
    return context.cache[key]


def _targets(context, split: str) -> np.ndarray:
    return split_targets(split, context.profile).numpy()


def _spot_rows(context, split: str, n: int) -> list[int]:
    """Rows the judge recomputes: drawn from the run's secret seed, never sent in."""
    rng = np.random.default_rng([context.seed, 3, 0 if split == "train" else 1])
    return sorted(int(i) for i in rng.choice(n, size=min(SPOT_ROWS, n), replace=False))


def _check_rows(context, features: np.ndarray, split: str, name: str, *, normalised: bool) -> None:
    for index in _spot_rows(context, split, len(features)):
        expected = _reference_row(context, split, index)
        if normalised:
            expected = expected / max(np.linalg.norm(expected), 1e-12)
        if (
            relative_error(torch.from_numpy(features[index]), torch.from_numpy(expected))
            >= ROW_TOLERANCE
        ):
            raise Failed(
                f"the rows of {name} are not the relu7 features of the {split} images, "
                "in dataset order"
            )


def _held_back_images(probes: ProbeSet) -> torch.Tensor:
    from PIL import Image

    from featurelab.backbones import preprocessing

    transform = preprocessing("vgg16")
    images = []
    for name in probes.values["heldback"]:
        with Image.open(io.BytesIO(probes.files[name])) as image:
            images.append(transform(image.convert("RGB")))
    return torch.stack(images)


def _svc(facts, what: str, c: float, n_classes: int, dim: int) -> dict:
    """The facts a collector recorded about a classifier, checked: a fitted LinearSVC(C=c)."""
    if not isinstance(facts, dict):
        raise Failed(f"{what}: not a classifier")
    kind = facts.get("type")
    if not (
        isinstance(kind, str) and kind.startswith("sklearn.svm.") and kind.endswith(".LinearSVC")
    ):
        raise Failed(f"{what} must be a sklearn.svm.LinearSVC")
    if abs(as_float(facts.get("C"), f"{what}.C") - c) > 1e-12:
        raise Failed(f"{what} must be a LinearSVC with C={c:g}")
    if facts.get("coef") is None or facts.get("intercept") is None or facts.get("classes") is None:
        raise Failed(f"{what} is not fitted")
    coef = as_array(facts["coef"], f"{what}.coef_").astype(np.float64)
    intercept = as_array(facts["intercept"], f"{what}.intercept_").astype(np.float64).ravel()
    classes = as_array(facts["classes"], f"{what}.classes_").ravel()
    rows = 1 if n_classes == 2 else n_classes
    if coef.shape != (rows, dim) or intercept.shape != (rows,) or classes.shape != (n_classes,):
        raise Failed(f"{what} must be trained on {dim}-d features of {n_classes} classes")
    return {"coef": coef, "intercept": intercept, "classes": classes}


def _predict(svc: dict, features: np.ndarray) -> np.ndarray:
    scores = features @ svc["coef"].T + svc["intercept"]
    if scores.shape[1] == 1:
        return svc["classes"][(scores[:, 0] > 0).astype(int)]
    return svc["classes"][scores.argmax(axis=1)]


def judge_to_three_channels(evidence, probes: ProbeSet, context) -> None:
    grey_batch = evidence.array("visible_in", "grey_batch", shape=(2, 1, 4, 5))
    rgb_batch = evidence.array("visible_out", "to_three_channels(grey_batch)", shape=(2, 3, 4, 5))
    if not np.array_equal(rgb_batch, np.repeat(grey_batch, 3, axis=1)):
        raise Failed("each of the three channels must be the grey plane")
    grey = probes.arrays["ex1/grey"]
    n, _, height, width = grey.shape
    out = evidence.array(
        "probe", "to_three_channels on a greyscale batch", shape=(n, 3, height, width)
    )
    if not np.array_equal(out, reference_to_three_channels(torch.from_numpy(grey)).numpy()):
        raise Failed("R, G and B must all equal the grey plane (any batch and image size)")
    if not np.array_equal(evidence.array("probe_after", "the input after the call"), grey):
        raise Failed("to_three_channels must not modify its input")


def judge_vgg16_relu7(evidence, probes: ProbeSet, context) -> None:
    model = reference_model(context)
    _check_same_model(evidence, model)
    image, small = probes.tensor("ex2/image"), probes.tensor("ex2/small")
    expected = _per_run(context, "image", lambda: reference_relu7_features(model, image).numpy())
    twice = evidence.list("extractor_twice", "relu7_extractor on an image")
    if len(twice) != 2:
        raise Failed("relu7_extractor on an image: no result")
    first = as_array(twice[0], "relu7_extractor(images)", shape=(1, RELU7_DIM))
    second = as_array(twice[1], "relu7_extractor(images)", shape=(1, RELU7_DIM))
    if not (first >= 0).all():
        raise Failed("relu7 comes right after a ReLU: no value can be negative")
    if not np.array_equal(first, second):
        raise Failed("two calls on the same images differ: is the extractor in eval mode?")
    shapes = evidence.list("extractor_shapes", "the parameters of relu7_extractor")
    if sum(int(np.prod(s)) for s in shapes) != RELU7_NUM_PARAMS:
        raise Failed("VGG16 minus fc8 has 134,260,544 parameters")
    flags = evidence.list("extractor_training", "the modes of relu7_extractor")
    if not flags or any(flag is not False for flag in flags):
        raise Failed("relu7_extractor is not in eval mode (every submodule, itself included)")
    got = as_array(
        evidence.get("fresh_image", "VGG16relu7(model) on an image"),
        "VGG16relu7(model) on an image",
        shape=(1, RELU7_DIM),
    )
    if relative_error(torch.from_numpy(got), torch.from_numpy(expected)) >= OUTPUT_TOLERANCE:
        raise Failed(
            "output differs from VGG16 cut at relu7 (features, avgpool, flatten, classifier[:-2])"
        )
    got_small = as_array(
        evidence.get("fresh_small", "VGG16relu7(model) on a smaller image"),
        "VGG16relu7(model) on a smaller image",
        shape=(1, RELU7_DIM),
    )
    if (
        relative_error(
            torch.from_numpy(got_small),
            _per_run(context, "small", lambda: reference_relu7_features(model, small)),
        )
        >= OUTPUT_TOLERANCE
    ):
        raise Failed("wrong output on images smaller than 224x224 (avgpool?)")
    if relative_error(torch.from_numpy(first), torch.from_numpy(expected)) >= OUTPUT_TOLERANCE:
        raise Failed("relu7_extractor differs from VGG16 cut at relu7")
    fresh = {int(p) for p in evidence.list("fresh_pointers", "the parameters of VGG16relu7(model)")}
    shared = {int(p) for p in evidence.list("model_pointers", "the parameters of model")}
    if not fresh or not fresh <= shared:
        raise Failed("VGG16relu7 must reuse the layers of the VGG16 it is given (no copy)")
    fresh_shapes = evidence.list("fresh_shapes", "the parameters of VGG16relu7(model)")
    if sum(int(np.prod(s)) for s in fresh_shapes) != RELU7_NUM_PARAMS:
        raise Failed("VGG16relu7 holds the wrong layers")


def judge_extract_features(evidence, probes: ProbeSet, context) -> None:
    for split in ("train", "test"):
        targets = _targets(context, split)
        n = len(targets)
        features = _features(evidence, f"X_{split}", f"X_{split}", (n, RELU7_DIM))
        labels = evidence.array(f"y_{split}", f"y_{split}", shape=(n,))
        if not np.array_equal(labels, targets):
            raise Failed(f"y_{split} must list the labels of the {split} set in dataset order")
        _check_rows(context, features, split, f"X_{split}", normalised=False)


def judge_l2_normalize(evidence, probes: ProbeSet, context) -> None:
    visible = evidence.array("visible", "l2_normalize on the small example", shape=(2, 2))
    if not close(visible, np.array([[0.6, 0.8], [0.0, -1.0]]), rtol=1e-5, atol=1e-6):
        raise Failed("wrong values on the small example [[3, 4], [0, -2]]")
    features = probes.arrays["ex4/features"]
    out = evidence.array("probe", "l2_normalize(features)", shape=features.shape)
    expected = reference_l2_normalize(torch.from_numpy(features).double()).numpy()
    zero = ~features.any(axis=1)
    if not np.isfinite(out).all() or not np.array_equal(out[zero], np.zeros_like(out[zero])):
        raise Failed("a row of zeros must stay zeros (no NaN: guard the division)")
    if not close(out, expected, rtol=1e-4, atol=1e-6):
        raise Failed("each row must be divided by its L2 norm (rows of any scale)")
    if not np.array_equal(evidence.array("probe_after", "the input after the call"), features):
        raise Failed("l2_normalize must not modify its input")
    for split in ("train", "test"):
        norms = evidence.array(f"X_{split}_n_norms", f"the row norms of X_{split}_n").astype(
            np.float64
        )
        if norms.ndim != 1 or not close(norms, np.ones_like(norms), rtol=0.0, atol=1e-4):
            raise Failed(f"rows of X_{split}_n must have norm 1")
        raw = evidence.array(f"X_{split}_rows", f"rows of X_{split}").astype(np.float64)
        normalised = evidence.array(f"X_{split}_n_rows", f"rows of X_{split}_n").astype(np.float64)
        if raw.shape != normalised.shape or not close(
            normalised, reference_l2_normalize(torch.from_numpy(raw)).numpy(), rtol=1e-4, atol=1e-6
        ):
            raise Failed(f"X_{split}_n is not the L2-normalised X_{split}")


def judge_svm_accuracy(evidence, probes: ProbeSet, context) -> None:
    visible = evidence.get("visible_svm", "the classifier on the small example")
    if not isinstance(visible, dict) or not str(visible.get("type", "")).endswith(".LinearSVC"):
        raise Failed("the classifier must be a sklearn.svm.LinearSVC")
    if (
        as_float(
            evidence.get("visible_accuracy", "the accuracy on the small example"),
            "the accuracy on the small example",
        )
        != 0.0
    ):
        raise Failed(
            "all test labels are flipped in the small example: the test accuracy must be 0"
        )
    x_train, y_train = probes.arrays["ex5/X_train"], probes.arrays["ex5/y_train"]
    x_test, y_test = probes.arrays["ex5/X_test"], probes.arrays["ex5/y_test"]
    n_classes = len(np.unique(y_train))
    svc = _svc(
        evidence.get("svm", "svm_accuracy(...)[0]"),
        "the classifier returned by default",
        1.0,
        n_classes,
        x_train.shape[1],
    )
    _svc(
        evidence.get("svm_half", "svm_accuracy(..., C=0.5)[0]"),
        "svm_accuracy(..., C=0.5)",
        0.5,
        n_classes,
        x_train.shape[1],
    )
    accuracy = as_float(evidence.get("accuracy", "svm_accuracy(...)[1]"), "the returned accuracy")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = float(LinearSVC(C=1.0).fit(x_train, y_train).score(x_test, y_test))
    own = float((_predict(svc, x_test.astype(np.float64)) == y_test).mean())
    if abs(accuracy - own) > 1e-9 or abs(accuracy - expected) > 1e-9:
        raise Failed(
            "the returned accuracy must be the classifier's accuracy on the TEST "
            "features and labels"
        )


def judge_scene15_accuracy(evidence, probes: ProbeSet, context) -> None:
    reported = evidence.float("test_accuracy", "test_accuracy")
    if not 0.0 <= reported <= 1.0:
        raise Failed("an accuracy lies in [0, 1]")
    svc = _svc(evidence.get("svm", "svm"), "svm", 1.0, NUM_CLASSES, RELU7_DIM)
    y_train, y_test = _targets(context, "train"), _targets(context, "test")
    x_train = _features(evidence, "X_train_n", "X_train_n", (len(y_train), RELU7_DIM))
    x_test = _features(evidence, "X_test_n", "X_test_n", (len(y_test), RELU7_DIM))
    if not np.array_equal(evidence.array("y_train", "y_train", shape=y_train.shape), y_train):
        raise Failed("y_train must list the labels of the training set in dataset order")
    _check_rows(context, x_train, "train", "X_train_n", normalised=True)
    _check_rows(context, x_test, "test", "X_test_n", normalised=True)
    accuracy = float((_predict(svc, x_test) == y_test).mean())
    context.metric("accuracy", accuracy)
    if abs(accuracy - reported) > 1e-9:
        raise Failed("test_accuracy is not svm's accuracy on the test set")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        refit = float(LinearSVC(C=1.0).fit(x_train, y_train).score(x_test, y_test))
    if abs(accuracy - refit) > max(0.02, 1.5 / len(y_test)):
        raise Failed("svm is not a LinearSVC(C=1) trained on the training features X_train_n")
    model = reference_model(context)
    images = _held_back_images(probes)
    held_back = _features(
        evidence, "heldback", "relu7_extractor on new images", (len(images), RELU7_DIM)
    )
    expected = _per_run(
        context, "heldback", lambda: reference_relu7_features(model, images).double().numpy()
    )
    for got, want in zip(held_back, expected, strict=True):
        if relative_error(torch.from_numpy(got), torch.from_numpy(want)) >= ROW_TOLERANCE:
            raise Failed("relu7_extractor does not give the relu7 features of new images")
    minimum = context.threshold("accuracy")
    if accuracy < minimum:
        raise Failed(f"test accuracy {accuracy:.4f} is below the threshold {minimum:.4f}")


JUDGES = {
    "test_ex1_to_three_channels": judge_to_three_channels,
    "test_ex2_vgg16_relu7": judge_vgg16_relu7,
    "test_ex3_extract_features": judge_extract_features,
    "test_ex4_l2_normalize": judge_l2_normalize,
    "test_ex5_svm_accuracy": judge_svm_accuracy,
    "test_scene15_accuracy": judge_scene15_accuracy,
}
