"""The judge's own side of TP4: the probes and the references (issue 14: split out of
``tp4_cats_dogs_mobilenet.py``, which imports every name below that it or a caller uses, so that
``make_probes`` and the rest stay attributes of the judge module, looked up by assignment name).

``make_probes`` draws the probes of every exercise and the held-back images (their features
through our MobileNetV3-Large, their labels kept private); the references are that backbone,
the small probe networks rebuilt from their specs, and one reference training epoch.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np
import torch
from torch import nn

from autograder.checks import (
    reference_network,
)
from autograder.judge import ProbeSet
from featurelab.profiles import get_profile

BACKBONE = "mobilenet_v3_large"
FEATURE_SHAPE = (960, 7, 7)  # model.features on a 224x224 image
PROBE_SEED = 20240  # not the notebook's probe: the check must call the student's module


def probe_images(n: int = 3, size: int = 224, seed: int = PROBE_SEED) -> torch.Tensor:
    """A fixed batch of ``n`` normalised-looking images ``(n, 3, size, size)``."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=generator)


class _ModeRecorder(nn.Module):
    """Identity that records, at every forward, whether it ran in train mode and with autograd."""

    def __init__(self):
        super().__init__()
        self.calls: list[tuple[bool, bool]] = []

    def forward(self, x):
        self.calls.append((self.training, torch.is_grad_enabled()))
        return x


def reference_train_one_epoch(model, loader, loss_fn, optimizer, device) -> float:
    """One epoch of mini-batch training; returns the mean loss over the samples."""
    model.to(device).train()
    total, seen = 0.0, 0
    for inputs, targets in loader:
        inputs, targets = inputs.to(device), targets.to(device)
        logits = model(inputs)
        loss = loss_fn(logits, targets.float().reshape(logits.shape))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item() * targets.shape[0]
        seen += targets.shape[0]
    return total / seen


# --------------------------------------------------------------------------- the probes

HELDOUT_PER_CLASS = {"smoke": 8, "grading": 24, "full": 24}
_PROBE_CACHE: dict = {}  # (what, profile, seed) -> value, for make_probes (no context there)


def _spec(seed: int, layers: list) -> dict:
    return {"seed": int(seed), "sequential": layers}


def _tiny_cnn_spec(seed: int) -> dict:
    """Conv, batch norm (statistics 0/1: train-mode output differs), ReLU, dropout."""
    return _spec(
        seed,
        [
            ["Conv2d", [3, 4, 3], {"padding": 1}],
            ["BatchNorm2d", [4], {}],
            ["ReLU", [], {}],
            ["Dropout", [0.5], {}],
        ],
    )


def _tiny_head_spec(seed: int) -> dict:
    return _spec(
        seed,
        [["Flatten", [], {}], ["Linear", [6, 5], {}], ["ReLU", [], {}], ["Linear", [5, 1], {}]],
    )


def _toy_backbone_spec(seed: int, blocks: int = 6) -> dict:
    block = {"sequential": [["Conv2d", [2, 2, 1], {}], ["BatchNorm2d", [2], {}]]}
    return _spec(seed, [block] * blocks)


TOY_HEAD_SPEC = {"sequential": [["Flatten", [], {}], ["Linear", [2, 1], {}]]}


def _build(spec) -> nn.Module:
    """The module the notebook built from ``spec`` (same seed, same weights); RNG untouched."""
    from featurelab.evidence import build_module

    with torch.random.fork_rng(devices=[]):
        return build_module(spec)


def _reference(profile: str):
    """``(model, preprocess)``: our MobileNetV3-Large (eval mode) and its transforms, built
    once per grading worker (kept in this module, which the worker keeps loaded)."""
    model, weights = reference_network(_PROBE_CACHE, BACKBONE, profile)
    return model, weights.transforms()


def _backbone_features(profile: str, images: torch.Tensor) -> torch.Tensor:
    model, _ = _reference(profile)
    with torch.inference_mode():
        return torch.cat([model.features(images[i : i + 16]) for i in range(0, len(images), 16)])


def _smoke_heldout(rng, per_class: int) -> list[tuple[object, int]]:
    """New images drawn like the PetImages fixture's (Cat: orange horizontal stripes, Dog:
    blue vertical ones), never written to disk: ``[(PIL image, label)]``."""
    import io

    from PIL import Image

    from featurelab.data.fixtures import _JPEG, _coloured_stripes

    images = []
    for label in (0, 1):
        hue0, angle = ((0.07, 90.0), (0.6, 0.0))[label]
        for _ in range(per_class):
            height, width = (int(v) for v in rng.integers(64, 129, size=2))
            hue = hue0 + rng.uniform(-0.03, 0.03)
            pixels = _coloured_stripes(rng, height, width, hue, angle, rng.uniform(8, 16), 0.06)
            buffer = io.BytesIO()
            Image.fromarray(pixels, "RGB").save(buffer, **_JPEG)  # JPEG, as the dataset
            buffer.seek(0)
            images.append((Image.open(buffer).convert("RGB"), label))
    return images


@contextlib.contextmanager
def _profile_as_asked():
    """Lift the grader's ``$FEATURELAB_PROFILE`` / ``$NBGRADER_EXECUTION`` for a moment: they
    outrank a loader's ``profile=`` (so that a notebook cannot pick its own), but the judge,
    running in the grading worker, asks for the whole ``full`` test split on purpose."""
    saved = {
        name: os.environ.pop(name, None) for name in ("FEATURELAB_PROFILE", "NBGRADER_EXECUTION")
    }
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is not None:
                os.environ[name] = value


def _real_heldout(rng, profile: str, per_class: int) -> list[tuple[object, int]]:
    """Test-split PetImages the notebook does not use: outside the grading subset (grading),
    or any test image (full: the head never trains on the test split)."""
    from featurelab.data import load_petimages
    from featurelab.data.loaders import load_rgb

    with _profile_as_asked():  # the grader's profile must not shrink the whole split
        full = load_petimages("test", profile="full", progress=False)
    used = set()
    if get_profile(profile).per_class("petimages", "test") is not None:  # a subset
        used = {path for path, _ in load_petimages("test", profile=profile, progress=False).samples}
    images = []
    for label in (0, 1):
        candidates = [path for path, target in full.samples if target == label and path not in used]
        for index in rng.choice(
            len(candidates), size=min(per_class, len(candidates)), replace=False
        ):
            images.append((load_rgb(candidates[int(index)]), label))
    return images


def heldout(seed: int, profile: str) -> tuple[np.ndarray, np.ndarray]:
    """``(features (N, 960, 7, 7) float32, labels (N,) int64)`` of the run's held-back images."""
    key = ("tp4_cats_dogs_mobilenet", "heldout", profile, seed)
    if key not in _PROBE_CACHE:
        for old in [k for k in _PROBE_CACHE if k[:2] == key[:2]]:
            del _PROBE_CACHE[old]  # one run's seed at a time
        rng = np.random.default_rng([seed, 4])
        per_class = HELDOUT_PER_CLASS.get(profile, 24)
        pairs = (
            _smoke_heldout(rng, per_class)
            if get_profile(profile).fixtures
            else _real_heldout(rng, profile, per_class)
        )
        pairs = [pairs[i] for i in rng.permutation(len(pairs))]  # the order tells nothing
        _, preprocess = _reference(profile)
        images = torch.stack([preprocess(image) for image, _ in pairs])
        features = _backbone_features(profile, images).float().numpy()
        labels = np.array([label for _, label in pairs], dtype=np.int64)
        _PROBE_CACHE[key] = (features, labels)
    return _PROBE_CACHE[key]


def make_probes(seed: int, profile: str):
    """Probes of every exercise; the held-back features (labels kept private)."""

    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(int(rng.integers(2**31)))
    seeds = [int(s) for s in rng.integers(0, 2**31, size=4)]
    arrays: dict[str, torch.Tensor] = {
        "ex1/images": torch.randn(3, 3, 224, 224, generator=generator),
        "ex2/images": torch.randn(10, 3, 8, 8, generator=generator),
        "ex2/labels": torch.from_numpy(rng.permutation([0, 1] * 5).astype(np.int64)),
        "ex4/features": torch.randn(10, 2, 3, generator=generator),
        "ex4/labels": torch.from_numpy(rng.permutation([0, 1] * 5).astype(np.int64)),
    }
    shapes = [None, [512, 7, 7], [8, 2, 3], [int(v) for v in rng.integers(1, 6, size=3)]]
    for i, shape in enumerate(shapes):
        arrays[f"ex3/x{i}"] = torch.randn(3, *(shape or FEATURE_SHAPE), generator=generator)
    # Ex. 5: logits on both sides of 0, some in (0, 0.5) and (-0.5, 0) (a threshold at 0.5 or
    # on the sign of something else fails), never exactly 0.
    logits = np.concatenate(
        [rng.uniform(-6, 6, 6), rng.uniform(1e-3, 0.45, 3), -rng.uniform(1e-3, 0.45, 3)]
    )
    arrays["ex5/logits"] = torch.from_numpy(rng.permutation(logits).astype(np.float32))
    arrays["ex6/logits"] = torch.randn(6, 1, generator=generator) * 2
    arrays["ex6/targets"] = torch.from_numpy(rng.integers(0, 2, size=(6, 1)).astype(np.float32))
    features, labels = heldout(seed, profile)
    arrays["heldout/features"] = torch.from_numpy(features)
    n1, n2 = (int(v) for v in rng.choice(np.arange(1, 6), size=2, replace=False))
    lrs = [float(f"{v:.3g}") for v in 10 ** rng.uniform(-5, -2, size=4)]
    values = {
        "ex2/net": _tiny_cnn_spec(seeds[0]),
        "ex2/batch_size": 4,
        "ex3/shapes": shapes,
        "ex4/net": _tiny_head_spec(seeds[1]),
        "ex4/lr": float(f"{rng.uniform(0.2, 0.6):.3g}"),
        "ex4/momentum": 0.9,
        "ex7/backbone": _toy_backbone_spec(seeds[2]),
        "ex7/head": TOY_HEAD_SPEC,
        # (n_trainable_blocks, backbone_lr, head_lr, backbone trainable beforehand)
        "ex7/cases": [[n1, lrs[0], lrs[1], True], [n2, lrs[2], lrs[3], False]],
    }
    return ProbeSet(
        values=values,
        arrays={k: v.numpy() for k, v in arrays.items()},
        private={"heldout_labels": labels},
    )
