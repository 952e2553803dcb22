"""Judges of the toy assignment (run outside the sandbox; see autograder/judge.py)."""

from __future__ import annotations

import numpy as np

from autograder.judge import Failed, ProbeSet, as_float, close


def make_probes(seed: int, profile: str) -> ProbeSet:
    rng = np.random.default_rng(seed)
    predictions = rng.integers(0, 3, size=12)
    targets = predictions.copy()
    targets[rng.choice(12, size=5, replace=False)] += 1  # 7 of 12 right
    return ProbeSet(
        arrays={
            "ex1/x": rng.normal(size=(3, 4)).astype(np.float32),
            "ex2/features": rng.normal(size=(5, 7)).astype(np.float32),
            "ex3/predictions": predictions,
            "ex3/targets": targets,
        }
    )


def judge_square(evidence, probes: ProbeSet, context) -> None:
    if as_float(evidence.get("visible", "square(3)"), "square(3)") != 9:
        raise Failed("square(3) must be 9")
    x = probes.arrays["ex1/x"]
    if not close(evidence.array("probe", "square(x)"), x * x, rtol=1e-6, atol=1e-6):
        raise Failed("square(x) must be x * x element-wise")


def judge_normalise(evidence, probes: ProbeSet, context) -> None:
    # the visible check (the shape), then the values on the probe
    evidence.array("visible", "normalise_rows(torch.ones(2, 4))", shape=(2, 4))
    features = probes.arrays["ex2/features"].astype(np.float64)
    expected = features / np.linalg.norm(features, axis=1, keepdims=True)
    if not close(evidence.array("probe", "normalise_rows(features)"), expected):
        raise Failed("each row must be divided by its L2 norm")


def judge_accuracy(evidence, probes: ProbeSet, context) -> None:
    toy = as_float(evidence.get("toy_accuracy"), "toy_accuracy")
    context.metric("accuracy", toy)
    if abs(toy - 0.75) > 1e-9:
        raise Failed("toy_accuracy must be 0.75")
    predictions, targets = probes.arrays["ex3/predictions"], probes.arrays["ex3/targets"]
    expected = float(np.mean(predictions == targets))
    got = as_float(evidence.get("probe", "accuracy(predictions, targets)"), "accuracy(...)")
    if abs(got - expected) > 1e-6:
        raise Failed("accuracy must be the fraction of equal entries")
    return None


JUDGES = {
    "test_ex1_square": judge_square,
    "test_ex2_normalise": judge_normalise,
    "test_ex3_accuracy": judge_accuracy,
}
