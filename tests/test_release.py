"""The student release: regenerated from the sources, deterministic, fresh, leaking nothing.

``python -m autograder release --check`` is what CI would run; these tests call the same
functions: on the real course (the committed ``notebooks/`` must equal a fresh release and
reveal no solution or hidden test) and on a copy of the toy course (the mechanics).
"""

from __future__ import annotations

import sqlite3

import nbformat
import pytest

from autograder import course, release
from tests.data.toy import copy_toy_course

pytestmark = pytest.mark.slow


@pytest.fixture
def toy_course(tmp_path):
    return copy_toy_course(tmp_path / "course")


def test_release_is_generated_deterministically(toy_course):
    written = release.generate(toy_course)
    assert set(written) == {"toy", "toy2"}
    first = {name: path.read_bytes() for name, path in written.items()}
    release.generate(toy_course, ["toy"])
    assert written["toy"].read_bytes() == first["toy"]
    notebook = nbformat.read(written["toy"], 4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
        assert "nbgrader" in cell.metadata
    with sqlite3.connect(toy_course / "gradebook.db") as db:
        names = {row[0] for row in db.execute("select name from assignment")}
    assert names == {"toy", "toy2"}


def test_check_finds_stale_missing_and_extra_files(toy_course):
    release.generate(toy_course)
    source = course.source_notebook(toy_course, "toy")
    notebook = nbformat.read(source, 4)
    notebook.cells[0].source += "\n\nA new sentence."
    nbformat.write(notebook, source)
    (toy_course / "notebooks" / "toy2" / "notes.txt").write_text("stray")
    (toy_course / "notebooks" / "toy2" / "toy2.ipynb").unlink()
    stale = release.stale_files(toy_course)
    assert stale == [
        "notebooks/toy/toy.ipynb: differs from a fresh release (stale)",
        "notebooks/toy2/notes.txt: not produced by the source any more",
        "notebooks/toy2/toy2.ipynb: missing (run python -m autograder release)",
    ]


def test_cli_check_exit_codes(toy_course, capsys):
    from autograder import cli

    assert cli.main(["--course-root", str(toy_course), "release", "--check"]) == 1
    assert "missing (run python -m autograder release)" in capsys.readouterr().out
    (toy_course / "notebooks" / "toy2").mkdir(parents=True)
    (toy_course / "notebooks" / "toy2" / "stray.txt").write_text("removed by the release")
    assert cli.main(["--course-root", str(toy_course), "release"]) == 0
    assert not (toy_course / "notebooks" / "toy2" / "stray.txt").exists()
    assert cli.main(["--course-root", str(toy_course), "release", "--check"]) == 0
    assert "leaks nothing" in capsys.readouterr().out


def test_leak_in_a_committed_release_fails_the_check(toy_course):
    written = release.generate(toy_course)
    notebook = nbformat.read(written["toy"], 4)
    for cell in notebook.cells:
        if cell.metadata["nbgrader"]["grade_id"] == "ex1_square":
            cell.source = cell.source.replace("raise NotImplementedError()", "return x * x")
    nbformat.write(notebook, written["toy"])
    result = release.check(toy_course)
    assert result.leaks == ["toy: ex1_square: reveals 'return x * x'"]
    assert result.stale == ["notebooks/toy/toy.ipynb: differs from a fresh release (stale)"]


@pytest.mark.skipif(not course.assignments(course.REPO_ROOT), reason="no source notebook yet")
def test_committed_release_is_fresh_and_leaks_nothing():
    result = release.check(course.REPO_ROOT)
    assert result.stale == [], "notebooks/ is stale: run `python -m autograder release`"
    assert result.leaks == []
