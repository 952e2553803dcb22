"""Helpers of the judges (instructor side, never in the student package or a sandbox).

``autograder/checks/<assignment>.py`` holds an assignment's ``make_probes`` and ``JUDGES``
(docs/JUDGE.md); they run in the trusted grading worker, outside the sandbox, on the evidence
the notebook's collector cells recorded. The comparisons below use function objects captured at
import time (``_PRISTINE``): nothing of the student's runs in this process, but a judge stays
correct even if a library it imports patches ``torch.equal`` or ``numpy.allclose``.
:func:`reference_network` builds the pretrained network a notebook loads, once per worker.
"""

from __future__ import annotations

import builtins
import json
import math

import numpy
import torch
from torch import nn

from autograder import course as course_mod

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


def _as_tensor(value) -> torch.Tensor:
    if _PRISTINE["torch.is_tensor"](value):
        return _PRISTINE["Tensor.cpu"](_PRISTINE["Tensor.detach"](value))
    return _PRISTINE["torch.as_tensor"](_PRISTINE["numpy.asarray"](value))


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


def reference_network(cache: dict, name: str, profile: str) -> tuple[nn.Module, object]:
    """``(model, weights)`` of ``featurelab.backbones.load_model(name, profile)``: the network
    the notebook works on (pretrained, or the smoke profile's seeded random initialisation), in
    eval mode without gradients, built once per grading worker and kept in ``cache`` (the judges'
    ``context.cache``): every judge of every assignment shares it."""
    key = ("featurelab.backbones.load_model", name, profile)
    if key not in cache:
        import contextlib
        import io

        from featurelab.backbones import load_model

        with contextlib.redirect_stdout(io.StringIO()):  # the smoke profile's banner
            model, weights, _ = load_model(name, profile)
        cache[key] = (model.eval().requires_grad_(False), weights)
    return cache[key]


def thresholds(assignment: str, profile: str | None = None) -> dict:
    """The thresholds of ``assignment`` for ``profile`` (the one in force when ``None``).

    Returns the dict stored in ``autograder/thresholds.json`` under
    ``[assignment][profile]``: ``{metric: {"threshold": float, "reference": float | None,
    "margin": float, "source": str}}``.
    """
    from featurelab.profiles import resolve_profile

    name = resolve_profile(profile)
    path = course_mod.THRESHOLDS_FILE  # looked up at each call: one place says where it is
    data = json.loads(path.read_text())
    try:
        return data[assignment][name]
    except KeyError:
        raise AssertionError(
            f"no thresholds for {assignment!r} in profile {name!r} ({path})"
        ) from None


def threshold(assignment: str, metric: str, profile: str | None = None) -> float:
    """The pass threshold of ``metric`` for ``assignment`` in ``profile``."""
    return float(thresholds(assignment, profile)[metric]["threshold"])
