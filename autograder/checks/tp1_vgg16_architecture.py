"""Reference checks for TP1 (VGG16 architecture): parameter counts and output shapes.

The hidden tests compare the student's functions with the references below on layer
configurations and inputs the notebook never shows, so a hard-coded number cannot pass.
Reference counts come from the layers themselves (``nn.Conv2d``, ``nn.Linear``, torchvision's
VGG builders), instantiated on the ``meta`` device: no memory, no weights, ~10 ms.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torchvision import models
from torchvision.models.vgg import cfgs as VGG_CONFIGS

from autograder.checks import reference_network
from autograder.judge import Failed, ProbeSet, as_float, as_int, relative_error

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


def forward(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``model(images)`` without gradient tracking (the model's mode is left as it is)."""
    with torch.inference_mode():
        return model(images)


# --------------------------------------------------------------------------------------------
# Judges (run outside the grading sandbox; see docs/JUDGE.md). The hidden regions of the
# notebook's test cells are collectors: they call the student's functions on the probes below
# and record the results; the judges compare them with the references above.

EX6_RELATIVE_ERROR = 1e-3  # float noise across thread counts is ~1e-6; a wrong pass is ~1


def _module_count(spec) -> int:
    from featurelab.evidence import build_module

    with torch.device("meta"):
        return count_parameters(build_module(spec))


def _random_config(rng: np.random.Generator) -> list:
    """A small VGG-like configuration: 3x3 convolutions (ints) and max-pools ("M")."""
    config: list = []
    for _ in range(int(rng.integers(3, 9))):
        if config and config[-1] != "M" and rng.random() < 0.3:
            config.append("M")
        else:
            config.append(int(rng.choice([4, 8, 16, 24, 32, 64, 128])))
    if all(item == "M" for item in config):
        config.append(8)
    return config


def _ints(rng: np.random.Generator, low: int, high: int) -> int:
    """A seeded int in [low, high]."""
    return int(rng.integers(low, high + 1))


def make_probes(seed: int, profile: str) -> ProbeSet:
    """Seeded probes for every test cell (layer sizes, configurations, toy networks, inputs)."""
    rng = np.random.default_rng(seed)
    plain, frozen, shared = _ex1_modules(rng)
    conv, linear = _ex3_layers(rng)
    vgg_cases = _ex4_cases(rng)
    toy, c0 = _ex5_toy(rng)
    arrays = {
        "ex5/vgg": rng.normal(
            size=(_ints(rng, 1, 3), 3, _ints(rng, 32, 120), _ints(rng, 32, 120))
        ).astype(np.float32),
        "ex5/toy": rng.normal(
            size=(_ints(rng, 1, 3), c0, _ints(rng, 40, 72), _ints(rng, 40, 72))
        ).astype(np.float32),
    }
    values = {
        "ex1/plain": plain,
        "ex1/frozen": frozen,
        "ex1/shared": shared,
        "ex3/conv": conv,
        "ex3/linear": linear,
        "ex4/vgg16": list(VGG_CONFIGS["D"]),
        "ex4/cases": vgg_cases,
        "ex5/toy": [toy],
    }
    return ProbeSet(values=values, arrays=arrays)


def _ex1_modules(rng: np.random.Generator) -> tuple[list, list, list]:
    """Ex. 1: ``(plain, frozen, shared)`` module specs, built from data in the sandbox; the
    collector freezes the "frozen" ones and uses each "shared" one twice in a Sequential (a
    shared layer is counted once)."""
    c = _ints(rng, 2, 12)
    plain = [
        ["Linear", [_ints(rng, 2, 60), _ints(rng, 2, 60)], {"bias": False}],
        {
            "sequential": [
                ["Conv2d", [_ints(rng, 1, 6), c, _ints(rng, 1, 5)], {}],
                ["BatchNorm2d", [c], {}],
                ["ReLU", [], {}],
            ]
        },
        [
            "Conv2d",
            [_ints(rng, 1, 40), _ints(rng, 1, 40), _ints(rng, 1, 7)],
            {"bias": bool(rng.random() < 0.5)},
        ],
        ["BatchNorm1d", [_ints(rng, 2, 50)], {}],
        ["ReLU", [], {}],
    ]
    n = _ints(rng, 2, 30)
    frozen = [["Conv2d", [_ints(rng, 1, 8), _ints(rng, 1, 16), _ints(rng, 1, 7)], {}]]
    shared = [["Linear", [n, n], {}]]
    return plain, frozen, shared


def _ex3_layers(rng: np.random.Generator) -> tuple[list, list]:
    """Ex. 3: ``(conv, linear)`` cases, ``[in, out, kernel, bias]`` and ``[in, out, bias]``;
    the visible cases first."""
    conv = [[3, 64, 3, True], [64, 64, 3, True], [3, 64, 3, False], [1, 1, 1, True]]
    conv += [
        [_ints(rng, 1, 512), _ints(rng, 1, 512), _ints(rng, 1, 11), bool(rng.random() < 0.5)]
        for _ in range(5)
    ]
    linear = [[4096, 1000, True], [4096, 1000, False], [1, 1, True]]
    linear += [
        [_ints(rng, 1, 30000), _ints(rng, 1, 5000), bool(rng.random() < 0.5)] for _ in range(5)
    ]
    return conv, linear


def _ex4_cases(rng: np.random.Generator) -> list:
    """Ex. 4: ``[configuration, num_classes, in_channels]`` cases: VGG16 as in the visible
    test, torchvision's VGG11/13/19, and small random networks."""
    vgg_cases = [[list(VGG_CONFIGS["D"]), 1000, 3], [list(VGG_CONFIGS["D"]), 10, 3]]
    vgg_cases += [[list(VGG_CONFIGS[key]), _ints(rng, 2, 2000), 3] for key in "ABE"]
    vgg_cases += [[_random_config(rng), _ints(rng, 1, 1500), _ints(rng, 1, 4)] for _ in range(3)]
    return vgg_cases


def _ex5_toy(rng: np.random.Generator) -> tuple[dict, int]:
    """Ex. 5: a toy stack of convolutions and max-pools (besides VGG16's features on another
    batch and image size), and its number of input channels."""
    c0, c1, c2 = _ints(rng, 1, 4), _ints(rng, 2, 8), _ints(rng, 2, 8)
    k0 = int(rng.choice([1, 3, 5]))
    toy = {
        "seed": _ints(rng, 0, 10_000),
        "sequential": [
            ["Conv2d", [c0, c1, k0], {"padding": k0 // 2}],
            ["ReLU", [], {}],
            ["MaxPool2d", [2], {}],
            ["Conv2d", [c1, c2, int(rng.choice([1, 3]))], {}],
            ["MaxPool2d", [3], {"stride": int(rng.choice([2, 3]))}],
            ["Conv2d", [c2, _ints(rng, 1, 6), 1], {}],
            ["MaxPool2d", [2], {}],
        ],
    }
    return toy, c0


def reference_vgg16(context) -> nn.Module:
    """The VGG16 the notebook loads in this profile, built once per worker (shared by TP1-TP5)."""
    return reference_network(context.cache, "vgg16", context.profile)[0]


def reference_logits(context, images: np.ndarray) -> np.ndarray:
    """``reference_vgg16(images)``, memoised per worker on the bytes of ``images`` (every
    notebook of a batch sends the same seeded probe batch: one forward pass per worker)."""
    import hashlib

    memo = context.cache.setdefault(("tp1", "logits"), {})
    key = (context.profile, images.shape, hashlib.sha256(images.tobytes()).hexdigest())
    if key not in memo:
        if len(memo) >= 8:
            memo.clear()
        with torch.inference_mode():
            memo[key] = reference_vgg16(context)(torch.from_numpy(images.copy())).numpy()
    return memo[key]


def _same_count(value, expected: int, what: str) -> bool:
    return as_float(value, what) == expected


def judge_count_parameters(evidence, probes: ProbeSet, context) -> None:
    visible = evidence.list("visible", "count_parameters on the examples of the visible test")
    for value, expected, what in zip(
        visible,
        (8, 10, 0),
        ("nn.Linear(3, 2)", "nn.Conv2d(1, 1, kernel_size=3)", "nn.ReLU()"),
        strict=True,
    ):
        if not _same_count(value, expected, f"count_parameters({what})"):
            raise Failed(f"count_parameters({what}) is wrong")
    model_count = as_int(
        evidence.get("model_count", "count_parameters(model)"), "count_parameters(model)"
    )
    if model_count != VGG16_PARAMS:
        raise Failed("count_parameters(model) is not VGG16's number of parameters")
    specs = probes.values["ex1/plain"] + probes.values["ex1/frozen"] + probes.values["ex1/shared"]
    kinds = (
        ["a module"] * len(probes.values["ex1/plain"])
        + ["a frozen layer (requires_grad False)"] * len(probes.values["ex1/frozen"])
        + ["a layer used twice in a Sequential"] * len(probes.values["ex1/shared"])
    )
    results = evidence.list("probes", "count_parameters on other modules")
    if len(results) != len(specs):
        raise Failed("count_parameters on other modules: results are missing")
    for value, spec, kind in zip(results, specs, kinds, strict=True):
        if not _same_count(value, _module_count(spec), "count_parameters(module)"):
            raise Failed(
                f"count_parameters is wrong on {kind} (count every parameter once, "
                "trainable or frozen; buffers are not parameters)"
            )


def judge_conv_fc_split(evidence, probes: ProbeSet, context) -> None:
    conv = as_int(evidence.get("conv_params"), "conv_params")
    fc = as_int(evidence.get("fc_params"), "fc_params")
    share = as_float(evidence.get("fc_share"), "fc_share")
    counts = vgg16_counts()
    if conv + fc != counts["total"]:
        raise Failed("the two parts must cover every parameter of VGG16")
    if conv != counts["conv"] or fc != counts["fc"]:
        raise Failed("conv_params must count model.features and fc_params model.classifier")
    if abs(share - counts["fc"] / counts["total"]) > 1e-6:
        raise Failed("fc_share must be fc_params / total_params")


def judge_layer_params(evidence, probes: ProbeSet, context) -> None:
    conv = evidence.list("conv", "conv2d_params on the probes")
    linear = evidence.list("linear", "linear_params on the probes")
    if len(conv) != len(probes.values["ex3/conv"]) or len(linear) != len(
        probes.values["ex3/linear"]
    ):
        raise Failed("conv2d_params / linear_params: results are missing")
    for (c_in, c_out, k, bias), pair in zip(probes.values["ex3/conv"], conv, strict=True):
        if not isinstance(pair, list) or len(pair) != 2:
            raise Failed("conv2d_params: results are missing")
        with_bias, default = pair
        if not _same_count(with_bias, conv2d_params(c_in, c_out, k, bias=bias), "conv2d_params"):
            raise Failed("conv2d_params is wrong" + ("" if bias else " without bias"))
        if not _same_count(default, conv2d_params(c_in, c_out, k), "conv2d_params"):
            raise Failed("conv2d_params is wrong with the default bias=True")
    for (n_in, n_out, bias), pair in zip(probes.values["ex3/linear"], linear, strict=True):
        if not isinstance(pair, list) or len(pair) != 2:
            raise Failed("linear_params: results are missing")
        with_bias, default = pair
        if not _same_count(with_bias, linear_params(n_in, n_out, bias=bias), "linear_params"):
            raise Failed("linear_params is wrong" + ("" if bias else " without bias"))
        if not _same_count(default, linear_params(n_in, n_out), "linear_params"):
            raise Failed("linear_params is wrong with the default bias=True")


def judge_estimate_vgg(evidence, probes: ProbeSet, context) -> None:
    if not _same_count(
        evidence.get("vgg16_default", "estimate_vgg_parameters(VGG16_CONFIG)"),
        VGG16_PARAMS,
        "estimate_vgg_parameters(VGG16_CONFIG)",
    ):
        raise Failed("estimate_vgg_parameters(VGG16_CONFIG) must equal VGG16's real count")
    cases = probes.values["ex4/cases"]
    results = evidence.list("cases", "estimate_vgg_parameters on other configurations")
    if len(results) != len(cases):
        raise Failed("estimate_vgg_parameters: results are missing")
    for (config, num_classes, channels), value in zip(cases, results, strict=True):
        if not _same_count(
            value, vgg_params(config, num_classes, channels), "estimate_vgg_parameters"
        ):
            where = (
                "VGG16 with another num_classes"
                if config == list(VGG_CONFIGS["D"])
                else "another configuration, num_classes or in_channels"
            )
            raise Failed(f"estimate_vgg_parameters is wrong on {where}")


def _shapes(value, what: str) -> list[tuple[int, ...]]:
    if not isinstance(value, list):
        raise Failed(f"{what}: expected a list of shapes")
    shapes = []
    for shape in value:
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) for d in shape
        ):
            raise Failed(f"{what}: every shape must be a tuple of ints")
        shapes.append(tuple(shape))
    return shapes


def _meta_vgg16_features() -> nn.Module:
    with torch.device("meta"):
        return models.vgg16().features


def judge_block_shapes(evidence, probes: ProbeSet, context) -> None:
    features = _meta_vgg16_features()
    expected = block_output_shapes(features, torch.empty(1, 3, 224, 224, device="meta"))
    got = _shapes(evidence.get("vgg16_block_shapes"), "vgg16_block_shapes")
    if evidence.get("tuples", "the type of the shapes") is not True:
        raise Failed("vgg16_block_shapes: every shape must be a tuple")
    if got != expected:
        raise Failed("vgg16_block_shapes are not the shapes after VGG16's five max-pools")
    images = probes.arrays["ex5/vgg"]
    expected = block_output_shapes(features, torch.empty(*images.shape, device="meta"))
    if (
        _shapes(
            evidence.get("vgg", "block_output_shapes(model.features, images)"),
            "block_output_shapes(model.features, images)",
        )
        != expected
    ):
        raise Failed("block_output_shapes is wrong on another image size and batch size")
    from featurelab.evidence import build_module

    toys = evidence.list("toy", "block_output_shapes on another network")
    if len(toys) != len(probes.values["ex5/toy"]):
        raise Failed("block_output_shapes on another network: results are missing")
    for spec, value in zip(probes.values["ex5/toy"], toys, strict=True):
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            toy = build_module(spec)
        expected = block_output_shapes(
            toy, torch.empty(*probes.arrays["ex5/toy"].shape, device="meta")
        )
        if _shapes(value, "block_output_shapes(network, images)") != expected:
            raise Failed(
                "block_output_shapes is wrong on another network (shape after every "
                "nn.MaxPool2d, whatever the layers before it)"
            )


def judge_logits(evidence, probes: ProbeSet, context) -> None:
    logits = evidence.array("probe_logits", shape=(2, 1000))
    if evidence.get("requires_grad", "probe_logits.requires_grad") is not False:
        raise Failed("run the forward pass under torch.inference_mode() (or torch.no_grad())")
    batch = evidence.array("probe_batch", shape=(2, 3, 224, 224))
    expected = reference_logits(context, batch.astype(np.float32))
    if not relative_error(logits, expected) < EX6_RELATIVE_ERROR:
        raise Failed("probe_logits must be model(probe_batch), the model in eval mode")


JUDGES = {
    "test_ex1_count_parameters": judge_count_parameters,
    "test_ex2_conv_fc_split": judge_conv_fc_split,
    "test_ex3_layer_params": judge_layer_params,
    "test_ex4_estimate_vgg": judge_estimate_vgg,
    "test_ex5_block_shapes": judge_block_shapes,
    "test_ex6_logits": judge_logits,
}
