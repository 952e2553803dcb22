"""A small toy class for the hand-grading tests (gradebook, export, question page, browser).

Four students hand in the toy assignment: three with the solved code and a free-text answer of
their own to ``q1_why_normalise`` (the toy course's hand-graded question), one the blank
release. The class is graded once per test session (:func:`graded_class`); a test that
writes scores works on its own copy (:func:`copy_class`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from autograder import batch, gradebook, report, students
from autograder.course import read_notebook, source_notebook
from autograder.submissions import collect
from tests.data.toy import TOY_COURSE, shared_work_dir, toy_template

QUESTION = "q1_why_normalise"
ANSWERS = {  # student -> free-text answer (None: the blank release, nothing answered)
    "anna7": "Rows with a larger norm would dominate: normalising keeps only their direction.",
    "bert7": "To make the training faster.",
    "carl7": "Because the *contrast* of an image changes the norm of its features, not its class.",
    "dora7": None,
}

_GRADED: dict[str, Path] = {}


def write_class(folder: Path) -> Path:
    """The class's notebooks, ``<student>_toy.ipynb``, in ``folder``."""
    template = toy_template()
    release = template.release("toy").notebook
    source = read_notebook(source_notebook(TOY_COURSE, "toy"))
    for student, answer in ANSWERS.items():
        if answer is None:
            notebook = students.blank_release(release)
        else:
            notebook = students.solved_release(source, release)
            students.answer_cell(notebook, QUESTION).source = answer
        students.write(notebook, Path(folder) / f"{student}_toy.ipynb")
    return Path(folder)


def grade(root: Path):
    """``grade`` ``root/submissions`` into ``root/out`` (the course is written at its end)."""
    return batch.grade(
        root / "submissions",
        out=root / "out",
        course_root=TOY_COURSE,
        profile="smoke",
        jobs=2,
        timeout_cell=60,
        timeout=240,
        progress=False,
        work_dir=shared_work_dir(),
    )


def grade_then_gradebook(root: Path) -> Path:
    """What ``grade`` does, without the reference warm-up of a class of 3 or more (it costs a
    grading run), then the ``gradebook`` step on ``OUT/.state`` as the command runs it."""
    out = root / "out"
    found = collect(root / "submissions", assignments=["toy", "toy2"])
    options = batch.Options(profile="smoke", timeout_cell=60, timeout=240)
    result = batch.grade_batch(
        found,
        out=out,
        course_root=TOY_COURSE,
        options=options,
        jobs=2,
        progress=False,
        work_dir=shared_work_dir(),
        warm_up_min=len(found) + 1,
    )
    report.write_reports(result.records, out, course_root=TOY_COURSE)
    records = gradebook.load_records(out)
    gradebook.write_course(records, out, course_root=TOY_COURSE, work_dir=shared_work_dir())
    return out


def graded_class(tmp_path_factory) -> Path:
    """The class graded once per session: ``<root>/submissions`` and ``<root>/out``."""
    if "root" not in _GRADED:
        root = tmp_path_factory.mktemp("hand-graded-class")
        write_class(root / "submissions")
        grade_then_gradebook(root)
        _GRADED["root"] = root
    return _GRADED["root"]


def copy_class(root: Path, target: Path) -> Path:
    """A copy of a graded class (submissions, state, graded notebooks, course) to change."""
    shutil.copytree(root, target, symlinks=True)
    return target
