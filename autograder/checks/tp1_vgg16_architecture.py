"""Reference checks for TP1 (VGG16 architecture): parameter counts and output shapes.

The hidden tests compare the student's functions with the references below on layer
configurations and inputs the notebook never shows, so a hard-coded number cannot pass.
Reference counts come from the layers themselves (``nn.Conv2d``, ``nn.Linear``, torchvision's
VGG builders), instantiated on the ``meta`` device: no memory, no weights, ~10 ms.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchvision import models
from torchvision.models.vgg import cfgs as VGG_CONFIGS

# VGG_CONFIGS: {"A": VGG11, "B": VGG13, "D": VGG16, "E": VGG19}, the lists torchvision builds
# VGGs from (ints: 3x3 convolutions, "M": max-pools).
VGG16_PARAMS = 138_357_544
VGG16_CONV_PARAMS = 14_714_688
VGG16_FC_PARAMS = 123_642_856
VGG16_FC_SHARE = VGG16_FC_PARAMS / VGG16_PARAMS  # 0.8936...

# (in_channels, out_channels, kernel_size, bias)
CONV_CASES: tuple[tuple[int, int, int, bool], ...] = (
    (3, 64, 3, True),
    (16, 32, 5, False),
    (1, 1, 1, True),
    (128, 7, 7, True),
    (64, 64, 3, False),
    (5, 12, 11, True),
)
# (in_features, out_features, bias)
LINEAR_CASES: tuple[tuple[int, int, bool], ...] = (
    (25088, 4096, True),
    (10, 3, False),
    (1, 1, True),
    (4096, 37, True),
    (7, 300, False),
)
# (configuration, num_classes, in_channels): torchvision's VGG11/13/19 and two toy networks.
VGG_CASES: tuple[tuple[list, int, int], ...] = (
    (VGG_CONFIGS["A"], 1000, 3),
    (VGG_CONFIGS["B"], 10, 3),
    (VGG_CONFIGS["E"], 37, 3),
    (VGG_CONFIGS["D"], 2, 3),
    ([8, "M", 16, 16, "M"], 5, 1),
    ([32, 32, "M", "M", 64], 1000, 4),
)

_TORCHVISION_VGG = {"A": models.vgg11, "B": models.vgg13, "D": models.vgg16, "E": models.vgg19}


def count_parameters(module: nn.Module) -> int:
    """Number of scalar parameters of ``module`` (shared tensors counted once, buffers not)."""
    return sum(p.numel() for p in module.parameters())


def vgg16_counts() -> dict[str, int]:
    """``{"total", "conv", "fc"}`` parameter counts of torchvision's VGG16 (built on meta)."""
    with torch.device("meta"):
        model = models.vgg16()
    return {
        "total": count_parameters(model),
        "conv": count_parameters(model.features),
        "fc": count_parameters(model.classifier),
    }


def torchvision_vgg_params(config_key: str, num_classes: int = 1000) -> int:
    """Parameter count of torchvision's VGG for configuration ``"A"``, ``"B"``, ``"D"`` or ``"E"``."""
    with torch.device("meta"):
        model = _TORCHVISION_VGG[config_key](num_classes=num_classes)
    return count_parameters(model)


def probe_modules() -> list[nn.Module]:
    """Small modules whose counts a correct ``count_parameters`` must get right.

    A frozen layer (still counted), a layer without bias, batch norm (buffers are not
    parameters), a layer used twice (counted once), and an empty module.
    """
    frozen = nn.Conv2d(3, 8, 5).requires_grad_(False)
    shared = nn.Linear(6, 6)
    return [
        frozen,
        nn.Linear(20, 9, bias=False),
        nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU()),
        nn.Sequential(shared, nn.ReLU(), shared),
        nn.ReLU(),
    ]


def conv2d_params(in_channels: int, out_channels: int, kernel_size: int, bias: bool = True) -> int:
    """Parameter count of ``nn.Conv2d(in_channels, out_channels, kernel_size, bias=bias)``."""
    layer = nn.Conv2d(in_channels, out_channels, kernel_size, bias=bias, device="meta")
    return count_parameters(layer)


def linear_params(in_features: int, out_features: int, bias: bool = True) -> int:
    """Parameter count of ``nn.Linear(in_features, out_features, bias=bias)``."""
    return count_parameters(nn.Linear(in_features, out_features, bias=bias, device="meta"))


def vgg_params(config: Sequence, num_classes: int = 1000, in_channels: int = 3) -> int:
    """Parameter count of a VGG built from ``config`` (ints: 3x3 conv, ``"M"``: max-pool).

    The classifier is ``Linear(c_last * 7 * 7, 4096) -> Linear(4096, 4096) ->
    Linear(4096, num_classes)`` as in torchvision (whose VGG has ``c_last = 512``).
    """
    layers: list[nn.Module] = []
    channels = in_channels
    with torch.device("meta"):
        for item in config:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(channels, int(item), 3, padding=1), nn.ReLU()]
                channels = int(item)
        layers += [
            nn.Flatten(),
            nn.Linear(channels * 7 * 7, 4096),
            nn.ReLU(),
            nn.Linear(4096, 4096),
            nn.ReLU(),
            nn.Linear(4096, num_classes),
        ]
        return count_parameters(nn.Sequential(*layers))


def _seeded_randn(*shape: int, seed: int = 0, device=None) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=generator).to(device)


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (CPU when it has none)."""
    for parameter in model.parameters():
        return parameter.device
    return torch.device("cpu")


def block_output_shapes(features: nn.Module, images: torch.Tensor) -> list[tuple[int, ...]]:
    """Output shape after each ``nn.MaxPool2d`` of the sequential ``features`` on ``images``."""
    shapes: list[tuple[int, ...]] = []
    x = images
    with torch.inference_mode():
        for layer in features:
            x = layer(x)
            if isinstance(layer, nn.MaxPool2d):
                shapes.append(tuple(x.shape))
    return shapes


def block_probes(model: nn.Module) -> list[tuple[nn.Module, torch.Tensor]]:
    """``(features, images)`` pairs for ``block_output_shapes``: VGG16's own features on another
    image size and batch size, and a toy stack with different pools and paddings."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        toy = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(4, 6, 3),
            nn.MaxPool2d(3),
            nn.Conv2d(6, 5, 1),
        )
    return [
        (model.features, _seeded_randn(2, 3, 96, 96, seed=1, device=model_device(model))),
        (toy, _seeded_randn(1, 3, 40, 40, seed=2)),
    ]


def forward(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``model(images)`` without gradient tracking (the model's mode is left as it is)."""
    with torch.inference_mode():
        return model(images)
