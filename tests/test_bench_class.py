"""bench/class.py builds the simulated class it says: the mix, and each kind of submission.

Grading speed is not tested (numbers live in bench/RESULTS.md); what is: the seeded mix of
complete / partly wrong / blank / broken notebooks, and that each kind is what its name says,
on the toy course (the real TPs' demo mistakes are applied by ``autograder.demo``'s tests).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import nbformat
import pytest

from autograder import students
from tests.data import fixture_submissions as fx
from tests.data.toy import TOY_COURSE, toy_template

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture(scope="module")
def bench_class():
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("bench_class", BENCH / "class.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCH))
    return module


def test_the_mix_has_the_stated_proportions(bench_class):
    kinds = bench_class.kinds(600, seed=0)
    counts = {kind: kinds.count(kind) for kind in bench_class.MIX}
    assert counts == {"complete": 360, "partly_wrong": 120, "blank": 60, "broken": 60}
    assert kinds == bench_class.kinds(600, seed=0) != bench_class.kinds(600, seed=1)


def _answers(notebook) -> dict[str, str]:
    return {
        cell.metadata["nbgrader"]["grade_id"]: cell.source
        for cell in notebook.cells
        if cell.metadata.get("nbgrader", {}).get("solution")
    }


def test_each_kind_of_submission(bench_class):
    template = toy_template()
    source = fx.source_of(TOY_COURSE, "toy")
    release = template.release("toy").notebook
    solved = _answers(students.solved_release(source, release))
    released = _answers(release)

    def built(kind, number):
        data = bench_class.build(kind, number, source, release, "toy")
        return _answers(nbformat.reads(data.decode(), 4))

    assert built("complete", 0) == solved
    assert built("blank", 0) == released
    wrong = built("partly_wrong", 1)
    changed = [gid for gid in solved if wrong[gid] != solved[gid]]
    assert len(changed) == 1 and wrong[changed[0]] == released[changed[0]]
    with pytest.raises(ValueError):  # an upload cut in half
        nbformat.reads(bench_class.build("broken", 0, source, release, "toy").decode(), 4)
    typo = built("broken", 1)
    assert sum(typo[gid] != solved[gid] for gid in solved) == 1
    assert any(text.startswith("undefined_helper()") for text in typo.values())
