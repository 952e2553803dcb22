"""The probes of TP6's judges (issue 14: split out of ``tp6_resnet18_features.py``, which
imports ``make_probes`` back so that it stays an attribute of the judge module, looked up by
assignment name): probe batches, the "other" network's batch-norm state (drawn from the run's
seed), the inputs of Exercises 4 and 5, and the (network, node) cases of Exercises 1 to 3.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from autograder.judge import ProbeSet

# Graph nodes that run once per forward pass (a block's ReLU module runs twice): candidates
# for the extra node of Exercises 2 and 3. No block's bn1/bn2: their output is modified in place
# later in the block (``relu(inplace=True)``, ``out += identity``), so a correct hook that keeps
# the output without cloning it (as Exercise 2 asks) would not see the node's output.
_EXTRA_NODES = (
    "maxpool",
    "layer1.0.conv1",
    "layer1.1",
    "layer2.0.conv2",
    "layer2.1.conv2",
    "layer3.0.downsample.0",
    "layer3.1.conv1",
    "layer4.0",
    "layer4.1.conv1",
)
_BN_NAMES: list[tuple[str, int]] = []
# Cut points of Exercise 1 before layer4 (``ex1/cases``: one of these on "model", then layer2 or
# layer3 on "other").
_EARLY_CUTS = ("relu", "maxpool", "layer1", "layer2", "layer3")


def _bn_layers() -> list[tuple[str, int]]:
    """``(qualified name, channels)`` of ResNet-18's batch norms, in module order."""
    if not _BN_NAMES:
        import torchvision

        with torch.device("meta"):
            net = torchvision.models.resnet18(weights=None)
        _BN_NAMES.extend(
            (name, m.num_features)
            for name, m in net.named_modules()
            if isinstance(m, nn.BatchNorm2d)
        )
    return _BN_NAMES


def make_probes(seed: int, profile: str):
    """Probe batches, the "other" network's batch-norm state, nodes, and Ex. 4/5 inputs."""
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(int(rng.integers(2**31)))
    arrays = {
        "ex1/x224": torch.randn(2, 3, 224, 224, generator=generator),
        "ex1/x160": torch.randn(1, 3, 160, 160, generator=generator),
        "probe/x": torch.randn(1, 3, 128, 128, generator=generator),  # cheap: 5 cases in Ex. 2/3
    }
    _add_bn_state(arrays, generator)
    pairs = _ex4_pairs(rng, generator)
    for i, (x, y) in enumerate(pairs):
        arrays[f"ex4/a{i}"], arrays[f"ex4/b{i}"] = x, y
    maps = _ex5_maps(rng, generator)
    for i, (m, _) in enumerate(maps):
        arrays[f"ex5/maps{i}"] = m
    values = {
        **_node_cases(rng),
        "ex4/pairs": len(pairs),
        "ex5/k": [k for _, k in maps],
    }
    return ProbeSet(values=values, arrays={k: v.numpy() for k, v in arrays.items()})


def _add_bn_state(arrays: dict, generator: torch.Generator) -> None:
    """The "other" network: batch-norm statistics and affine parameters, far from identity."""
    for name, n in _bn_layers():
        arrays[f"bn/{name}.running_mean"] = torch.randn(n, generator=generator) * 0.5
        arrays[f"bn/{name}.running_var"] = torch.rand(n, generator=generator) + 0.5
        arrays[f"bn/{name}.weight"] = torch.randn(n, generator=generator)
        arrays[f"bn/{name}.bias"] = torch.randn(n, generator=generator) * 0.5


def _ex4_pairs(rng, generator: torch.Generator) -> list:
    """Exercise 4: equal-shape pairs, one with a single negative difference, one of opposites."""
    shape = tuple(int(v) for v in rng.integers(2, 6, size=3))
    a = torch.randn(*shape, generator=generator)
    b = a.clone()
    b[tuple(int(rng.integers(0, s)) for s in shape)] -= float(rng.uniform(0.5, 2.0))
    c = torch.randn(int(rng.integers(3, 9)), generator=generator)
    return [(a, b), (b, a), (c, c.clone()), (c, -c)]


def _ex5_maps(rng, generator: torch.Generator) -> list:
    """Exercise 5: post-ReLU-like maps, maps with negative means (|mean| ranks them wrongly),
    and a k equal to the number of channels. Continuous values: the means are distinct."""
    channels = int(rng.integers(8, 16))
    return [
        (torch.rand(512, 7, 7, generator=generator), 64),
        (torch.randn(channels, 4, 6, generator=generator) - 0.2, int(rng.integers(2, 6))),
        (torch.rand(6, 2, 2, generator=generator), 6),
    ]


def _node_cases(rng) -> dict:
    """The cases of Exercises 1 to 3 (network, node), drawn after the Ex. 4/5 inputs."""
    extra2, extra3 = rng.choice(len(_EXTRA_NODES), size=2, replace=False)
    # Exercise 1, output_layer: two cut points before layer4 (one on the "other" network) and a
    # name that is not a top-level child (an inner module's qualified name, or no module at all).
    early, middle = rng.choice(_EARLY_CUTS), rng.choice(["layer2", "layer3"])
    return {
        "ex1/cases": [["model", str(early)], ["other", str(middle)]],
        "ex1/unknown": str(rng.choice(["layer5", "layer3.1", "head", "layer4.0.conv1"])),
        "ex2/cases": [
            ["model", "layer4"],
            ["model", "layer3"],
            ["model", "layer1"],
            ["model", _EXTRA_NODES[extra2]],
            ["other", "layer4"],
        ],
        "ex3/cases": [
            ["model", "layer4"],
            ["model", "layer2"],
            ["model", "layer3.1.conv2"],
            ["model", _EXTRA_NODES[extra3]],
            ["other", "layer4"],
        ],
    }
