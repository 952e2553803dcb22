"""Reference checks for TP2 (ImageNet prediction): preprocessing, eval mode, top-k.

Everything here is independent of the weights: the hidden tests compare the student's code
with these references on the same inputs (seeded tensors, scikit-image photos, the student's
own model instance), never with predicted class names, so they hold with random weights.
"""

from __future__ import annotations

import io

import numpy as np
import skimage.data
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch import nn
from torchvision.models import VGG16_Weights

from autograder.checks import reference_network
from autograder.judge import Failed, ProbeSet, as_array, check_value, close, relative_error

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Accepted gap between the student's squash-resize pipeline and the reference, in normalised
# units: PIL's bilinear resize (the one the notebook asks for) and torch's antialiased tensor
# resize differ by at most ~0.018 on the scikit-image photos; a missing /255, a missing or
# wrong normalisation, swapped channels or a crop instead of a squash are off by > 0.2.
PREPROCESS_ATOL = 0.03


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (CPU when it has none)."""
    for parameter in model.parameters():
        return parameter.device
    return torch.device("cpu")


# ----------------------------------------------------------------------------- normalisation
def normalize(images: torch.Tensor) -> torch.Tensor:
    """``(x - mean) / std`` per channel for ``(3, H, W)`` or ``(N, 3, H, W)`` images in [0, 1]."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=images.dtype, device=images.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=images.dtype, device=images.device).view(3, 1, 1)
    return (images - mean) / std


def photo(name: str) -> Image.Image:
    """A scikit-image sample photo (shipped inside the wheel) as a PIL image."""
    return Image.fromarray(getattr(skimage.data, name)())


def preprocess(image: Image.Image, size: int = 224) -> torch.Tensor:
    """RGB, PIL bilinear resize to ``size x size``, [0, 1], ImageNet normalisation."""
    resized = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    return normalize(TF.pil_to_tensor(resized).float() / 255.0)


def preprocess_center_crop(
    image: Image.Image, resize_size: int = 256, crop_size: int = 224
) -> torch.Tensor:
    """``weights.transforms()`` (torchvision's ImageClassification preset) on the RGB image."""
    preset = VGG16_Weights.IMAGENET1K_V1.transforms(crop_size=crop_size, resize_size=resize_size)
    return preset(image.convert("RGB"))


# ----------------------------------------------------------------------------- eval mode
def all_in_eval_mode(model: nn.Module) -> bool:
    """True when no submodule of ``model`` is in training mode."""
    return not any(module.training for module in model.modules())


def probe_batch(model: nn.Module, size: int = 64) -> torch.Tensor:
    """A seeded ``(1, 3, size, size)`` batch on ``model``'s device (VGG16 accepts 64x64)."""
    return torch.randn(1, 3, size, size, generator=_generator(7)).to(model_device(model))


def forward(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``model(images)`` without gradient tracking; the model's mode is left as it is."""
    with torch.inference_mode():
        return model(images)


# ----------------------------------------------------------------------------- top-k
def top_k(logits: torch.Tensor, categories: list[str], k: int = 5) -> list[tuple[str, float]]:
    """The ``k`` most probable ``(category, probability)`` pairs of ``(C,)`` logits."""
    probabilities = torch.softmax(logits.detach().cpu().double(), dim=-1)
    values, indices = torch.topk(probabilities, k)
    return [
        (categories[i], float(p)) for p, i in zip(values.tolist(), indices.tolist(), strict=True)
    ]


def probe_logits(categories: list[str]) -> list[tuple[torch.Tensor, list[str], int]]:
    """``(logits (C,), categories, k)`` cases: seeded ImageNet-sized logits with k = 5, 1, 10
    (medium, small and large spreads: logits above 88 overflow a naive ``exp`` in float32),
    and a 7-class toy problem with k = 7 (probabilities sum to 1)."""
    imagenet = torch.randn(len(categories), generator=_generator(3)) * 4.0
    flat = torch.randn(len(categories), generator=_generator(4)) * 0.1
    confident = torch.randn(len(categories), generator=_generator(6)) * 40.0
    toy = torch.randn(7, generator=_generator(5)) * 2.0
    toy_names = [f"class_{i}" for i in range(7)]
    return [
        (imagenet, list(categories), 5),
        (imagenet, list(categories), 1),
        (flat, list(categories), 10),
        (confident, list(categories), 5),
        (toy, toy_names, 7),
    ]


# --------------------------------------------------------------------------------------------
# Judges (run outside the grading sandbox; see docs/JUDGE.md). The hidden regions of the
# notebook's test cells are collectors: they call the student's functions on the probes below
# and record the results; the judges compare them with the references above.

PHOTO_NAMES = ("chelsea", "coffee", "astronaut", "rocket")  # the notebook's four photos
EVAL_RELATIVE_ERROR = 1e-3  # float noise across thread counts is ~1e-6; dropout is ~1


def _png(image: Image.Image) -> bytes:
    stream = io.BytesIO()
    image.save(stream, format="PNG")
    return stream.getvalue()


def _crop(rng: np.random.Generator, pixels: np.ndarray, low: int, high: int) -> np.ndarray:
    """A random crop of ``pixels`` (H, W[, C]) with sides in [low, high]."""
    h = int(rng.integers(low, min(high, pixels.shape[0]) + 1))
    w = int(rng.integers(low, min(high, pixels.shape[1]) + 1))
    top = int(rng.integers(0, pixels.shape[0] - h + 1))
    left = int(rng.integers(0, pixels.shape[1] - w + 1))
    return np.ascontiguousarray(pixels[top : top + h, left : left + w])


def _logits_without_ties(rng: np.random.Generator, size: int, scale: float, k: int) -> np.ndarray:
    """Seeded ``(size,)`` logits whose k + 1 largest probabilities are clearly apart (so the
    order of the top k is the same in float32 and float64)."""
    while True:
        logits = (rng.normal(size=size) * scale).astype(np.float32)
        probabilities = torch.softmax(torch.from_numpy(logits).double(), dim=0).numpy()
        top = np.sort(probabilities)[::-1][: k + 1]
        if np.all(np.diff(top) < -1e-4 * top[1:]):
            return logits


def _ints(rng: np.random.Generator, low: int, high: int) -> int:
    """A seeded int in [low, high]."""
    return int(rng.integers(low, high + 1))


def make_probes(seed: int, profile: str) -> ProbeSet:
    """Seeded probes: images for normalize, PNG files (several modes and sizes) for the two
    preprocessing functions, a batch for the eval-mode check, logits for top_k."""
    rng = np.random.default_rng(seed)
    arrays = _image_arrays(rng)
    files = _png_files(rng)
    resize = _ints(rng, 64, 200)
    # ex5: (logits, names, k) cases: the visible toy example, ImageNet-sized logits with
    # medium / small / large spreads (above 88 a naive float32 exp overflows) and k = 5 (also
    # as the default), 1, 10, and a small toy problem with k = C (probabilities sum to 1).
    imagenet = list(VGG16_Weights.IMAGENET1K_V1.meta["categories"])
    c = _ints(rng, 5, 20)
    arrays.update(_ex5_logits(rng, c))
    values = {
        "ex2/files": list(files),
        "ex2/args": [[], [_ints(rng, 32, 160)]],
        "ex3/files": list(files),
        "ex3/photos": list(PHOTO_NAMES),
        "ex3/args": [[], [resize, _ints(rng, 32, resize)], [80, 64]],
        "ex5/cases": _ex5_cases(c),
        "ex5/abcd": ["a", "b", "c", "d"],
        "ex5/imagenet": imagenet,
        "ex5/toy": [f"class_{int(i)}" for i in rng.permutation(10 * c)[:c]],
    }
    return ProbeSet(values=values, arrays=arrays, files=files)


def _image_arrays(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Ex. 1: the visible test's mean colour and white batch, then seeded images in [0, 1]
    (one a crop of a notebook photo); ex. 4: a batch for two passes of the model."""
    mean = np.asarray(IMAGENET_MEAN, dtype=np.float32).reshape(3, 1, 1)
    photo_name = str(rng.choice(PHOTO_NAMES))
    return {
        "ex1/visible_mean": np.broadcast_to(mean, (3, 4, 5)).copy(),
        "ex1/visible_white": np.ones((2, 3, 4, 5), dtype=np.float32),
        "ex1/image": rng.random((3, _ints(rng, 4, 40), _ints(rng, 4, 40)), dtype=np.float32),
        "ex1/batch": rng.random(
            (_ints(rng, 2, 5), 3, _ints(rng, 4, 30), _ints(rng, 4, 30)), dtype=np.float32
        ),
        "ex1/photo": (
            _crop(rng, getattr(skimage.data, photo_name)(), 16, 80)
            .transpose(2, 0, 1)
            .astype(np.float32)
            / 255.0
        ),
        # VGG16 accepts 64x64 and more
        "ex4/images": rng.normal(size=(1, 3, _ints(rng, 64, 96), _ints(rng, 64, 96))).astype(
            np.float32
        ),
    }


def _png_files(rng: np.random.Generator) -> dict[str, bytes]:
    """Ex. 2 / 3: PNG files in a seeded order: crops of real photos (RGB and greyscale),
    random RGBA and RGB images, and the visible test's white greyscale and ImageNet-mean
    images."""
    images = [
        Image.fromarray(_crop(rng, skimage.data.chelsea(), 80, 300)),
        Image.fromarray(_crop(rng, skimage.data.coffee(), 80, 300)),
        Image.fromarray(_crop(rng, skimage.data.camera(), 60, 200)),  # mode L
        Image.fromarray(
            rng.integers(0, 256, size=(_ints(rng, 20, 80), _ints(rng, 20, 80), 4), dtype=np.uint8),
            mode="RGBA",
        ),
        Image.fromarray(
            rng.integers(0, 256, size=(_ints(rng, 20, 80), _ints(rng, 20, 80), 3), dtype=np.uint8),
            mode="RGB",
        ),
        Image.new("L", (40, 30), color=255),
        Image.new("RGB", (50, 20), color=tuple(round(255 * m) for m in IMAGENET_MEAN)),
    ]
    order = rng.permutation(len(images))
    return {
        f"img{i}_{int(rng.integers(1 << 30))}.png": _png(images[j]) for i, j in enumerate(order)
    }


def _ex5_logits(rng: np.random.Generator, c: int) -> dict[str, np.ndarray]:
    """Ex. 5: the visible example's logits, ImageNet-sized logits with medium, small and large
    spreads, and the logits of a ``c``-class toy problem (top-k order free of ties)."""
    return {
        "ex5/visible": np.log(np.asarray([1.0, 2.0, 3.0, 4.0], dtype=np.float32)),
        "ex5/medium": _logits_without_ties(rng, 1000, 4.0, 5),
        "ex5/flat": _logits_without_ties(rng, 1000, 0.1, 10),
        "ex5/confident": _logits_without_ties(rng, 1000, 40.0, 5),
        "ex5/toy": _logits_without_ties(rng, c, 2.0, c - 1),
    }


def _ex5_cases(c: int) -> list[dict]:
    """Ex. 5: the ``top_k`` calls, each naming its logits, its class names and its kwargs
    (``k = c`` on the toy problem)."""
    return [
        {"logits": "visible", "names": "ex5/abcd", "kwargs": {"k": 2}},
        {"logits": "medium", "names": "ex5/imagenet", "kwargs": {}},
        {"logits": "medium", "names": "ex5/imagenet", "kwargs": {"k": 1}},
        {"logits": "flat", "names": "ex5/imagenet", "kwargs": {"k": 10}},
        {"logits": "confident", "names": "ex5/imagenet", "kwargs": {"k": 5}},
        {"logits": "toy", "names": "ex5/toy", "kwargs": {"k": c}},
    ]


def reference_vgg16(context) -> nn.Module:
    """The VGG16 the notebook loads in this profile, built once per worker (shared by TP1-TP5)."""
    return reference_network(context.cache, "vgg16", context.profile)[0]


def _digest(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _memo(context, key, compute):
    """``compute()``, memoised per worker: every notebook of a batch gets the same probes, so
    the references (model outputs, preprocessed images) are computed once per batch."""
    memo = context.cache.setdefault(("tp2", "references"), {})
    if key not in memo:
        if len(memo) >= 256:
            memo.clear()
        memo[key] = compute()
    return memo[key]


def reference_logits(context, images: torch.Tensor) -> np.ndarray:
    """``reference_vgg16(images)`` in eval mode, memoised on the bytes of ``images``."""

    def compute() -> np.ndarray:
        with torch.inference_mode():
            return reference_vgg16(context)(images).numpy()

    key = ("logits", context.profile, tuple(images.shape), _digest(images.numpy().tobytes()))
    return _memo(context, key, compute)


def _probe_image(probes: ProbeSet, name: str) -> Image.Image:
    with Image.open(io.BytesIO(probes.files[name])) as image:
        return image.copy()


def _describe(image: Image.Image) -> str:
    return f"a {image.mode} image of {image.size[0]}x{image.size[1]}"


def _check_image_tensor(value, expected: torch.Tensor, what: str) -> None:
    result = as_array(value, what)
    if result.dtype != np.float32:
        raise Failed(f"{what}: expected a float32 tensor, got {result.dtype}")
    if tuple(result.shape) != tuple(expected.shape):
        raise Failed(f"{what}: expected shape {tuple(expected.shape)}, got {tuple(result.shape)}")
    if not close(result, expected.numpy(), rtol=0.0, atol=PREPROCESS_ATOL):
        raise Failed(f"{what}: wrong values")


def judge_normalize(evidence, probes: ProbeSet, context) -> None:
    outputs = evidence.get("normalized", "normalize on the probes")
    inputs = evidence.get("inputs_after", "the probes after normalize")
    names = sorted(k[len("ex1/") :] for k in probes.arrays if k.startswith("ex1/"))
    if not isinstance(outputs, dict) or not isinstance(inputs, dict) or sorted(outputs) != names:
        raise Failed("normalize on the probes: results are missing")
    for name in names:
        original = probes.arrays[f"ex1/{name}"]
        what = f"normalize(images of shape {original.shape})"
        result = as_array(outputs[name], what)
        expected = normalize(torch.from_numpy(original.copy())).numpy()
        if tuple(result.shape) != expected.shape:
            raise Failed(f"{what}: expected shape {expected.shape}, got {tuple(result.shape)}")
        if not close(result, expected, rtol=1e-5, atol=1e-5):
            raise Failed(f"{what}: wrong values ((x - mean) / std per channel)")
        after = as_array(inputs.get(name), "the input of normalize")
        if after.shape != original.shape or not np.array_equal(after, original):
            raise Failed("normalize must not modify its input")


def judge_preprocess(evidence, probes: ProbeSet, context) -> None:
    files, calls = probes.values["ex2/files"], probes.values["ex2/args"]
    results = evidence.list("results", "preprocess on the probe images")
    if len(results) != len(files):
        raise Failed("preprocess on the probe images: results are missing")
    for name, row in zip(files, results, strict=True):
        image = _probe_image(probes, name)
        if not isinstance(row, list) or len(row) != len(calls):
            raise Failed("preprocess on the probe images: results are missing")
        for args, value in zip(calls, row, strict=True):
            size = args[0] if args else 224
            expected = _memo(
                context,
                ("preprocess", _digest(probes.files[name]), size),
                lambda image=image, size=size: preprocess(image, size),
            )
            _check_image_tensor(value, expected, f"preprocess({_describe(image)}, size={size})")


def judge_center_crop(evidence, probes: ProbeSet, context) -> None:
    photos = evidence.list("photos", "preprocess_center_crop on the four photos")
    if len(photos) != len(probes.values["ex3/photos"]):
        raise Failed("preprocess_center_crop on the four photos: results are missing")
    for name, value in zip(probes.values["ex3/photos"], photos, strict=True):
        expected = _memo(
            context, ("photo", name), lambda name=name: preprocess_center_crop(photo(name))
        )
        _check_image_tensor(
            value, expected, f"preprocess_center_crop({name}): differs from weights.transforms()"
        )
    files, calls = probes.values["ex3/files"], probes.values["ex3/args"]
    results = evidence.list("results", "preprocess_center_crop on the probe images")
    if len(results) != len(files):
        raise Failed("preprocess_center_crop on the probe images: results are missing")
    for name, row in zip(files, results, strict=True):
        image = _probe_image(probes, name)
        if not isinstance(row, list) or len(row) != len(calls):
            raise Failed("preprocess_center_crop on the probe images: results are missing")
        for args, value in zip(calls, row, strict=True):
            resize_size, crop_size = args or (256, 224)
            expected = _memo(
                context,
                ("center_crop", _digest(probes.files[name]), resize_size, crop_size),
                lambda image=image, r=resize_size, c=crop_size: preprocess_center_crop(image, r, c),
            )
            _check_image_tensor(
                value,
                expected,
                f"preprocess_center_crop({_describe(image)}, {resize_size}, {crop_size})",
            )


def judge_eval_experiment(evidence, probes: ProbeSet, context) -> None:
    names = (
        "train_out_1",
        "train_out_2",
        "frozen_out_1",
        "frozen_out_2",
        "eval_out_1",
        "eval_out_2",
    )
    outputs = {name: evidence.array(name, shape=(1, 1000)) for name in names}
    grads = evidence.get("requires_grad", "the outputs' requires_grad")
    if not isinstance(grads, dict) or sorted(grads) != sorted(names):
        raise Failed("the outputs' requires_grad: results are missing")
    grads = {name: check_value(grads[name], f"{name}.requires_grad") for name in names}
    if np.array_equal(outputs["train_out_1"], outputs["train_out_2"]):
        raise Failed("in training mode, dropout makes two passes differ")
    if np.array_equal(outputs["frozen_out_1"], outputs["frozen_out_2"]):
        raise Failed("requires_grad_(False) does not switch dropout off")
    if not np.array_equal(outputs["eval_out_1"], outputs["eval_out_2"]):
        raise Failed("in eval mode two passes are identical")
    if grads["train_out_1"] is not True or grads["train_out_2"] is not True:
        raise Failed("train_out_* come before requires_grad_(False): they require grad")
    if grads["frozen_out_1"] is not False or grads["frozen_out_2"] is not False:
        raise Failed("requires_grad_(False) stops gradient tracking (frozen_out_* come after it)")
    if evidence.get("any_training", "the mode of the model's submodules") is not False:
        raise Failed(
            "every submodule must be in eval mode (model.eval(), not model.training = False)"
        )
    images = torch.from_numpy(probes.arrays["ex4/images"].copy())
    passes = evidence.list("probe_passes", "two passes of the model on another batch")
    if len(passes) != 2:
        raise Failed("two passes of the model on another batch: results are missing")
    first, second = (as_array(p, "model(images)") for p in passes)
    expected = reference_logits(context, images)
    if not np.array_equal(first, second) or relative_error(first, expected) >= EVAL_RELATIVE_ERROR:
        raise Failed("the model must be left in eval mode: two passes must be identical")
    x = _memo(
        context, ("photo", "chelsea"), lambda: preprocess_center_crop(photo("chelsea"))
    ).unsqueeze(0)  # the notebook's x
    expected = reference_logits(context, x)
    if relative_error(outputs["eval_out_1"], expected) >= EVAL_RELATIVE_ERROR:
        raise Failed("eval_out_1 must be model(x) in eval mode")
    for name in names[:4]:
        if close(outputs[name], outputs["eval_out_1"], rtol=1e-4, atol=1e-4):
            raise Failed("training-mode outputs must come from training mode")


def _top_k_result(value, what: str) -> tuple[list[str], list[float]]:
    value = check_value(value, what)
    if not isinstance(value, list):
        raise Failed(f"{what}: expected a list of (class name, probability) pairs")
    names, probabilities = [], []
    for pair in value:
        if not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[0], str):
            raise Failed(f"{what}: expected a list of (class name, probability) pairs")
        if not isinstance(pair[1], float):
            raise Failed("probabilities must be Python floats")
        names.append(pair[0])
        probabilities.append(pair[1])
    return names, probabilities


def judge_top_k(evidence, probes: ProbeSet, context) -> None:
    cases = probes.values["ex5/cases"]
    results = evidence.list("results", "top_k on the probe logits")
    if len(results) != len(cases):
        raise Failed("top_k on the probe logits: results are missing")
    for case, value in zip(cases, results, strict=True):
        k = case["kwargs"].get("k", 5)
        logits = torch.from_numpy(probes.arrays[f"ex5/{case['logits']}"].copy())
        categories = probes.values[case["names"]]
        what = f"top_k(logits of {len(categories)} classes, k={k})"
        names, probabilities = _top_k_result(value, what)
        expected = top_k(logits, categories, k)
        if len(names) != k:
            raise Failed(f"{what}: expected {k} pairs, got {len(names)}")
        if names != [name for name, _ in expected]:
            raise Failed(f"{what}: wrong classes (or not the most probable first)")
        if not close(probabilities, [p for _, p in expected], rtol=1e-4, atol=1e-6):
            raise Failed(f"{what}: wrong probabilities (softmax over all the logits)")
        if probabilities != sorted(probabilities, reverse=True) or sum(probabilities) > 1 + 1e-5:
            raise Failed(f"{what}: probabilities must be sorted, most probable first")


JUDGES = {
    "test_ex1_normalize": judge_normalize,
    "test_ex2_preprocess": judge_preprocess,
    "test_ex3_center_crop": judge_center_crop,
    "test_ex4_eval_experiment": judge_eval_experiment,
    "test_ex5_top_k": judge_top_k,
}
