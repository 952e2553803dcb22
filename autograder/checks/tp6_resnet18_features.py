"""Reference checks for TP6 (ResNet-18 intermediate features).

The reference features are computed on the student's own model instance (so they hold with
random weights) by running its top-level children in order, which is exactly what
``featurelab.backbones.cut(model, "resnet18", "layer4")`` does, re-implemented here so that a
submission cannot reach the reference through the student package. Inner nodes (e.g.
``layer4.1.conv1``) are read with a forward hook of the reference's own.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

RESNET18_PARAMS = 11_689_512
RESNET18_FC_PARAMS = 513_000  # Linear(512, 1000): 512 * 1000 + 1000
RESNET18_TRUNK_PARAMS = RESNET18_PARAMS - RESNET18_FC_PARAMS  # 11,176,512

# ResNet.forward: conv1, bn1, relu, maxpool, layer1..4, avgpool, flatten, fc.
STAGES = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
# Channels of each stage's output (ResNet-18) and total stride w.r.t. the input.
STAGE_CHANNELS = {"layer1": 64, "layer2": 128, "layer3": 256, "layer4": 512}
STAGE_STRIDE = {"layer1": 4, "layer2": 8, "layer3": 16, "layer4": 32}

# Tolerance of feature comparisons: the three ways run the same kernels on the same inputs,
# so they agree to the bit on a CPU; the slack is for GPU kernels picked per call.
FEATURE_RTOL = 1e-5
FEATURE_ATOL = 1e-5


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (CPU when it has none)."""
    for parameter in model.parameters():
        return parameter.device
    return torch.device("cpu")


def count_parameters(module: nn.Module) -> int:
    """Number of scalar parameters of ``module``."""
    return sum(p.numel() for p in module.parameters())


def probe_batch(model: nn.Module, n: int = 2, size: int = 224, seed: int = 0) -> torch.Tensor:
    """A seeded ``(n, 3, size, size)`` batch on ``model``'s device."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=generator).to(model_device(model))


def perturbed_copy(model: nn.Module, seed: int = 0) -> nn.Module:
    """A deep copy of ``model`` (eval mode) whose batch-norm statistics and affine parameters
    are seeded random numbers, affine weights of both signs.

    A random-initialised ResNet's batch norms are the identity in eval mode (mean 0, var 1,
    weight 1, bias 0), so with the smoke profile's random weights a trunk that calls ``relu``
    before ``bn1`` computes the same numbers as the right one. On this copy it does not: the
    functions under test are also run on it, against the reference on the same copy.
    """
    clone = copy.deepcopy(model).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in clone.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.5)
                module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
                module.weight.copy_(torch.randn(n, generator=generator))
                module.bias.copy_(torch.randn(n, generator=generator) * 0.5)
    return clone


def features_until(model: nn.Module, stage: str, images: torch.Tensor) -> torch.Tensor:
    """Output of top-level stage ``stage`` (``"layer1"`` ... ``"layer4"``) of a torchvision
    ResNet on ``images`` ``(N, 3, H, W)``, computed without gradients."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; choose one of {STAGES}")
    x = images
    with torch.inference_mode():
        for name in STAGES:
            x = getattr(model, name)(x)
            if name == stage:
                return x
    raise AssertionError("unreachable")


def layer4_features(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``(N, 512, H/32, W/32)``: the reference for every way of reading layer4."""
    return features_until(model, "layer4", images)


def node_output(model: nn.Module, node: str, images: torch.Tensor) -> torch.Tensor:
    """Output of submodule ``node`` (a qualified name such as ``"layer4.1.conv1"``) when the
    whole ``model`` runs on ``images``; read with a forward hook, removed afterwards."""
    captured: list[torch.Tensor] = []
    layer = model.get_submodule(node)
    handle = layer.register_forward_hook(lambda _m, _i, output: captured.append(output.clone()))
    try:
        with torch.inference_mode():
            model(images)
    finally:
        handle.remove()
    return captured[0]


def hooks_left(model: nn.Module) -> int:
    """Number of forward (pre-)hooks still registered on ``model`` or its submodules."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def shares_parameters(part: nn.Module, model: nn.Module) -> bool:
    """True when every parameter of ``part`` is a parameter object of ``model`` (no copy)."""
    owned = {id(p) for p in model.parameters()}
    return all(id(p) in owned for p in part.parameters())


def max_abs_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """``max |a - b|`` as a float; ``ValueError`` when the shapes differ."""
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    return float((a.detach().double() - b.detach().double()).abs().max())


def difference_probes() -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Seeded pairs of equal-shape tensors, including negative and one-element differences."""
    generator = torch.Generator().manual_seed(11)
    a = torch.randn(2, 5, 3, 3, generator=generator)
    b = a.clone()
    b[1, 4, 2, 0] -= 0.75  # a single negative difference: |.| is needed
    c = torch.randn(4, generator=generator)
    return [(a, b), (b, a), (c, c.clone()), (c, -c)]


def most_active_channels(maps: torch.Tensor, k: int) -> torch.Tensor:
    """Indices ``(k,)`` of the channels of ``maps`` ``(C, H, W)`` with the largest mean
    activation, in decreasing order."""
    return torch.argsort(maps.detach().cpu().mean(dim=(1, 2)), descending=True)[:k]


def activation_probes() -> list[tuple[torch.Tensor, int]]:
    """Seeded ``(maps (C, H, W), k)`` cases with distinct channel means."""
    generator = torch.Generator().manual_seed(12)
    return [
        (torch.rand(512, 7, 7, generator=generator), 64),
        (torch.randn(10, 4, 6, generator=generator), 3),
        (torch.rand(6, 2, 2, generator=generator), 6),
    ]
