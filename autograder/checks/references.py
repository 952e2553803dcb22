"""Reference implementations of graded exercises (instructor side only, never in `featurelab`).

These used to live in the student package, where a one-line wrapper around them earned the
points of an exercise. The judges (``autograder/checks/<tp>.py``), the benchmarks and the tests
use them; the student edition never contains this file.

* :func:`cut` / :class:`ResNetTrunk`: a backbone up to a cut point (TP3 ex2 ``VGG16relu7``,
  TP5 ex1 fc7 extractor, TP6 ex1 the ResNet-18 trunk);
* :func:`count_parameters` (TP1 ex1);
* :func:`cluster_accuracy` (TP5 ex5, Hungarian matching);
* :func:`predicted_labels` (TP4 ex5).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn
from torchvision import models

from featurelab.backbones import spec


class ResNetTrunk(nn.Sequential):
    """ResNet up to ``layer4`` (no pooling, no fc): ``(N, 3, H, W) -> (N, 512, H/32, W/32)``."""

    def __init__(self, resnet: models.ResNet):
        super().__init__(
            resnet.conv1,
            resnet.bn1,
            resnet.relu,
            resnet.maxpool,
            resnet.layer1,
            resnet.layer2,
            resnet.layer3,
            resnet.layer4,
        )


def cut(model: nn.Module, name: str, point: str) -> nn.Module:
    """The part of backbone ``model`` (named ``name``) up to cut ``point``, sharing its
    parameters (no copy), in eval mode. ``vgg16``/``relu7``: ``(N, 3, 224, 224) -> (N, 4096)``;
    cut points per backbone: ``featurelab.backbones.SPECS[name].cut_points``."""
    bspec = spec(name)
    if point not in bspec.cut_points:
        raise ValueError(
            f"{name} has no cut point {point!r}; choose one of {', '.join(bspec.cut_points)}"
        )
    if point == "logits":
        part: nn.Module = model
    elif name == "vgg16":
        stop = {"pool5": 0, "fc6": 1, "fc7": 4, "relu7": 5}[point]
        part = nn.Sequential(
            model.features, model.avgpool, nn.Flatten(1), *list(model.classifier[:stop])
        )
    elif name == "mobilenet_v3_large":
        part = model.features
    else:  # resnet18 layer4
        part = ResNetTrunk(model)
    return part.eval()


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters of ``module`` (optionally only those requiring grad)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def cluster_accuracy(y_true, y_pred) -> float:
    """Accuracy of a clustering after the best one-to-one matching of clusters to classes
    (Hungarian algorithm on the contingency table); unmatched clusters count as errors."""
    true = np.asarray(y_true.cpu() if hasattr(y_true, "cpu") else y_true).ravel()
    pred = np.asarray(y_pred.cpu() if hasattr(y_pred, "cpu") else y_pred).ravel()
    if true.shape != pred.shape or true.size == 0:
        raise ValueError(f"label arrays of different or empty lengths: {true.shape}, {pred.shape}")
    _, true_idx = np.unique(true, return_inverse=True)
    _, pred_idx = np.unique(pred, return_inverse=True)
    size = max(true_idx.max(), pred_idx.max()) + 1
    contingency = np.zeros((size, size), dtype=np.int64)
    np.add.at(contingency, (pred_idx, true_idx), 1)
    rows, cols = linear_sum_assignment(contingency, maximize=True)
    return float(contingency[rows, cols].sum() / true.size)


def predicted_labels(logits: torch.Tensor) -> torch.Tensor:
    """Class predictions ``(N,)`` from logits ``(N, K)`` (argmax) or ``(N, 1)``/``(N,)`` (> 0)."""
    if logits.ndim == 2 and logits.shape[1] > 1:
        return logits.argmax(dim=1)
    return (logits.reshape(-1) > 0).long()
