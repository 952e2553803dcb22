"""Reference checks for TP4 (MobileNetV3-Large cats vs dogs), called by the hidden tests.

Every check is behavioural: it runs the student's object next to a reference on the SAME model
instance (or on a small network built here) and a fixed probe batch, so it works with the
random-initialised weights of the smoke profile as well as with the pretrained ones. A check
raises ``AssertionError`` with a short message and writes nothing to stderr.
"""

from __future__ import annotations

import copy
import math
import numbers

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from autograder.checks import _PRISTINE, assert_shape, tensors_close, tensors_equal

BACKBONE = "mobilenet_v3_large"
TOTAL_PARAMS = 5_483_032  # torchvision mobilenet_v3_large
FEATURES_PARAMS = 2_971_952  # model.features
FEATURE_SHAPE = (960, 7, 7)  # model.features on a 224x224 image
FLAT_FEATURES = 960 * 7 * 7  # 47,040
HEAD_PARAMS = FLAT_FEATURES * 256 + 256 + 256 + 1  # 12,042,753
PROBE_SEED = 20240  # not the notebook's probe: the check must call the student's module


def _fail(message: str) -> None:
    raise AssertionError(message)


def probe_images(n: int = 3, size: int = 224, seed: int = PROBE_SEED) -> torch.Tensor:
    """A fixed batch of ``n`` normalised-looking images ``(n, 3, size, size)``."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, size, size, generator=generator)


def _parameter_ids(module: nn.Module) -> set[int]:
    return {id(p) for p in module.parameters()}


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _close_relative(actual, expected, tol: float = 1e-4) -> bool:
    """``actual`` equals ``expected`` up to ``tol`` relative to the largest value of ``expected``.

    Scale-free on purpose: a random-initialised MobileNetV3 (smoke profile) outputs features
    of magnitude ~1e-8, where any absolute tolerance would accept everything.
    """
    expected = torch.as_tensor(expected).detach().double().cpu()
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    if not math.isfinite(scale):
        return False
    scale = scale if scale > 0 else 1.0
    actual = torch.as_tensor(actual).detach().double().cpu()
    return tensors_close(actual / scale, expected / scale, rtol=tol, atol=tol)


def reference_backbone(model: nn.Module) -> nn.Module:
    """The reference backbone of ``model``: ``featurelab.backbones.cut(model, ..., "features")``."""
    from featurelab.backbones import cut

    return cut(model, BACKBONE, "features")


# --------------------------------------------------------------------------- exercise 1


def check_backbone(backbone, model: nn.Module) -> None:
    """``backbone`` is part of ``model`` and computes ``cut(model, "features")`` ``(N, 960, 7, 7)``."""
    if not isinstance(backbone, nn.Module):
        _fail(f"backbone must be an nn.Module, got {type(backbone).__name__}")
    own = list(backbone.parameters())
    if not own:
        _fail("backbone has no parameters")
    if not _parameter_ids(backbone) <= _parameter_ids(model):
        _fail("backbone must be a part of `model` sharing its weights, not a new or copied network")
    reference = reference_backbone(model)  # same instance: model.features, in eval mode
    images = probe_images()
    with torch.inference_mode():
        expected = reference(images)
        actual = backbone(images)
    assert_shape(actual, (images.shape[0], *FEATURE_SHAPE), "backbone output")
    if not _close_relative(actual, expected):
        _fail(
            "backbone output differs from the reference backbone (model.features) on a probe batch"
        )


def check_probe_features(probe_features, probe_batch, model: nn.Module) -> None:
    """``probe_features`` is the reference backbone's output on ``probe_batch``."""
    with torch.inference_mode():
        expected = reference_backbone(model)(probe_batch)
    assert_shape(probe_features, tuple(expected.shape), "probe_features")
    if _PRISTINE["torch.is_tensor"](probe_features) and probe_features.requires_grad:
        _fail("probe_features tracks gradients: compute it inside torch.inference_mode() "
              "or torch.no_grad()")
    if not _close_relative(probe_features, expected):
        _fail("probe_features is not the backbone's output on probe_batch")


def check_parameter_counts(n_params_backbone, n_params_total, model: nn.Module) -> None:
    """Exact parameter counts of MobileNetV3-Large and of its ``features`` part."""
    if int(n_params_total) != _count(model) or int(n_params_total) != TOTAL_PARAMS:
        _fail(f"n_params_total: expected {TOTAL_PARAMS:,}, got {n_params_total}")
    if int(n_params_backbone) != FEATURES_PARAMS:
        _fail(f"n_params_backbone: expected {FEATURES_PARAMS:,}, got {n_params_backbone}")


# --------------------------------------------------------------------------- exercise 2


class _ModeRecorder(nn.Module):
    """Identity that records, at every forward, whether it ran in train mode and with autograd."""

    def __init__(self):
        super().__init__()
        self.calls: list[tuple[bool, bool]] = []

    def forward(self, x):
        self.calls.append((self.training, torch.is_grad_enabled()))
        return x


def _tiny_cnn() -> nn.Sequential:
    """A small CNN whose train-mode output differs from its eval-mode output (BN + dropout)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        net = nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.Dropout(0.5),
            _ModeRecorder(),
        )
        bn = net[1]
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    return net


def _probe_image_loader(n: int = 10, batch_size: int = 4) -> DataLoader:
    generator = torch.Generator().manual_seed(PROBE_SEED + 1)
    images = torch.randn(n, 3, 8, 8, generator=generator)
    labels = torch.tensor([i % 2 for i in range(n)], dtype=torch.int64).flip(0)
    return DataLoader(TensorDataset(images, labels), batch_size=batch_size, shuffle=False)


def check_naive_extractor(extract_fn) -> None:
    """``extract_fn(module, loader, device)`` runs the module in eval mode without autograd and
    returns ``(features (N, ...) float32 on the CPU, labels (N,) int64)`` in loader order."""
    loader = _probe_image_loader()
    net = _tiny_cnn()
    pristine = copy.deepcopy(net).eval()
    images, labels = loader.dataset.tensors
    with torch.no_grad():
        expected = pristine(images)
    net.train()  # left in train mode on purpose: the extractor must switch to eval itself
    result = extract_fn(net, loader, torch.device("cpu"))
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        _fail("the extractor must return a tuple (features, labels)")
    features, got_labels = result
    if not torch.is_tensor(features) or not torch.is_tensor(got_labels):
        _fail("features and labels must be tensors")
    assert_shape(features, tuple(expected.shape), "features")
    if features.dtype != torch.float32 or features.device.type != "cpu":
        _fail(f"features must be float32 on the CPU, got {features.dtype} on {features.device}")
    if features.requires_grad or features.grad_fn is not None:
        _fail("features must not track gradients (use torch.inference_mode() or torch.no_grad())")
    if got_labels.dtype != torch.int64 or not tensors_equal(got_labels, labels):
        _fail("labels must be the loader's labels, int64, in loader order")
    calls = net[-1].calls
    if not calls:
        _fail("the module was never called")
    if any(training for training, _ in calls):
        _fail("the module ran in train mode: call .eval() before extracting")
    if any(grad for _, grad in calls):
        _fail("the forward passes ran with autograd on: use torch.inference_mode() "
              "(or torch.no_grad())")
    bn, ref_bn = net[1], pristine[1]
    if not tensors_equal(bn.running_mean, ref_bn.running_mean):
        _fail("batch-norm running statistics changed: the module ran in train mode")
    if not _close_relative(features, expected, 1e-5):
        _fail("features differ from the eval-mode reference")
    again, _ = extract_fn(net, loader, torch.device("cpu"))
    if not tensors_equal(again, features):
        _fail("two extractions of the same data differ: eval mode is not in effect")


def check_dataset_features(features, labels, dataset, model: nn.Module, k: int = 4) -> None:
    """``features``/``labels`` come from the eval-mode backbone of ``model`` on ``dataset``:
    shapes ``(len(dataset), 960, 7, 7)`` / ``(len(dataset),)``, labels equal ``dataset.targets``,
    and the first ``k`` rows match a reference extraction (relative error < 5e-2: the fast
    extractor may use channels_last, or bfloat16 autocast on a GPU; features of a backbone in
    train mode differ by O(1))."""
    n = len(dataset)
    assert_shape(features, (n, *FEATURE_SHAPE), "features")
    if not tensors_equal(torch.as_tensor(labels).long(), torch.as_tensor(list(dataset.targets))):
        _fail("labels do not match the dataset's targets (order or values)")
    k = min(k, n)
    images = torch.stack([dataset[i][0] for i in range(k)])
    backbone = reference_backbone(model)
    device = next(backbone.parameters()).device
    with torch.inference_mode():
        expected = backbone(images.to(device)).float().cpu()
    actual = torch.as_tensor(features[:k]).float().cpu()
    error = float((actual - expected).norm() / expected.norm().clamp_min(1e-12))
    if not math.isfinite(error) or error > 5e-2:
        _fail(f"features differ from an eval-mode extraction (relative error {error:.3g})")


# --------------------------------------------------------------------------- exercise 3


def check_head(make_head) -> None:
    """``make_head(in_shape)`` -> ``Sequential(Flatten, Linear(prod, 256), ReLU, Dropout(0.5),
    Linear(256, 1))``; ``make_head()`` defaults to ``(960, 7, 7)`` (12,042,753 parameters)."""
    for in_shape, default in (((960, 7, 7), True), ((512, 7, 7), False), ((8, 2, 3), False)):
        head = make_head() if default else make_head(in_shape)
        what = "make_head()" if default else f"make_head({in_shape})"
        if not isinstance(head, nn.Sequential):
            _fail(f"{what} must return an nn.Sequential, got {type(head).__name__}")
        layers = list(head.children())
        flat = math.prod(in_shape)
        kinds = [type(layer).__name__ for layer in layers]
        expected_kinds = ["Flatten", "Linear", "ReLU", "Dropout", "Linear"]
        if kinds != expected_kinds:
            _fail(f"{what}: expected layers {expected_kinds}, got {kinds}")
        flatten, fc1, _, dropout, fc2 = layers
        if flatten.start_dim != 1 or flatten.end_dim != -1:
            _fail(f"{what}: nn.Flatten must keep the batch dimension (start_dim=1)")
        if (fc1.in_features, fc1.out_features, fc1.bias is not None) != (flat, 256, True):
            _fail(f"{what}: first layer must be Linear({flat}, 256), got {fc1}")
        if abs(dropout.p - 0.5) > 1e-12:
            _fail(f"{what}: dropout probability must be 0.5, got {dropout.p}")
        if (fc2.in_features, fc2.out_features, fc2.bias is not None) != (256, 1, True):
            _fail(f"{what}: last layer must be Linear(256, 1), got {fc2}")
        expected_params = flat * 256 + 256 + 256 + 1
        if _count(head) != expected_params:
            _fail(f"{what}: expected {expected_params:,} parameters, got {_count(head):,}")
        if default and _count(head) != HEAD_PARAMS:
            _fail(f"make_head(): expected {HEAD_PARAMS:,} parameters, got {_count(head):,}")
        head.eval()
        x = torch.randn(3, *in_shape, generator=torch.Generator().manual_seed(PROBE_SEED))
        with torch.inference_mode():
            y = head(x)
        assert_shape(y, (3, 1), f"{what} output")


# --------------------------------------------------------------------------- exercise 4


def _tiny_head() -> nn.Sequential:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(11)
        return nn.Sequential(
            nn.Flatten(), nn.Linear(6, 5), nn.ReLU(), _ModeRecorder(), nn.Linear(5, 1)
        )


def _probe_feature_loader() -> DataLoader:
    generator = torch.Generator().manual_seed(PROBE_SEED + 2)
    features = torch.randn(10, 2, 3, generator=generator)
    labels = torch.tensor([0, 1, 1, 0, 1, 0, 0, 1, 1, 1], dtype=torch.int64)
    # 10 samples in batches of 4: the last batch (2) is smaller, so a plain mean of batch
    # losses differs from the mean over samples.
    return DataLoader(TensorDataset(features, labels), batch_size=4, shuffle=False)


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


def check_train_one_epoch(train_fn) -> None:
    """``train_fn(model, loader, loss_fn, optimizer, device)`` does one epoch exactly like the
    reference (same parameters afterwards, same mean loss), in train mode."""
    loader = _probe_feature_loader()
    student = _tiny_head().eval()  # eval on purpose: the function must switch to train mode
    reference = copy.deepcopy(student)
    opt_s = torch.optim.SGD(student.parameters(), lr=0.5, momentum=0.9)
    opt_r = torch.optim.SGD(reference.parameters(), lr=0.5, momentum=0.9)
    for _ in range(2):  # two epochs: momentum and a missing zero_grad both show up
        loss_s = train_fn(student, loader, nn.BCEWithLogitsLoss(), opt_s, torch.device("cpu"))
        loss_r = reference_train_one_epoch(
            reference, loader, nn.BCEWithLogitsLoss(), opt_r, torch.device("cpu")
        )
        if not isinstance(loss_s, numbers.Real) or torch.is_tensor(loss_s):
            _fail(
                "train_one_epoch must return the mean loss as a Python float (loss.item()), "
                f"got {type(loss_s).__name__}"
            )
        value = float(loss_s)
        if not _PRISTINE["math.isclose"](value, loss_r, rel_tol=1e-5, abs_tol=1e-6):
            _fail(f"returned loss {value:.6f}, expected the mean over samples {loss_r:.6f}")
    calls = student[3].calls
    if not calls or not all(training and grad for training, grad in calls):
        _fail("the model must run in train mode with autograd on (call model.train())")
    for (name, p_s), p_r in zip(student.named_parameters(), reference.parameters(), strict=True):
        if not tensors_close(p_s, p_r, rtol=1e-5, atol=1e-6):
            _fail(
                f"after training, parameter {name} differs from the reference (check zero_grad, "
                "backward, step and the targets' dtype/shape)"
            )


# --------------------------------------------------------------------------- exercise 5


def reference_predict_labels(logits: torch.Tensor) -> torch.Tensor:
    """``(N, 1)`` or ``(N,)`` logits -> ``(N,)`` int64 labels: 1 where the logit is > 0."""
    return (logits.reshape(-1) > 0).long()


def check_predict_labels(predict_fn) -> None:
    """``predict_fn`` thresholds logits at 0 (probability 0.5), returns ``(N,)`` labels."""
    values = [-6.0, -0.7, -0.2, -1e-3, 1e-3, 0.2, 0.3, 0.45, 0.7, 6.0]
    for logits in (torch.tensor(values).unsqueeze(1), torch.tensor(values)):
        before = logits.clone()
        labels = predict_fn(logits)
        if not torch.is_tensor(labels):
            _fail(f"predict_labels must return a tensor, got {type(labels).__name__}")
        assert_shape(labels, (len(values),), f"predict_labels on logits {tuple(logits.shape)}")
        if labels.is_floating_point():
            _fail("predict_labels must return integer labels (0 or 1), not floats")
        if not tensors_equal(labels.long(), reference_predict_labels(logits)):
            _fail("wrong labels: a logit > 0 means probability > 0.5, i.e. class 1 (dog)")
        if not tensors_equal(logits, before):
            _fail("predict_labels must not modify its input")


# --------------------------------------------------------------------------- exercise 6


def check_loss_and_optimizer(loss_fn, optimizer, head: nn.Module) -> None:
    """``BCEWithLogitsLoss`` (mean) and an Adam optimizer over exactly the head's parameters."""
    if not isinstance(loss_fn, nn.BCEWithLogitsLoss):
        _fail(f"loss_fn must be nn.BCEWithLogitsLoss, got {type(loss_fn).__name__}")
    if loss_fn.reduction != "mean":
        _fail("loss_fn must average over the batch (reduction='mean')")
    if not isinstance(optimizer, torch.optim.Adam):
        _fail(f"optimizer must be torch.optim.Adam, got {type(optimizer).__name__}")
    in_optimizer = [id(p) for group in optimizer.param_groups for p in group["params"]]
    if sorted(in_optimizer) != sorted(_parameter_ids(head)):
        _fail("the optimizer must update exactly the parameters of `head`")
    for group in optimizer.param_groups:
        if not 1e-5 <= group["lr"] <= 1e-2:
            _fail(f"learning rate {group['lr']} is outside a sensible range for Adam [1e-5, 1e-2]")


def head_accuracy(head: nn.Module, features, labels, batch_size: int = 256) -> float:
    """Test accuracy of ``head`` on ``features (N, 960, 7, 7)``: logit > 0 predicts 1 (dog)."""
    device = next(head.parameters()).device
    head.eval()
    predictions = []
    with torch.inference_mode():
        for start in range(0, len(features), batch_size):
            batch = torch.as_tensor(features[start : start + batch_size]).to(device)
            predictions.append(reference_predict_labels(head(batch).float().cpu()))
    predicted = torch.cat(predictions)
    truth = torch.as_tensor(labels).long().reshape(-1)
    if predicted.shape != truth.shape:
        _fail(f"{predicted.shape[0]} predictions for {truth.shape[0]} labels")
    return float((predicted == truth).double().mean())


# --------------------------------------------------------------------------- exercise 7


def _toy_backbone(blocks: int = 6) -> nn.Sequential:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        return nn.Sequential(
            *[nn.Sequential(nn.Conv2d(2, 2, 1), nn.BatchNorm2d(2)) for _ in range(blocks)]
        )


def check_finetune_optimizer(make_optimizer) -> None:
    """``make_optimizer(backbone, head, n_trainable_blocks, backbone_lr, head_lr)`` freezes all
    but the last ``n`` children of ``backbone`` and returns Adam with the head at ``head_lr`` and
    the unfrozen backbone blocks at ``backbone_lr`` (frozen parameters not in the optimizer)."""
    cases = ((2, 1e-5, 1e-3, True), (3, 2e-4, 5e-3, False))
    for n, backbone_lr, head_lr, start_trainable in cases:
        backbone = _toy_backbone()
        head = nn.Sequential(nn.Flatten(), nn.Linear(2, 1))
        if not start_trainable:  # everything frozen beforehand: the last blocks must be unfrozen
            backbone.requires_grad_(False)
        optimizer = make_optimizer(backbone, head, n, backbone_lr, head_lr)
        if not isinstance(optimizer, torch.optim.Adam):
            _fail(f"must return torch.optim.Adam, got {type(optimizer).__name__}")
        blocks = list(backbone.children())
        frozen = [p for block in blocks[:-n] for p in block.parameters()]
        unfrozen = [p for block in blocks[-n:] for p in block.parameters()]
        if any(p.requires_grad for p in frozen):
            _fail(f"n_trainable_blocks={n}: blocks before the last {n} must be frozen")
        if not all(p.requires_grad for p in unfrozen):
            _fail(f"n_trainable_blocks={n}: the last {n} blocks must be trainable")
        if not all(p.requires_grad for p in head.parameters()):
            _fail("the head must stay trainable")
        lr_of: dict[int, list[float]] = {}
        for group in optimizer.param_groups:
            for p in group["params"]:
                lr_of.setdefault(id(p), []).append(group["lr"])
        if any(id(p) in lr_of for p in frozen):
            _fail("frozen parameters must not be given to the optimizer")
        for p in unfrozen:
            if lr_of.get(id(p)) != [backbone_lr]:
                _fail(
                    f"unfrozen backbone parameters must be in the optimizer once, lr={backbone_lr}"
                )
        for p in head.parameters():
            if lr_of.get(id(p)) != [head_lr]:
                _fail(f"head parameters must be in the optimizer once, lr={head_lr}")
        if len(lr_of) != len(unfrozen) + len(list(head.parameters())):
            _fail("the optimizer holds parameters that are neither the head nor the last blocks")
