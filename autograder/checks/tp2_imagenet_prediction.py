"""Reference checks for TP2 (ImageNet prediction): preprocessing, eval mode, top-k.

Everything here is independent of the weights: the hidden tests compare the student's code
with these references on the same inputs (seeded tensors, scikit-image photos, the student's
own model instance), never with predicted class names, so they hold with random weights.
"""

from __future__ import annotations

import numpy as np
import skimage.data
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from torch import nn
from torchvision.models import VGG16_Weights

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


def probe_images01() -> list[torch.Tensor]:
    """Float images in [0, 1]: seeded random ``(3, H, W)`` and ``(N, 3, H, W)`` tensors and a
    real photo (chelsea, ``(3, 300, 451)``)."""
    chelsea = TF.pil_to_tensor(photo("chelsea")).float() / 255.0
    return [
        torch.rand(3, 8, 6, generator=_generator(0)),
        torch.rand(4, 3, 5, 7, generator=_generator(1)),
        chelsea,
    ]


# ----------------------------------------------------------------------------- preprocessing
def probe_photos() -> list[Image.Image]:
    """PIL images of several sizes and modes: two real photos (one not square), a greyscale
    photo, a small random RGBA image and a small random RGB image."""
    rng = np.random.default_rng(0)
    rgba = Image.fromarray(rng.integers(0, 256, size=(37, 50, 4), dtype=np.uint8), mode="RGBA")
    rgb = Image.fromarray(rng.integers(0, 256, size=(61, 29, 3), dtype=np.uint8), mode="RGB")
    return [photo("chelsea"), photo("coffee"), photo("camera"), rgba, rgb]


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
