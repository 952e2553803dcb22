"""Judges of the second toy assignment."""

from __future__ import annotations

from autograder.judge import Failed, as_float


def judge_cube(evidence, probes, context) -> None:
    if as_float(evidence.get("visible", "cube(2)"), "cube(2)") != 8:
        raise Failed("cube(2) must be 8")
    if as_float(evidence.get("probe", "cube(-3)"), "cube(-3)") != -27:
        raise Failed("cube(-3) is -27")


JUDGES = {"test_ex1_cube": judge_cube}
