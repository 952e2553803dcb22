"""Reference checks for TP6 (ResNet-18 intermediate features).

The reference features are computed by running a ResNet's top-level children in order (what
``build_trunk(model, output_layer)`` of Exercise 1 must compute), implemented here so that the
reference never depends on the student package. Inner nodes
(e.g. ``layer4.1.conv1``) are read with a forward hook of the reference's own.

Grading: the notebook's hidden regions are evidence collectors; ``make_probes`` (written in
``tp6_probes.py``, imported here) and ``JUDGES`` (at the end of this module) run in the
trusted judge, outside the sandbox, on a ResNet-18 of their own with the notebook's weights
(see the "Judges" section).
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn

from autograder.checks import reference_network
from autograder.checks.tp6_probes import make_probes  # noqa: F401 - the judge module's
from autograder.judge import Failed, as_array, check_value

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


def most_active_channels(maps: torch.Tensor, k: int) -> torch.Tensor:
    """Indices ``(k,)`` of the channels of ``maps`` ``(C, H, W)`` with the largest mean
    activation, in decreasing order."""
    return torch.argsort(maps.detach().cpu().mean(dim=(1, 2)), descending=True)[:k]


# ============================================================================================
# Judges (run outside the sandbox; see autograder/judge.py and docs/JUDGE.md)
#
# The hidden regions of the notebook are collectors: they call the student's functions on the
# probes (tp6_probes.py, seeded per grading run) and record the results. The references run
# here, on a ResNet-18 of our own built by ``featurelab.backbones.load_model("resnet18", profile)``: the
# same weights as the notebook's model in every profile (pretrained, or the seeded random
# initialisation of the smoke profile). The "other" network is that model with batch-norm
# statistics and affine parameters drawn from the run's seed (far from the identity), sent in
# as a partial state dict: the notebook loads it into a copy of its own model.
# ============================================================================================

# The three ways run on different processes (thread counts) here and in the sandbox: compare
# relative to the largest value of the reference (random-initialised features are tiny).
JUDGE_RTOL = 1e-4


def _reference_model(context, profile: str) -> nn.Module:
    return reference_network(context.cache, "resnet18", profile)[0]


def _image_batch(context, profile: str) -> torch.Tensor:
    """The notebook's ``image_batch``: Chelsea the cat, preprocessed, ``(1, 3, 224, 224)``."""
    key = ("tp6_resnet18_features", "image_batch", profile)
    if key not in context.cache:
        import skimage.data
        from PIL import Image

        weights = reference_network(context.cache, "resnet18", profile)[1]
        image = Image.fromarray(skimage.data.chelsea())
        context.cache[key] = weights.transforms()(image).unsqueeze(0)
    return context.cache[key]


def _networks(probes, context) -> dict[str, nn.Module]:
    """``{"model": reference, "other": reference with the probes' batch-norm state}``."""
    model = _reference_model(context, context.profile)
    key = ("tp6_resnet18_features", "other", context.profile, context.seed)
    if key not in context.cache:
        for old in [k for k in context.cache if k[:2] == key[:2]]:
            del context.cache[old]  # one run's seed at a time
        other = copy.deepcopy(model).eval()
        state = {
            name[len("bn/") :]: torch.from_numpy(array.copy())
            for name, array in probes.arrays.items()
            if name.startswith("bn/")
        }
        other.load_state_dict(state, strict=False)
        context.cache[key] = other
    return {"model": model, "other": context.cache[key]}


def _probe(probes, name: str) -> torch.Tensor:
    return torch.from_numpy(probes.arrays[name].copy())


def _same_features(actual, expected: torch.Tensor) -> bool:
    """Equal shapes and values up to ``JUDGE_RTOL`` relative to the reference's largest value."""
    expected = expected.detach().double().cpu().numpy()
    actual = np.asarray(actual, dtype=np.float64)
    if actual.shape != expected.shape or not np.all(np.isfinite(actual)):
        return False
    scale = float(np.abs(expected).max()) or 1.0
    return bool(np.allclose(actual / scale, expected / scale, rtol=JUDGE_RTOL, atol=JUDGE_RTOL))


def _flag(evidence, key: str, what: str) -> bool:
    value = evidence.get(key, what)
    if not isinstance(value, bool):
        raise Failed(f"{what}: expected True or False")
    return value


def judge_ex1_build_trunk(evidence, probes, context) -> None:
    _judge_trunk_structure(evidence)
    _judge_trunk_on_image(evidence, context)
    networks = _networks(probes, context)
    _judge_trunk_on_probes(evidence, probes, networks)
    _judge_trunk_cuts(evidence, probes, networks)
    if evidence.get("unknown", "build_trunk with an unknown output_layer") != "ValueError":
        raise Failed("an output_layer that is not a child of the model must raise ValueError")


def _judge_trunk_structure(evidence) -> None:
    """Ex. 1: an ``nn.Sequential`` of the shared children, without fc, in eval mode."""
    if not _flag(evidence, "is_sequential", "isinstance(trunk, nn.Sequential)"):
        raise Failed("build_trunk must return an nn.Sequential")
    if not _flag(evidence, "layer4_shared", "trunk.layer4 is model.layer4"):
        raise Failed(
            "keep the children's names, and share them (no copy): trunk.layer4 must be model.layer4"
        )
    if _flag(evidence, "has_linear", "a Linear layer in the trunk"):
        raise Failed("the trunk has no fc: leave out avgpool and fc")
    if evidence.int("trunk_count", "the trunk's number of parameters") != RESNET18_TRUNK_PARAMS:
        raise Failed("the trunk keeps every parameter but fc's")
    if not _flag(evidence, "shares", "the trunk's parameters are model's"):
        raise Failed("the trunk must reuse model's parameters, not copies")
    if _flag(evidence, "training", "trunk.training"):
        raise Failed("return the trunk in eval mode")


def _judge_trunk_on_image(evidence, context) -> None:
    """Ex. 1: ``feat_hard`` is layer4's output on the notebook's ``image_batch``."""
    model = _reference_model(context, context.profile)
    feat = evidence.array("feat_hard", "feat_hard", shape=(1, 512, 7, 7))
    if not _same_features(feat, layer4_features(model, _image_batch(context, context.profile))):
        raise Failed("feat_hard is not layer4's output on image_batch")


def _judge_trunk_on_probes(evidence, probes, networks: dict[str, nn.Module]) -> None:
    """Ex. 1: ``build_trunk(network)`` on the probe batches equals layer4's output."""
    for key, network, probe in (
        ("probe_224", "model", "ex1/x224"),
        ("probe_160", "model", "ex1/x160"),
        ("probe_other", "other", "probe/x"),
    ):
        x = _probe(probes, probe)
        result = evidence.array(key, f"build_trunk(network)(batch {tuple(x.shape)})")
        if not _same_features(result, layer4_features(networks[network], x)):
            where = (
                "on a network whose batch norms are far from the identity"
                if network == "other"
                else f"on a batch of shape {tuple(x.shape)}"
            )
            raise Failed(
                f"build_trunk(network) differs from layer4's output {where} (check the "
                "order of the children and that nothing is left out)"
            )


def _judge_trunk_cuts(evidence, probes, networks: dict[str, nn.Module]) -> None:
    """Ex. 1, ``output_layer``: the layer3 shape, then each cut point of the probes keeps the
    named children up to it, shared, in eval mode, and outputs that stage's features."""
    shape3 = as_array(
        evidence.get("layer3_shape", 'build_trunk(model, output_layer="layer3")'),
        'build_trunk(model, output_layer="layer3")(image_batch).shape',
    )
    if shape3.tolist() != [1, 256, 14, 14]:
        raise Failed('build_trunk(model, output_layer="layer3") must output (1, 256, 14, 14)')
    results = evidence.list("cuts", "build_trunk(network, output_layer=...) on the probes")
    cases = probes.values["ex1/cases"]
    if len(results) != len(cases):
        raise Failed("build_trunk(network, output_layer=...): results missing")
    x = _probe(probes, "probe/x")
    for (network, layer), result in zip(cases, results, strict=True):
        what = f"build_trunk(network, output_layer={layer!r})"
        info = check_value(result, what)
        if not isinstance(info, dict):
            raise Failed(f"{what} could not be checked")
        expected_names = list(STAGES[: STAGES.index(layer) + 1])
        if info.get("names") != expected_names:
            raise Failed(
                f"{what} must keep the children from conv1 up to and including {layer}, "
                "with their names"
            )
        if info.get("shares") is not True:
            raise Failed(f"{what} must reuse the network's parameters, not copies")
        if info.get("training") is not False:
            raise Failed(f"{what}: return the trunk in eval mode")
        actual = as_array(info.get("output"), what + "(probe)")
        if not _same_features(actual, features_until(networks[network], layer, x)):
            where = (
                " on a network whose batch norms are far from the identity"
                if network == "other"
                else ""
            )
            raise Failed(f"{what} differs from the output of {layer}{where}")


def judge_ex2_hook(evidence, probes, context) -> None:
    model = _reference_model(context, context.profile)
    image_batch = _image_batch(context, context.profile)
    feat = evidence.array("feat_hook", "feat_hook", shape=(1, 512, 7, 7))
    if not _same_features(feat, layer4_features(model, image_batch)):
        raise Failed("feat_hook is not layer4's output on image_batch")
    layer2 = evidence.array(
        "layer2", "features_with_hook(model, model.layer2, image_batch)", shape=(1, 128, 28, 28)
    )
    if not _same_features(layer2, features_until(model, "layer2", image_batch)):
        raise Failed("features_with_hook(model, model.layer2, image_batch) is not layer2's output")
    if evidence.int("visible_hooks", "hooks left on layer2 and layer4") != 0:
        raise Failed("remove the hook")
    networks = _networks(probes, context)
    x = _probe(probes, "probe/x")
    results = evidence.list("cases", "features_with_hook on the probes")
    cases = probes.values["ex2/cases"]
    if len(results) != len(cases):
        raise Failed("features_with_hook: results missing")
    for (network, node), result in zip(cases, results, strict=True):
        what = f"features_with_hook(network, network.{node}, probe)"
        actual = as_array(result, what)
        if not _same_features(actual, node_output(networks[network], node, x)):
            raise Failed(
                f"{what} is not the output of {node}"
                + (
                    " (on a network whose batch norms are far from the identity)"
                    if network == "other"
                    else ""
                )
            )
    if evidence.int("hooks_left", "hooks left after the calls") != 0:
        raise Failed("hooks left on the model: remove the hook after the forward pass")
    if evidence.int("hooks_after_failure", "hooks left after a failing call") != 0:
        raise Failed("the hook must be removed even when the forward pass fails (try/finally)")


def judge_ex3_fx(evidence, probes, context) -> None:
    model = _reference_model(context, context.profile)
    feat = evidence.array("feat_fx", "feat_fx", shape=(1, 512, 7, 7))
    if not _same_features(feat, layer4_features(model, _image_batch(context, context.profile))):
        raise Failed("feat_fx is not layer4's output on image_batch")
    if _flag(evidence, "has_fc", '"fc" in the extractor'):
        raise Failed("the head should be pruned")
    if not _flag(evidence, "shares", "the extractor's weights are model's"):
        raise Failed("share model's weights")
    networks = _networks(probes, context)
    x = _probe(probes, "probe/x")
    results = evidence.list("cases", "make_fx_extractor on the probes")
    cases = probes.values["ex3/cases"]
    if len(results) != len(cases):
        raise Failed("make_fx_extractor: results missing")
    for (network, node), result in zip(cases, results, strict=True):
        what = f"make_fx_extractor(network, {node!r})(probe)"
        result = check_value(result, what)
        if not isinstance(result, dict) or result.get("keys") != ["feat"]:
            raise Failed("return a dict with the single key 'feat'")
        actual = as_array(result.get("feat"), what + '["feat"]')
        if not _same_features(actual, node_output(networks[network], node, x)):
            raise Failed(
                f'{what}["feat"] is not the output of node {node!r}'
                + (
                    " (on a network whose batch norms are far from the identity)"
                    if network == "other"
                    else ""
                )
            )


def judge_ex4_compare(evidence, probes, context) -> None:
    for key, expected, what in (
        ("ones", 1.0, "max_abs_difference(torch.zeros(2, 3), torch.ones(2, 3))"),
        ("zeros", 0.0, "max_abs_difference(torch.zeros(2), torch.zeros(2))"),
    ):
        value = evidence.get(key, what)
        if not isinstance(value, float):
            raise Failed(f"{what} must be a Python float (use .item())")
        if value != expected:
            raise Failed(f"{what} must be {expected}")
    if evidence.get("mismatch", "max_abs_difference on different shapes") != "ValueError":
        raise Failed("different shapes must raise ValueError")
    results = evidence.list("probes", "max_abs_difference on the probes")
    if len(results) != probes.values["ex4/pairs"]:
        raise Failed("max_abs_difference: results missing")
    for i, result in enumerate(results):
        a, b = _probe(probes, f"ex4/a{i}"), _probe(probes, f"ex4/b{i}")
        what = f"max_abs_difference on tensors of shape {tuple(a.shape)}"
        value = check_value(result, what)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Failed(f"{what} must return a Python float")
        if not math.isfinite(value) or abs(value - max_abs_difference(a, b)) > 1e-6:
            raise Failed(f"{what} is not max |a - b| (mind negative differences)")
    feats = {
        name: evidence.array(name, name, shape=(1, 512, 7, 7))
        for name in ("feat_hard", "feat_hook", "feat_fx")
    }
    differences = evidence.get("differences", "differences")
    pairs = {
        "hard vs hook": ("feat_hard", "feat_hook"),
        "hard vs fx": ("feat_hard", "feat_fx"),
        "hook vs fx": ("feat_hook", "feat_fx"),
    }
    if not isinstance(differences, dict) or set(differences) != set(pairs):
        raise Failed('differences must have the keys "hard vs hook", "hard vs fx", "hook vs fx"')
    for pair, (x, y) in pairs.items():
        value = differences[pair]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Failed(f'differences["{pair}"] must be a number')
        expected = float(np.abs(feats[x].astype(np.float64) - feats[y].astype(np.float64)).max())
        if not abs(value - expected) <= 1e-9:
            raise Failed(f'differences["{pair}"] is not the max |difference| of the two tensors')
        if not expected < 1e-5:
            raise Failed(f"the three ways must give the same tensor ({pair} differ)")


def judge_ex5_most_active(evidence, probes, context) -> None:
    toy = as_array(
        evidence.get("toy", "most_active_channels(toy_maps, k=2)"),
        "most_active_channels(toy_maps, k=2)",
    )
    if toy.shape != (2,) or toy.tolist() != [1, 3]:
        raise Failed("most_active_channels(toy_maps, k=2) must be [1, 3]")
    top = evidence.array("top_channels", "top_channels")
    maps = evidence.array("maps", "maps", shape=(512, 7, 7))
    if top.shape != (64,):
        raise Failed("top_channels must hold 64 channel indices")
    if not (np.all(top == np.round(top)) and top.min() >= 0 and top.max() < 512):
        raise Failed("top_channels must hold channel indices")
    means = maps.astype(np.float64).mean(axis=(1, 2))[top.astype(np.int64)]
    if not np.all(means[:-1] >= means[1:]):
        raise Failed("top_channels must be in decreasing order of mean activation")
    results = evidence.list("probes", "most_active_channels on the probes")
    ks = probes.values["ex5/k"]
    if len(results) != len(ks):
        raise Failed("most_active_channels: results missing")
    for i, (result, k) in enumerate(zip(results, ks, strict=True)):
        maps_i = _probe(probes, f"ex5/maps{i}")
        what = f"most_active_channels(maps {tuple(maps_i.shape)}, k={k})"
        actual = as_array(result, what)
        expected = most_active_channels(maps_i, k).numpy()
        if actual.shape != expected.shape or not np.array_equal(actual.astype(np.int64), expected):
            raise Failed(f"{what}: not the {k} channels of largest mean, in decreasing order")


JUDGES = {
    "test_ex1_build_trunk": judge_ex1_build_trunk,
    "test_ex2_hook": judge_ex2_hook,
    "test_ex3_fx": judge_ex3_fx,
    "test_ex4_compare": judge_ex4_compare,
    "test_ex5_most_active": judge_ex5_most_active,
}
