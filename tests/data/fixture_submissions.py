"""Pathological submissions, built from a course's source and release (never hand-edited copies).

Each builder takes the assignment's source and release notebooks and a :class:`Target` (the
answer cell to break and what depends on it) and returns the submission as bytes. The tests
grade them all in one batch, with the solution and the blank release, and check each outcome
and that nothing else in the batch was affected.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nbformat

from autograder import students


@dataclass(frozen=True)
class Target:
    """Where to inject trouble in one assignment.

    ``answer``: grade id of an answer (solution) code cell; ``tests``: grade ids of the test
    cells that fail when that answer is broken (and only those); ``function``: a function that
    answer cell defines and the tests call (None: no stderr fixture for this target); ``wrong``: ``(old, new)`` text replacement in the
    answer cell giving a wrong answer that passes the visible asserts but not the hidden tests.
    ``other``: another assignment of the course (for "the notebook of another assignment").
    """

    assignment: str
    answer: str
    tests: tuple[str, ...]
    function: str | None
    wrong: tuple[str, str]
    other: str


def _dumps(notebook) -> bytes:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return nbformat.writes(notebook).encode()


def _prepend(notebook, grade_id: str, code: str):
    edited = copy.deepcopy(notebook)
    cell = students.answer_cell(edited, grade_id)
    cell.source = code.rstrip("\n") + "\n" + cell.source
    return edited


def _append(notebook, grade_id: str, code: str):
    edited = copy.deepcopy(notebook)
    cell = students.answer_cell(edited, grade_id)
    cell.source = cell.source.rstrip("\n") + "\n" + code
    return edited


def _wrong(solved, target: Target):
    return students.edit_answer(solved, target.answer, *target.wrong)


def solution(source, release, target, **_):
    return _dumps(students.solved_release(source, release))


def blank(source, release, target, **_):
    return _dumps(students.blank_release(release))


def _solved_then(code: str) -> Callable[..., bytes]:
    """A builder: the solution, with ``code`` run at the top of the target's answer cell."""

    def build(source, release, target, **_):
        solved = students.solved_release(source, release)
        return _dumps(_prepend(solved, target.answer, code))

    return build


infinite_loop = _solved_then("while True:\n    pass")
sys_exit = _solved_then("import sys\nsys.exit()")
os_exit = _solved_then("import os\nos._exit(1)")
segfault = _solved_then("import ctypes\nctypes.string_at(0)")
# Grows to 8 GiB at most (safe on the 24 GiB machine if the watchdog failed), 100 MiB at a
# time; bytearray(n) zero-fills, so every page is touched and counts in RSS.
memory_hog = _solved_then("hog = []\nfor _ in range(80):\n    hog.append(bytearray(100 * 2**20))")


def deleted_test(source, release, target, **_):
    solved = students.solved_release(source, release)
    solved.cells = [
        cell
        for cell in solved.cells
        if cell.metadata.get("nbgrader", {}).get("grade_id") != target.tests[0]
    ]
    return _dumps(solved)


def edited_test(source, release, target, **_):
    wrong = _wrong(students.solved_release(source, release), target)
    for cell in wrong.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") in target.tests:
            cell.source = "\n".join(
                "pass" if line.lstrip().startswith("assert") else line
                for line in cell.source.split("\n")
            )
    return _dumps(wrong)


def stripped_metadata(source, release, target, **_):
    solved = students.solved_release(source, release)
    for cell in solved.cells:
        cell.metadata.pop("nbgrader", None)
    return _dumps(solved)


def stripped_unrecoverable(source, release, target, **_):
    solved = students.solved_release(source, release)
    for cell in solved.cells:
        cell.metadata.pop("nbgrader", None)
        cell.source = cell.source + "\n# reformatted by some tool"
    return _dumps(solved)


def duplicated_cell(source, release, target, **_):
    """A copy of the answer cell, with a wrong body, inserted before it: the last copy counts."""
    solved = students.solved_release(source, release)
    index = next(
        i
        for i, c in enumerate(solved.cells)
        if c.metadata.get("nbgrader", {}).get("grade_id") == target.answer
    )
    wrong_copy = copy.deepcopy(students.answer_cell(_wrong(solved, target), target.answer))
    wrong_copy["id"] = "duplicated-copy"
    solved.cells.insert(index, wrong_copy)
    return _dumps(solved)


def stderr_warnings(source, release, target, **_):
    """Correct code that writes to stderr and warns, in its cell and when the tests call it."""
    solved = students.solved_release(source, release)
    code = (
        "import functools, sys, warnings\n"
        "print('debug: defining things', file=sys.stderr)\n"
        "warnings.warn('a warning from the student cell')\n"
        f"_original_{target.function} = {target.function}\n"
        f"@functools.wraps(_original_{target.function})\n"
        f"def {target.function}(*args, **kwargs):\n"
        "    warnings.warn('a warning each time it is called', UserWarning)\n"
        "    print('progress...', file=sys.stderr)\n"
        f"    return _original_{target.function}(*args, **kwargs)"
    )
    return _dumps(_append(solved, target.answer, code))


MONKEYPATCH = (
    "import numpy, torch\n"
    "numpy.allclose = lambda *args, **kwargs: True\n"
    "numpy.array_equal = lambda *args, **kwargs: True\n"
    "torch.equal = lambda *args, **kwargs: True\n"
    "torch.allclose = lambda *args, **kwargs: True"
)


def monkeypatch(source, release, target, **_):
    """A wrong answer plus comparison helpers redefined in the *first* answer cell, before any
    hidden test could import ``autograder.checks``: the hidden tests must not be fooled."""
    wrong = _wrong(students.solved_release(source, release), target)
    first = next(
        cell
        for cell in wrong.cells
        if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("solution")
    )
    return _dumps(_prepend(wrong, first.metadata["nbgrader"]["grade_id"], MONKEYPATCH))


def invalid_json(source, release, target, **_):
    text = _dumps(students.solved_release(source, release))
    return text[: len(text) // 2]


def empty_file(source, release, target, **_):
    return b""


def other_assignment(source, release, target, *, other_source, other_release, **_):
    return _dumps(students.solved_release(other_source, other_release))


def left_over_parameters(source, release, device: str):
    """The solution submitted with the parameters cell of another machine (issue 11): the device
    of a Colab GPU or a Mac, a data folder and a batch size of its own. The grader decides these;
    the submission keeps full marks."""
    solved = students.solved_release(source, release)
    cell = next(
        c
        for c in solved.cells
        if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])
    )
    edits = {
        "DEVICE = None": f"DEVICE = {device!r}",
        "DATA_ROOT = None": 'DATA_ROOT = "/content/drive/MyDrive/featurelab-data"',
        "BATCH_SIZE = 32": "BATCH_SIZE = 256",
    }
    for old, new in edits.items():
        if old not in cell.source:
            raise ValueError(f"{old!r} is not in the parameters cell")
        cell.source = cell.source.replace(old, new)
    return solved


def solved_with(source, release, grade_id: str, code: str):
    """The solution with ``code`` appended to answer cell ``grade_id`` (a correct variant)."""
    return _append(students.solved_release(source, release), grade_id, code)


BUILDERS: dict[str, Callable[..., bytes]] = {
    "solution": solution,
    "blank": blank,
    "infinite_loop": infinite_loop,
    "sys_exit": sys_exit,
    "os_exit": os_exit,
    "segfault": segfault,
    "memory_hog": memory_hog,
    "deleted_test": deleted_test,
    "edited_test": edited_test,
    "stripped_metadata": stripped_metadata,
    "stripped_unrecoverable": stripped_unrecoverable,
    "duplicated_cell": duplicated_cell,
    "stderr_warnings": stderr_warnings,
    "monkeypatch": monkeypatch,
    "invalid_json": invalid_json,
    "empty_file": empty_file,
    "other_assignment": other_assignment,
}


def release_of(template_root: Path, assignment: str):
    return nbformat.read(str(template_root / "notebooks" / assignment / f"{assignment}.ipynb"), 4)


def source_of(course_root: Path, assignment: str):
    return nbformat.read(str(course_root / "solutions" / assignment / f"{assignment}.ipynb"), 4)


def write_fixtures(
    folder: Path,
    course_root: Path,
    releases_root: Path,
    target: Target,
    names: list[str] | None = None,
) -> dict[str, Path]:
    """Write ``<name>_<assignment>.ipynb`` for each fixture into ``folder`` (a flat LMS export).

    ``releases_root``: a folder holding ``notebooks/<id>/<id>.ipynb`` releases (the course root
    after ``release``, or a grading template).
    """
    folder.mkdir(parents=True, exist_ok=True)
    source = source_of(course_root, target.assignment)
    release = release_of(releases_root, target.assignment)
    extra = {
        "other_source": source_of(course_root, target.other),
        "other_release": release_of(releases_root, target.other),
    }
    written = {}
    for name in names or list(BUILDERS):
        data = BUILDERS[name](source, release, target, **extra)
        path = folder / f"{name}_{target.assignment}.ipynb"
        path.write_bytes(data)
        written[name] = path
    return written


def write_notebook(notebook, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_dumps(notebook))
    return path


def dump_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=1))
