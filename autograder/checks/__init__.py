"""Reference code the hidden tests call (instructor side, never in the student package).

Student code runs in the same kernel before the hidden tests, so anything it can reach it can
redefine (``numpy.allclose = lambda *a, **k: True``, a fake ``torch.equal`` ...). The grading
kernel imports this package at start-up, *before* any student code, and the comparisons below
use the function objects captured then (``_PRISTINE``), never the module attributes looked up
at call time. Per-notebook reference checks live in ``autograder/checks/<assignment>.py``.

Hidden tests must stay silent on stderr (nbgrader gives 0 to a test cell that writes to it):
raise ``AssertionError`` with a short message, never print warnings.
"""

from __future__ import annotations

import builtins
import json
import math
from pathlib import Path

import numpy
import torch
from torch import nn

# Captured at import time; see the module docstring.
_PRISTINE = {
    "torch.equal": torch.equal,
    "torch.allclose": torch.allclose,
    "torch.is_tensor": torch.is_tensor,
    "torch.as_tensor": torch.as_tensor,
    "Tensor.detach": torch.Tensor.detach,
    "Tensor.cpu": torch.Tensor.cpu,
    "Tensor.float": torch.Tensor.float,
    "Tensor.norm": torch.Tensor.norm,
    "Tensor.tolist": torch.Tensor.tolist,
    "numpy.asarray": numpy.asarray,
    "numpy.allclose": numpy.allclose,
    "numpy.array_equal": numpy.array_equal,
    "isinstance": builtins.isinstance,
    "len": builtins.len,
    "abs": builtins.abs,
    "math.isclose": math.isclose,
}

THRESHOLDS_FILE = Path(__file__).resolve().parent.parent / "thresholds.json"


def _as_tensor(value) -> torch.Tensor:
    if _PRISTINE["torch.is_tensor"](value):
        return _PRISTINE["Tensor.cpu"](_PRISTINE["Tensor.detach"](value))
    return _PRISTINE["torch.as_tensor"](_PRISTINE["numpy.asarray"](value))


def tensors_equal(actual, expected) -> bool:
    """Exact equality of shape and values (tensors or array-likes), immune to monkeypatching."""
    a, b = _as_tensor(actual), _as_tensor(expected)
    return tuple(a.shape) == tuple(b.shape) and bool(_PRISTINE["torch.equal"](a, b))


def tensors_close(actual, expected, *, rtol: float = 1e-4, atol: float = 1e-5) -> bool:
    """``allclose`` on equal shapes (float64 comparison), immune to monkeypatching."""
    a, b = _as_tensor(actual), _as_tensor(expected)
    if tuple(a.shape) != tuple(b.shape):
        return False
    return bool(_PRISTINE["torch.allclose"](a.double(), b.double(), rtol=rtol, atol=atol))


def relative_error(actual, expected) -> float:
    """``||actual - expected|| / ||expected||`` (float64; inf on a shape mismatch)."""
    a = _as_tensor(actual).double().flatten()
    b = _as_tensor(expected).double().flatten()
    if tuple(a.shape) != tuple(b.shape):
        return float("inf")
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b).clamp_min(1e-12))


def assert_shape(value, expected: tuple[int, ...], what: str) -> None:
    """Fail with a short message unless ``value`` has shape ``expected``."""
    shape = tuple(_as_tensor(value).shape)
    if shape != tuple(expected):
        raise AssertionError(f"{what}: expected shape {tuple(expected)}, got {shape}")


def shares_parameters(module: nn.Module, model: nn.Module) -> bool:
    """True when every parameter of ``module`` *is* (same storage) a parameter of ``model``."""
    owned = {p.data_ptr() for p in model.parameters()}
    params = list(module.parameters())
    return _PRISTINE["len"](params) > 0 and all(p.data_ptr() in owned for p in params)


def num_parameters(module: nn.Module) -> int:
    """Number of distinct scalar parameters of ``module``."""
    seen, total = set(), 0
    for p in module.parameters():
        if p.data_ptr() not in seen:
            seen.add(p.data_ptr())
            total += p.numel()
    return total


def all_in_eval_mode(module: nn.Module) -> bool:
    """True when ``module`` and all its submodules are in eval mode."""
    return not any(m.training for m in module.modules())


def thresholds(assignment: str, profile: str | None = None) -> dict:
    """The thresholds of ``assignment`` for ``profile`` (the one in force when ``None``).

    Returns the dict stored in ``autograder/thresholds.json`` under
    ``[assignment][profile]``: ``{metric: {"threshold": float, "reference": float | None,
    "margin": float, "source": str}}``.
    """
    from featurelab.profiles import resolve_profile

    name = resolve_profile(profile)
    data = json.loads(THRESHOLDS_FILE.read_text())
    try:
        return data[assignment][name]
    except KeyError:
        raise AssertionError(
            f"no thresholds for {assignment!r} in profile {name!r} ({THRESHOLDS_FILE})"
        ) from None


def threshold(assignment: str, metric: str, profile: str | None = None) -> float:
    """The pass threshold of ``metric`` for ``assignment`` in ``profile``."""
    return float(thresholds(assignment, profile)[metric]["threshold"])
