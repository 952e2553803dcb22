"""End-to-end grading on the toy course: every pathological submission in one parallel batch.

The toy course (tests/data/toy_course) is a real nbgrader course in miniature; a toy
submission grades in a few seconds, so the whole set of pathological submissions (infinite
loop, exits, kernel crashes, memory hog, deleted / edited test cells, stripped metadata,
duplicates, stderr, monkeypatching, broken files, the wrong assignment) is graded in one batch
next to the solution and the blank release. Each must get its expected score and a reason,
and nothing else in the batch may be affected.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from autograder import batch as batching
from autograder import calibrate, preflight, report, students
from autograder.course import REPO_ROOT, read_notebook, source_notebook
from tests.data import fixture_submissions as fx
from tests.data.toy import (
    TOY_COURSE,
    TOY_MAX,
    TOY_POINTS,
    TOY_TARGET,
    shared_work_dir,
    toy_template,
)

pytestmark = pytest.mark.slow

FULL = dict(TOY_POINTS)
WITHOUT_EX2 = {**TOY_POINTS, "test_ex2_normalise": 0.0}
ZERO = {name: 0.0 for name in TOY_POINTS}

# fixture -> (status, automatic score per test cell or None if not graded, words of the reason)
EXPECTED = {
    "solution": ("ok", FULL, "to grade by hand"),
    "blank": ("ok", ZERO, ""),
    "infinite_loop": (
        "limited",
        WITHOUT_EX2,
        "ex2_normalise: interrupted at the 20 s per-cell limit",
    ),
    "sys_exit": ("ok", WITHOUT_EX2, "errors in answer cells: ex2_normalise (SystemExit)"),
    "os_exit": ("crashed", WITHOUT_EX2, "(ex2_normalise) crashed the Python kernel"),
    "segfault": ("crashed", WITHOUT_EX2, "(ex2_normalise) crashed the Python kernel"),
    "memory_hog": ("limited", WITHOUT_EX2, "(ex2_normalise) used more than 3000 MB of memory"),
    "deleted_test": ("repaired", FULL, "test_ex2_normalise missing: restored from the release"),
    "edited_test": ("repaired", WITHOUT_EX2, "test_ex2_normalise edited: graded with the original"),
    "stripped_metadata": ("repaired", FULL, "nbgrader metadata was missing"),
    "stripped_unrecoverable": ("invalid", None, "cannot be matched to the release"),
    "duplicated_cell": ("repaired", FULL, "ex2_normalise appears 2 times: graded the last copy"),
    "stderr_warnings": ("ok", FULL, ""),
    "monkeypatch": ("ok", WITHOUT_EX2, ""),
    "invalid_json": ("invalid", None, "invalid JSON at line"),
    "empty_file": ("invalid", None, "empty file"),
    "other_assignment": ("wrong_assignment", None, "this is the notebook of toy2, not toy"),
}


@pytest.fixture(scope="module")
def template():
    return toy_template()


@pytest.fixture(scope="module")
def batch(template, tmp_path_factory):
    """All fixtures graded in one batch (2 workers), with the reports written."""
    root = tmp_path_factory.mktemp("toy-batch")
    fx.write_fixtures(root / "submissions", TOY_COURSE, template.root, TOY_TARGET)
    started = time.monotonic()
    result = batching.grade(
        root / "submissions",
        out=root / "out",
        course_root=TOY_COURSE,
        profile="smoke",
        jobs=2,
        timeout_cell=20,
        memory_mb=3000,
        timeout=240,
        progress=False,
        work_dir=shared_work_dir(),
    )
    result.seconds = time.monotonic() - started
    return result


def _by_student(result):
    return {record.student: record for record in result.records}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_fixture_gets_its_outcome(batch, name):
    record = _by_student(batch)[name]
    status, scores, words = EXPECTED[name]
    assert record.status == status, record.reason
    assert words in record.reason
    assert record.max_score == TOY_MAX
    if scores is None:
        assert record.score == 0 and record.cells == []
    else:
        got = {c.grade_id: c.score for c in record.cells if c.kind == "auto"}
        assert got == scores, [(c.grade_id, c.message) for c in record.cells]
        assert record.score == sum(scores.values())


def test_every_submission_has_feedback_and_results(batch):
    for record in batch.records:
        page = report.feedback_path(batch.out, record)
        assert page.is_file(), page
        assert record.student in page.read_text()
        results = json.loads((batch.out / "results" / f"{record.student}.json").read_text())
        assert results["score"] == record.score


def test_grades_csv(batch):
    with open(batch.out / "grades.csv", newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert list(rows[0])[:7] == [
        "student",
        "assignment",
        "score",
        "max_score",
        "status",
        "reason",
        "source",
    ]
    assert list(rows[0])[7:] == [
        "test_ex1_square",
        "test_ex2_normalise",
        "q1_why_normalise",
        "test_ex3_accuracy",
    ]
    by_student = {row["student"]: row for row in rows}
    assert set(by_student) == set(EXPECTED)
    assert by_student["solution"]["q1_why_normalise"] == ""  # to be graded by hand
    assert by_student["blank"]["q1_why_normalise"] == "0"  # not answered
    assert by_student["os_exit"]["test_ex2_normalise"] == "0"
    assert by_student["os_exit"]["test_ex1_square"] == "2"


def test_feedback_teaches_without_leaking(batch, template):
    hidden = template.hidden_lines["toy"]
    assert hidden, "the toy course has hidden tests"
    source = read_notebook(source_notebook(TOY_COURSE, "toy"))
    solution_lines = [
        line.strip()
        for cell in source.cells
        for line in cell.source.splitlines()
        if line.strip().startswith("return ")
    ]
    for record in batch.records:
        page = report.feedback_path(batch.out, record).read_text()
        results = (batch.out / "results" / f"{record.student}.json").read_text()
        for text in (page, results):
            assert "BEGIN HIDDEN" not in text and "Traceback" not in text
            for line in hidden:
                assert line not in text, (record.student, line)
            if record.student != "stderr_warnings":
                for line in solution_lines:
                    assert line not in text
    monkeypatch = report.feedback_path(batch.out, _by_student(batch)["monkeypatch"]).read_text()
    assert "each row must be divided by its L2 norm" in monkeypatch  # the assertion message
    loop = report.feedback_path(batch.out, _by_student(batch)["infinite_loop"]).read_text()
    assert "per-cell limit" in loop
    blank = _by_student(batch)["blank"]
    first = next(c for c in blank.cells if c.grade_id == "test_ex1_square")
    assert first.message == "NotImplementedError (in: assert square(3) == 9)"  # a visible line
    solution = report.feedback_path(batch.out, _by_student(batch)["solution"]).read_text()
    assert "to be graded by hand" in solution and "q1_why_normalise" in solution


def test_stderr_from_student_code_costs_nothing(batch):
    record = _by_student(batch)["stderr_warnings"]
    test = next(c for c in record.cells if c.grade_id == "test_ex2_normalise")
    assert test.outcome == "passed" and "stderr" in test.message
    assert any(t["stderr"] for t in record.timings if t["grade_id"] == "test_ex2_normalise")


def test_metrics_reported_by_the_notebook_are_recorded(batch):
    assert _by_student(batch)["solution"].metrics == {"accuracy": 0.75}
    assert _by_student(batch)["blank"].metrics == {}


def _grading_processes(root: psutil.Process) -> list[psutil.Process]:
    found = []
    for process in root.children(recursive=True):
        try:
            command = " ".join(process.cmdline())
        except psutil.Error:
            continue
        if "autograder.worker" in command or "ipykernel_launcher" in command:
            found.append(process)
    return found


def test_nothing_left_running(batch):
    assert _grading_processes(psutil.Process()) == []


# ----------------------------------------------------------------------------- inputs, resume


def _solved(template, assignment="toy"):
    source = read_notebook(source_notebook(TOY_COURSE, assignment))
    return students.solved_release(source, template.release(assignment).notebook)


def test_tree_zip_and_detection(template, tmp_path):
    """nbgrader tree, a .zip export and an unnamed file (assignment detected from the notebook)."""
    import zipfile

    tree = tmp_path / "submitted"
    students.write(_solved(template), tree / "alice" / "toy" / "toy.ipynb")
    students.write(_solved(template, "toy2"), tree / "alice" / "toy2" / "toy2.ipynb")
    students.write(
        students.blank_release(template.release("toy").notebook), tree / "bob" / "toy" / "toy.ipynb"
    )
    result = batching.grade(
        tree,
        out=tmp_path / "out-tree",
        course_root=TOY_COURSE,
        profile="smoke",
        jobs=2,
        progress=False,
        work_dir=shared_work_dir(),
    )
    got = {(r.student, r.assignment): (r.score, r.max_score) for r in result.records}
    assert got == {("alice", "toy"): (6, 6), ("alice", "toy2"): (1, 1), ("bob", "toy"): (0, 6)}
    header = (tmp_path / "out-tree" / "grades.csv").read_text().splitlines()[0]
    assert "toy:test_ex1_square" in header and "toy2:test_ex1_cube" in header
    alice = json.loads((tmp_path / "out-tree" / "results" / "alice.json").read_text())
    assert alice["score"] == 7 and len(alice["tests"]) == 4

    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.write(tree / "alice" / "toy2" / "toy2.ipynb", "export/carol.ipynb")
    result = batching.grade(
        archive,
        out=tmp_path / "out-zip",
        course_root=TOY_COURSE,
        profile="smoke",
        jobs=1,
        progress=False,
        work_dir=shared_work_dir(),
    )
    [record] = result.records
    assert (record.student, record.assignment, record.score) == ("carol", "toy2", 1)


def _default_sigint() -> None:
    # A shell runs background jobs (`cmd &`, nohup) with SIGINT ignored, and children inherit
    # that: Python then installs no KeyboardInterrupt handler and Ctrl-C would do nothing. The
    # grader under test gets the default disposition, as in a terminal.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _cli(*args, **kwargs):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "autograder", "--course-root", str(TOY_COURSE), *args],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_default_sigint,
        **kwargs,
    )


def test_cli_interrupt_then_resume(template, tmp_path):
    """Ctrl-C in the middle of a run: exit 130, nothing left running; the rerun grades only
    what was not finished; a changed submission is regraded, an unchanged one is not."""
    folder = tmp_path / "submissions"
    for name in ("ann", "ben", "cid"):
        students.write(_solved(template), folder / f"{name}_toy.ipynb")
    out = tmp_path / "out"
    process = _cli(
        "grade",
        str(folder),
        "--out",
        str(out),
        "--jobs",
        "1",
        "--profile",
        "smoke",
        "--quiet",
        start_new_session=True,
    )
    state = out / ".state"
    grader = psutil.Process(process.pid)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and len(list(state.glob("*.json"))) < 1:
        time.sleep(0.2)
    assert len(list(state.glob("*.json"))) >= 1, process.communicate()[0]
    family = _grading_processes(grader)
    assert family, "a worker is running"
    os.killpg(process.pid, signal.SIGINT)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 130, output
    _, alive = psutil.wait_procs(family, timeout=15)
    assert alive == []
    finished = len(list(state.glob("*.json")))
    assert finished < 3, "the run was interrupted before the end"

    rerun = _cli(
        "grade", str(folder), "--out", str(out), "--jobs", "2", "--profile", "smoke", "--quiet"
    )
    output, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, output
    assert f"{3 - finished} graded now, {finished} from an earlier run" in output
    rows = (out / "grades.csv").read_text().splitlines()
    assert len(rows) == 4 and all(",6,6,ok," in row for row in rows[1:])

    students.write(
        students.blank_release(template.release("toy").notebook), folder / "ben_toy.ipynb"
    )
    again = batching.grade(
        folder, out=out, course_root=TOY_COURSE, profile="smoke", jobs=2, progress=False
    )
    assert again.graded == 1
    assert {r.student: r.score for r in again.records} == {"ann": 6, "ben": 0, "cid": 6}


def test_a_killed_grader_leaves_nothing_running(template, tmp_path):
    """SIGKILL the grader while a kernel spins in an endless cell: the worker notices that its
    parent died and takes the kernel with it (the worker has a session of its own, so nothing
    else would)."""
    folder = tmp_path / "submissions"
    folder.mkdir()
    source = read_notebook(source_notebook(TOY_COURSE, "toy"))
    (folder / "spinner_toy.ipynb").write_bytes(
        fx.infinite_loop(source, template.release("toy").notebook, TOY_TARGET)
    )
    out = tmp_path / "out"
    process = _cli(
        "grade",
        str(folder),
        "--out",
        str(out),
        "--jobs",
        "1",
        "--profile",
        "smoke",
        "--timeout-cell",
        "600",
        "--quiet",
    )
    grader = psutil.Process(process.pid)
    deadline = time.monotonic() + 180
    kernels = []
    while time.monotonic() < deadline and not kernels:
        time.sleep(0.5)
        kernels = [
            p
            for p in grader.children(recursive=True)
            if "ipykernel_launcher" in " ".join(p.cmdline())
        ]
    assert kernels, "the kernel never started"
    family = grader.children(recursive=True)
    time.sleep(2)  # the endless cell is running now
    process.kill()
    process.wait()
    _, alive = psutil.wait_procs(family, timeout=15)
    assert alive == [], [p.cmdline() for p in alive]


# ----------------------------------------------------------------------------- calibrate, preflight


def test_calibrate_writes_the_solution_metric(tmp_path):
    thresholds = tmp_path / "thresholds.json"
    thresholds.write_text(
        json.dumps(
            {"toy": {"full": {"accuracy": {"threshold": 0.5}}}, "tp3_scene15_svm": {"grading": {}}}
        )
    )
    measured = calibrate.calibrate(
        course_root=TOY_COURSE,
        profile="smoke",
        assignments=["toy"],
        margins=["0.1"],
        thresholds_file=thresholds,
        progress=False,
    )
    assert measured["toy"]["metrics"] == {"accuracy": 0.75}
    assert measured["toy"]["score"] == measured["toy"]["max_score"] == TOY_MAX
    data = json.loads(thresholds.read_text())
    assert data["toy"]["full"] == {"accuracy": {"threshold": 0.5}}
    assert data["tp3_scene15_svm"] == {"grading": {}}
    entry = data["toy"]["smoke"]["accuracy"]
    assert (entry["reference"], entry["threshold"], entry["margin"]) == (0.75, 0.65, 0.1)
    assert "calibrate --profile smoke" in entry["source"]


def test_preflight_passes_on_the_toy_course():
    result = preflight.preflight(
        course_root=TOY_COURSE, profile="smoke", jobs=2, timeout_cell=60, progress=False
    )
    assert result.errors == [], [str(p) for p in result.problems]
    timed = {(t["assignment"], t["grade_id"]) for t in result.timings}
    assert ("toy", "test_ex2_normalise") in timed and ("toy2", "test_ex1_cube") in timed
    assert all(t["limit"] == 60 for t in result.timings)
    table = preflight.format_timings(result.timings)
    assert "test_ex2_normalise" in table


def test_preflight_catches_a_test_that_passes_on_the_blank_release(tmp_path):
    """A course whose toy2 test checks nothing the student writes, and whose toy solution fails."""
    import nbformat

    from tests.data.toy import copy_toy_course

    course_root = copy_toy_course(tmp_path / "course")
    path = course_root / "solutions" / "toy2" / "toy2.ipynb"
    notebook = nbformat.read(path, 4)
    for cell in notebook.cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == "test_ex1_cube":
            cell.source = (
                '"""Check nothing."""\nfrom featurelab import evidence\n'
                'evidence.record("test_ex1_cube", anything=1)'
            )
    nbformat.write(notebook, path)
    # ... and a judge that accepts any evidence
    (course_root / "checks" / "toy2.py").write_text(
        'JUDGES = {"test_ex1_cube": lambda evidence, probes, context: None}\n'
    )
    result = preflight.preflight(
        course_root=course_root,
        profile="smoke",
        jobs=2,
        timeout_cell=60,
        progress=False,
        assignments=["toy2"],
    )
    assert any("test_ex1_cube" in p.message and "blank release" in p.message for p in result.errors)
    assert any(p.level == "warning" and "no hidden tests" in p.message for p in result.problems)
