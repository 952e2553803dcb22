"""The toy course of the autograder tests: where it is, its grading template, its targets."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

from tests.data.fixture_submissions import Target

TOY_COURSE = Path(__file__).resolve().parent / "toy_course"

# ex2_normalise: 3 points of the 6 automatic ones; breaking it fails test_ex2_normalise only.
TOY_TARGET = Target(
    assignment="toy",
    answer="ex2_normalise",
    tests=("test_ex2_normalise",),
    function="normalise_rows",
    wrong=(
        "return features / features.norm(dim=1, keepdim=True)",
        "return features / features.sum(dim=1, keepdim=True)",
    ),
    other="toy2",
)
TOY_POINTS = {"test_ex1_square": 2.0, "test_ex2_normalise": 3.0, "test_ex3_accuracy": 1.0}
TOY_MAX = sum(TOY_POINTS.values())


@functools.lru_cache(maxsize=1)
def shared_work_dir() -> Path:
    """A work folder for grading runs of the whole test session: the toy template (a release
    of the toy course, ~5 s to build) is built once there and reused by every test."""
    folder = Path(tempfile.mkdtemp(prefix="featurelab-test-work-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def toy_template():
    from autograder import batch

    return batch.build_template(TOY_COURSE, ["toy", "toy2"], shared_work_dir())


def copy_toy_course(target: Path) -> Path:
    shutil.copytree(TOY_COURSE, target, ignore=shutil.ignore_patterns("notebooks", "gradebook.db"))
    return target
