"""Judges for TP4 (MobileNetV3-Large cats vs dogs).

Grading uses ``make_probes`` and ``JUDGES``: the notebook's hidden regions are evidence
collectors that run the student's objects on the judge's probes inside the sandbox; the judges,
outside it, compare what came back with references (a MobileNetV3-Large with the notebook's
weights, small probe networks rebuilt from the same specs), and score the trained head on
held-back images whose labels never enter the sandbox. The probes and the references live in
``tp4_probes.py``, imported below so that they stay attributes of this module.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from autograder.checks.tp4_probes import (  # noqa: F401 - attributes of the judge module
    BACKBONE,
    FEATURE_SHAPE,
    HELDOUT_PER_CLASS,
    PROBE_SEED,
    TOY_HEAD_SPEC,
    _backbone_features,
    _build,
    _ModeRecorder,
    _reference,
    heldout,
    make_probes,
    probe_images,
    reference_train_one_epoch,
)
from autograder.judge import Failed, as_array, as_float, check_value, relative_error

TOTAL_PARAMS = 5_483_032  # torchvision mobilenet_v3_large
FEATURES_PARAMS = 2_971_952  # model.features
FLAT_FEATURES = 960 * 7 * 7  # 47,040
HEAD_PARAMS = FLAT_FEATURES * 256 + 256 + 256 + 1  # 12,042,753


# ============================================================================================
# Judges (run outside the sandbox; see autograder/judge.py and docs/JUDGE.md)
#
# The hidden regions of the notebook are collectors: they call the student's objects on the
# probes (tp4_probes.py, seeded per grading run) and record the results; the judges compare
# them with references computed here. The reference MobileNetV3-Large is ours, built by
# ``featurelab.backbones.load_model(BACKBONE, profile)``: the same weights as the notebook's
# model in every profile (pretrained, or the seeded random initialisation of the smoke
# profile). Small probe networks are sent as data specs (``featurelab.evidence.build_module``)
# and rebuilt here from the same spec and seed.
#
# Accuracy: the judge sends the features (computed here by the reference backbone) of
# held-back test images the notebook never sees as images, keeps their labels in
# ``ProbeSet.private``, and scores the logits the student's trained head gives them.
# ============================================================================================

JUDGE_RTOL = 1e-4  # backbone outputs, here vs in the sandbox (other process, thread count)


def _model(context):
    return _reference(context.profile)[0]


def _dataset(context, split: str):
    """The notebook's ``train_set`` / ``test_set`` (reference transforms), read here."""
    key = ("tp4_cats_dogs_mobilenet", split, context.profile)
    if key not in context.cache:
        from featurelab.data import load_petimages

        _, preprocess = _reference(context.profile)
        context.cache[key] = load_petimages(
            split, transform=preprocess, profile=context.profile, progress=False
        )
    return context.cache[key]


def _same(actual, expected, tol: float = JUDGE_RTOL) -> bool:
    """Equal shapes, and equal values up to ``tol`` relative to the reference's largest value."""
    expected = np.asarray(torch.as_tensor(expected).detach().double().cpu())
    actual = np.asarray(actual, dtype=np.float64)
    if actual.shape != expected.shape or not np.all(np.isfinite(actual)):
        return False
    scale = float(np.abs(expected).max()) or 1.0
    return bool(np.allclose(actual / scale, expected / scale, rtol=tol, atol=tol))


def _relative_error(actual, expected) -> float:

    return relative_error(actual, np.asarray(torch.as_tensor(expected).double()))


def _flag(evidence, key: str, what: str) -> bool:

    value = evidence.get(key, what)
    if not isinstance(value, bool):
        raise Failed(f"{what}: expected True or False")
    return value


def _count(evidence, key: str, what: str) -> int:
    """An integer result (int, or a one-element tensor / integral float, as int() accepts)."""

    value = as_float(evidence.get(key, what), what)
    if value != int(value):
        raise Failed(f"{what}: expected a whole number")
    return int(value)


def _probe(probes, name: str) -> torch.Tensor:
    return torch.from_numpy(probes.arrays[name].copy())


def judge_ex1_backbone(evidence, probes, context) -> None:

    if not _flag(evidence, "is_module", "isinstance(backbone, nn.Module)"):
        raise Failed("backbone must be an nn.Module")
    if _count(evidence, "n_own", "the backbone's parameters") == 0:
        raise Failed("backbone has no parameters")
    if not _flag(evidence, "shares", "the backbone's parameters are model's"):
        raise Failed(
            "backbone must be a part of `model` sharing its weights, not a new or copied network"
        )
    n_backbone = _count(evidence, "n_params_backbone", "n_params_backbone")
    n_total = _count(evidence, "n_params_total", "n_params_total")
    if not 0 < n_backbone < n_total:
        raise Failed("the backbone is a part of the model: 0 < n_params_backbone < n_params_total")
    model = _model(context)
    images = _probe(probes, "ex1/images")
    output = evidence.array(
        "output", "backbone(probe images)", shape=(images.shape[0], *FEATURE_SHAPE)
    )
    if not _same(output, _backbone_features(context.profile, images)):
        raise Failed(
            "backbone output differs from the reference backbone (model.features) on a probe batch"
        )
    probe_batch = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    features = evidence.array("probe_features", "probe_features", shape=(2, *FEATURE_SHAPE))
    if _flag(evidence, "probe_requires_grad", "probe_features.requires_grad"):
        raise Failed(
            "probe_features tracks gradients: compute it inside torch.inference_mode() "
            "or torch.no_grad()"
        )
    if not _same(features, _backbone_features(context.profile, probe_batch)):
        raise Failed("probe_features is not the backbone's output on probe_batch")
    if n_total != TOTAL_PARAMS or n_total != sum(p.numel() for p in model.parameters()):
        raise Failed("n_params_total is not the number of parameters of the whole model")
    if n_backbone != FEATURES_PARAMS:
        raise Failed("n_params_backbone is not the number of parameters of the backbone")


def _reference_extraction(spec, images: torch.Tensor) -> torch.Tensor:
    net = _build(spec).eval()
    with torch.no_grad():
        return net(images)


def _check_extraction(result, expected: torch.Tensor, labels: np.ndarray, what: str) -> None:

    result = check_value(result, what)
    if not isinstance(result, dict):
        raise Failed(f"{what} must return a tuple (features, labels)")
    if result.get("pair") is not True:
        raise Failed(f"{what} must return a tuple (features, labels)")
    if result.get("tensors") != [True, True]:
        raise Failed("features and labels must be tensors")
    features = as_array(result.get("features"), "features", shape=tuple(expected.shape))
    if result.get("dtype") != "torch.float32" or result.get("device") != "cpu":
        raise Failed("features must be float32 on the CPU")
    if result.get("requires_grad") is not False:
        raise Failed(
            "features must not track gradients (use torch.inference_mode() or torch.no_grad())"
        )
    got_labels = as_array(result.get("labels"), "labels")
    if (
        result.get("labels_dtype") != "torch.int64"
        or got_labels.shape != labels.shape
        or not np.array_equal(got_labels, labels)
    ):
        raise Failed("labels must be the loader's labels, int64, in loader order")
    if not _same(features, expected, 1e-5):
        raise Failed("features differ from the eval-mode reference")


def judge_ex2_extract_naive(evidence, probes, context) -> None:

    # the visible asserts: 4 training images through the notebook's backbone
    small = evidence.array("small_features", "small_features", shape=(4, *FEATURE_SHAPE))
    if (
        evidence.get("small_dtype", "small_features.dtype") != "torch.float32"
        or evidence.get("small_device", "small_features.device") != "cpu"
    ):
        raise Failed("features must be float32 on the CPU")
    if _flag(evidence, "small_requires_grad", "small_features.requires_grad"):
        raise Failed("features must not track gradients")
    train_set = _dataset(context, "train")
    small_labels = evidence.array("small_labels", "small_labels", shape=(4,))
    if small_labels.tolist() != list(train_set.targets[:4]):
        raise Failed("labels must follow the loader's order")
    images = torch.stack([train_set[i][0] for i in range(4)])
    reference = _backbone_features(context.profile, images)
    if not _relative_error(small, reference) < 5e-2:
        raise Failed("features of training images differ from an eval-mode extraction")
    # the probe network, left in train mode, with batch norm and dropout
    spec = probes.values["ex2/net"]
    images, labels = _probe(probes, "ex2/images"), probes.arrays["ex2/labels"]
    expected = _reference_extraction(spec, images)
    _check_extraction(
        evidence.get("first", "extract_features_naive(probe network)"),
        expected,
        labels,
        "extract_features_naive",
    )
    calls = evidence.list("calls", "the probe network's forward passes")
    if not calls:
        raise Failed("the module was never called")
    if any(not isinstance(c, list) or len(c) != 2 for c in calls):
        raise Failed("the module's forward passes could not be checked")
    if any(training for training, _ in calls):
        raise Failed("the module ran in train mode: call .eval() before extracting")
    if any(grad for _, grad in calls):
        raise Failed(
            "the forward passes ran with autograd on: use torch.inference_mode() "
            "(or torch.no_grad())"
        )
    running_mean = evidence.array("running_mean", "batch-norm running mean")
    if not np.array_equal(running_mean, _build(spec)[1].running_mean.numpy()):
        raise Failed("batch-norm running statistics changed: the module ran in train mode")
    second = evidence.get("second", "a second extraction")
    _check_extraction(second, expected, labels, "extract_features_naive")
    if not np.array_equal(
        np.asarray(second["features"]), np.asarray(evidence.get("first")["features"])
    ):
        raise Failed("two extractions of the same data differ: eval mode is not in effect")


def judge_ex3_make_head(evidence, probes, context) -> None:

    results = evidence.list("heads", "make_head on the probe shapes")
    shapes = probes.values["ex3/shapes"]
    if len(results) != len(shapes):
        raise Failed("make_head: results missing")
    visible = evidence.array("visible", "make_head().eval()(torch.zeros(4, 960, 7, 7))")
    if visible.shape != (4, 1):
        raise Failed(f"make_head() must map (4, 960, 7, 7) to (4, 1), got {visible.shape}")
    for i, (shape, result) in enumerate(zip(shapes, results, strict=True)):
        in_shape = tuple(shape or FEATURE_SHAPE)
        what = "make_head()" if shape is None else f"make_head({in_shape})"
        info = check_value(result, what)
        if not isinstance(info, dict) or info.get("is_sequential") is not True:
            raise Failed(f"{what} must return an nn.Sequential")
        kinds = info.get("layers")
        expected_kinds = ["Flatten", "Linear", "ReLU", "Dropout", "Linear"]
        if kinds != expected_kinds:
            raise Failed(f"{what}: expected layers {expected_kinds}, got {kinds}")
        flat = math.prod(in_shape)
        if info.get("flatten") != [1, -1]:
            raise Failed(f"{what}: nn.Flatten must keep the batch dimension (start_dim=1)")
        if info.get("fc1") != [flat, 256, True]:
            raise Failed(
                f"{what}: the first layer must be a Linear layer from the flattened "
                "features to 256 units, with a bias"
            )
        if not isinstance(info.get("p"), float) or abs(info["p"] - 0.5) > 1e-12:
            raise Failed(f"{what}: dropout probability must be 0.5")
        if info.get("fc2") != [256, 1, True]:
            raise Failed(f"{what}: the last layer must be Linear(256, 1)")
        expected_params = flat * 256 + 256 + 256 + 1
        if info.get("n_params") != expected_params:
            raise Failed(f"{what}: expected {expected_params:,} parameters")
        x = _probe(probes, f"ex3/x{i}")
        output = as_array(info.get("output"), f"{what} output", shape=(x.shape[0], 1))
        state = info.get("state")
        if isinstance(state, dict):  # small heads: rebuild from the weights, same output?
            head = nn.Sequential(
                nn.Flatten(), nn.Linear(flat, 256), nn.ReLU(), nn.Dropout(0.5), nn.Linear(256, 1)
            ).eval()
            try:
                head.load_state_dict(
                    {k: torch.from_numpy(as_array(v, k).copy()) for k, v in state.items()}
                )
            except (RuntimeError, KeyError, TypeError):
                raise Failed(f"{what}: unexpected parameters") from None
            with torch.inference_mode():
                expected = head(x)
            if not _same(output, expected, 1e-5):
                raise Failed(f"{what}: the output in eval mode is not that of its layers")


def judge_ex4_train_one_epoch(evidence, probes, context) -> None:

    toy = evidence.list("toy_losses", "toy_losses")
    if not toy or not all(isinstance(check_value(v, "train_one_epoch"), float) for v in toy):
        raise Failed("return the mean loss as a Python float")
    if not toy[-1] < 0.5 * toy[0]:
        raise Failed("the loss should fall on the easy problem of the visible test")
    student = _build(probes.values["ex4/net"]).eval()
    reference = copy.deepcopy(student)
    optimizer = torch.optim.SGD(
        reference.parameters(), lr=probes.values["ex4/lr"], momentum=probes.values["ex4/momentum"]
    )
    loader = DataLoader(
        TensorDataset(_probe(probes, "ex4/features"), _probe(probes, "ex4/labels")),
        batch_size=4,
        shuffle=False,
    )
    losses = evidence.list("losses", "train_one_epoch on the probe")
    if len(losses) != 2:
        raise Failed("train_one_epoch: results missing")
    for loss in losses:
        value = check_value(loss, "train_one_epoch(...)")
        expected = reference_train_one_epoch(
            reference, loader, nn.BCEWithLogitsLoss(), optimizer, torch.device("cpu")
        )
        if isinstance(value, bool) or not isinstance(value, float):
            raise Failed(
                "train_one_epoch must return the mean loss as a Python float (loss.item())"
            )
        if not math.isclose(value, expected, rel_tol=1e-5, abs_tol=1e-6):
            raise Failed(
                "the returned loss is not the mean loss over the samples of the epoch "
                "(mind the smaller last batch)"
            )
    calls = evidence.list("calls", "the probe model's forward passes")
    if not calls or not all(c == [True, True] for c in calls):
        raise Failed("the model must run in train mode with autograd on (call model.train())")
    state = evidence.get("state", "the probe model's parameters")
    if not isinstance(state, dict):
        raise Failed("the probe model's parameters are missing")
    for name, p_r in reference.state_dict().items():
        p_s = as_array(state.get(name), name)
        if not (
            p_s.shape == tuple(p_r.shape) and np.allclose(p_s, p_r.numpy(), rtol=1e-5, atol=1e-6)
        ):
            raise Failed(
                f"after training, parameter {name} differs from the reference (check "
                "zero_grad, backward, step and the targets' dtype/shape)"
            )


def judge_ex5_predict_labels(evidence, probes, context) -> None:

    if as_array(
        evidence.get("visible", "predict_labels([[-2.0], [1.5], [3.0]])"),
        "predict_labels([[-2.0], [1.5], [3.0]])",
    ).tolist() != [0, 1, 1]:
        raise Failed("predict_labels([[-2.0], [1.5], [3.0]]) must be [0, 1, 1]")
    if as_array(
        evidence.get("visible_shape", "predict_labels(torch.zeros(5, 1) - 1)"),
        "predict_labels(torch.zeros(5, 1) - 1)",
    ).shape != (5,):
        raise Failed("return one label per image")
    logits = probes.arrays["ex5/logits"]
    expected = (logits > 0).astype(np.int64)
    cases = evidence.list("cases", "predict_labels on the probes")
    if len(cases) != 2:
        raise Failed("predict_labels: results missing")
    for case, shape in zip(cases, ((len(logits), 1), (len(logits),)), strict=True):
        what = f"predict_labels on logits of shape {shape}"
        case = check_value(case, what)
        if not isinstance(case, dict) or case.get("is_tensor") is not True:
            raise Failed("predict_labels must return a tensor")
        labels = as_array(case.get("labels"), what, shape=(len(logits),))
        if labels.dtype.kind == "f":
            raise Failed("predict_labels must return integer labels (0 or 1), not floats")
        if not np.array_equal(labels.astype(np.int64), expected):
            raise Failed("wrong labels: a logit > 0 means probability > 0.5, i.e. class 1 (dog)")
        after = as_array(case.get("after"), "the logits after the call")
        if not np.array_equal(after.reshape(-1), logits):
            raise Failed("predict_labels must not modify its input")


def judge_ex6_loss_optimizer(evidence, probes, context) -> None:

    if not _flag(evidence, "is_bce", "isinstance(loss_fn, nn.BCEWithLogitsLoss)"):
        raise Failed("loss_fn must be nn.BCEWithLogitsLoss")
    if evidence.get("reduction", "loss_fn.reduction") != "mean":
        raise Failed("loss_fn must average over the batch (reduction='mean')")
    expected = nn.BCEWithLogitsLoss()(_probe(probes, "ex6/logits"), _probe(probes, "ex6/targets"))
    if not abs(evidence.float("loss", "loss_fn(logits, targets)") - float(expected)) <= 1e-5:
        raise Failed("loss_fn does not compute the binary cross-entropy of the logits")
    if not _flag(evidence, "is_adam", "isinstance(optimizer, torch.optim.Adam)"):
        raise Failed("optimizer must be torch.optim.Adam")
    if not _flag(evidence, "same_params", "the optimizer's parameters are head's"):
        raise Failed("the optimizer must update exactly the parameters of `head`")
    lrs = evidence.list("lrs", "the optimizer's learning rates")
    if not lrs or not all(isinstance(lr, (int, float)) and 1e-5 <= lr <= 1e-2 for lr in lrs):
        raise Failed("the learning rate is outside a sensible range for Adam [1e-5, 1e-2]")


def judge_head_accuracy(evidence, probes, context) -> None:

    accuracy = evidence.float("test_accuracy", "test_accuracy")
    if not 0.0 <= accuracy <= 1.0:
        raise Failed("test_accuracy must be between 0 and 1")
    test_set = _dataset(context, "test")
    n = len(test_set)
    shape = evidence.list("test_features_shape", "test_features.shape")
    # FEATURE_STORAGE: "maps" (N, 960, 7, 7), or "pooled" (N, 960) = the maps' mean over 7x7
    pooled = shape == [n, FEATURE_SHAPE[0]]
    feature_shape = (FEATURE_SHAPE[0],) if pooled else FEATURE_SHAPE
    if shape != [n, *feature_shape]:
        raise Failed(
            f"test_features: expected shape {(n, *FEATURE_SHAPE)} (or {(n, FEATURE_SHAPE[0])} "
            f"pooled), got {tuple(shape)}"
        )
    labels = evidence.array("test_labels", "test_labels")
    if labels.shape != (n,) or labels.tolist() != list(test_set.targets):
        raise Failed("test_labels do not match the dataset's targets (order or values)")
    k = min(4, n)
    first = evidence.array("test_features_first", "test_features[:4]", shape=(k, *feature_shape))
    images = torch.stack([test_set[i][0] for i in range(k)])
    expected = _backbone_features(context.profile, images)
    if pooled:
        expected = expected.mean(dim=(2, 3))
    error = _relative_error(first, expected)
    if not error < 5e-2:
        raise Failed("test features differ from an eval-mode extraction of the test images")
    truth = probes.private["heldout_labels"]
    logits = as_array(
        evidence.get("heldout_logits", "head(held-back features)"), "head(held-back features)"
    )
    if logits.shape not in ((len(truth), 1), (len(truth),)) or not np.all(np.isfinite(logits)):
        raise Failed(
            f"the head must map {(len(truth), *feature_shape)} features to (N, 1) logits, "
            f"got {logits.shape} for N = {len(truth)}"
        )
    heldout_accuracy = float(np.mean((logits.reshape(-1) > 0).astype(np.int64) == truth))
    context.metric("accuracy", heldout_accuracy)
    minimum = context.threshold("accuracy")
    if heldout_accuracy < minimum:
        raise Failed(
            f"the trained head classifies {heldout_accuracy:.1%} of held-back test "
            f"images correctly; at least {minimum:.1%} is required"
        )


def judge_ex7_finetune_optimizer(evidence, probes, context) -> None:

    model = _model(context)
    blocks = list(model.features.children())
    expected_trainable = sum(p.numel() for block in blocks[-3:] for p in block.parameters())
    if not _flag(evidence, "visible_adam", "isinstance(optimizer_try, torch.optim.Adam)"):
        raise Failed("must return torch.optim.Adam")
    if evidence.get("visible_lrs", "the learning rates of optimizer_try") != [1e-5, 1e-4]:
        raise Failed("one parameter group per learning rate: [1e-5, 1e-4]")
    if _count(evidence, "visible_trainable", "trainable backbone parameters") != expected_trainable:
        raise Failed(
            "with n_trainable_blocks=3, exactly the last 3 children of the backbone "
            "must be trainable"
        )
    results = evidence.list("cases", "make_finetune_optimizer on the probes")
    cases = probes.values["ex7/cases"]
    if len(results) != len(cases):
        raise Failed("make_finetune_optimizer: results missing")
    for (n, backbone_lr, head_lr, _), result in zip(cases, results, strict=True):
        info = check_value(result, "make_finetune_optimizer(...)")
        if not isinstance(info, dict) or info.get("is_adam") is not True:
            raise Failed("must return torch.optim.Adam")
        block_grad, block_lrs = info.get("block_grad"), info.get("block_lrs")
        head_grad, head_lrs = info.get("head_grad"), info.get("head_lrs")
        if not all(isinstance(v, list) for v in (block_grad, block_lrs, head_grad, head_lrs)):
            raise Failed("the optimizer could not be checked")
        frozen_grad = [g for block in block_grad[:-n] for g in block]
        frozen_lrs = [lr for block in block_lrs[:-n] for lr in block]
        unfrozen_grad = [g for block in block_grad[-n:] for g in block]
        unfrozen_lrs = [lr for block in block_lrs[-n:] for lr in block]
        if any(frozen_grad):
            raise Failed(f"n_trainable_blocks={n}: blocks before the last {n} must be frozen")
        if not all(g is True for g in unfrozen_grad):
            raise Failed(f"n_trainable_blocks={n}: the last {n} blocks must be trainable")
        if not all(g is True for g in head_grad):
            raise Failed("the head must stay trainable")
        if any(lrs for lrs in frozen_lrs):
            raise Failed("frozen parameters must not be given to the optimizer")
        if any(lrs != [backbone_lr] for lrs in unfrozen_lrs):
            raise Failed(
                "unfrozen backbone parameters must be in the optimizer once, at backbone_lr"
            )
        if any(lrs != [head_lr] for lrs in head_lrs):
            raise Failed("head parameters must be in the optimizer once, at head_lr")
        if info.get("n_in_optimizer") != len(unfrozen_lrs) + len(head_lrs):
            raise Failed(
                "the optimizer holds parameters that are neither the head nor the last blocks"
            )


JUDGES = {
    "test_ex1_backbone": judge_ex1_backbone,
    "test_ex2_extract_naive": judge_ex2_extract_naive,
    "test_ex3_make_head": judge_ex3_make_head,
    "test_ex4_train_one_epoch": judge_ex4_train_one_epoch,
    "test_ex5_predict_labels": judge_ex5_predict_labels,
    "test_ex6_loss_optimizer": judge_ex6_loss_optimizer,
    "test_head_accuracy": judge_head_accuracy,
    "test_ex7_finetune_optimizer": judge_ex7_finetune_optimizer,
}
