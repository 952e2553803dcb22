"""Fast tests of the autograder's parts (no notebook is executed here).

Collecting submissions, reading and repairing notebooks, leak detection, reports, feedback,
the sandbox's limits, metric reporting, calibration arithmetic, preflight's static checks and
the command line's forwarding.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from autograder import (
    batch,
    calibrate,
    cli,
    course,
    feedback,
    preflight,
    release,
    repair,
    report,
    results,
    sandbox,
    students,
    submissions,
)
from autograder.course import AutograderError
from tests.data import fixture_submissions as fx
from tests.data.toy import TOY_COURSE, TOY_TARGET, toy_template


@pytest.fixture(scope="module")
def template():
    return toy_template()


@pytest.fixture(scope="module")
def toy(template):
    source = course.read_notebook(course.source_notebook(TOY_COURSE, "toy"))
    return source, template.release("toy")


def _ids(notebook) -> list[str]:
    return [c.metadata["nbgrader"]["grade_id"] for c in notebook.cells if "nbgrader" in c.metadata]


# ---------------------------------------------------------------------------- submissions


def _write_nb(path: Path, text: str = "{}") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_collect_nbgrader_tree(tmp_path):
    root = tmp_path / "submitted"
    _write_nb(root / "alice" / "toy" / "toy.ipynb")
    _write_nb(root / "bob" / "toy" / "toy.ipynb")
    _write_nb(root / "bob" / "toy" / "scratch.ipynb")  # ignored: toy.ipynb is there
    _write_nb(root / "bob" / "toy" / ".ipynb_checkpoints" / "toy-checkpoint.ipynb")
    found = submissions.collect(root, assignments=["toy", "toy2"])
    assert [(s.student, s.assignment, s.origin) for s in found] == [
        ("alice", "toy", "tree"),
        ("bob", "toy", "tree"),
    ]


def test_collect_flat_lms_names(tmp_path):
    _write_nb(tmp_path / "Alice Smith_1234_assignsubmission_file_toy.ipynb")
    _write_nb(tmp_path / "toy2_bob.ipynb")
    _write_nb(tmp_path / "carol.ipynb")
    _write_nb(tmp_path / "carol (1).ipynb")
    found = [
        (s.student, s.assignment, s.label)
        for s in submissions.collect(tmp_path, assignments=["toy", "toy2"])
    ]
    # a name that had to be changed (the space) gets a stable hash suffix; the label maps it back;
    # "carol (1)" is a browser's copy of carol's file: the same student, both graded
    alice = submissions.student_id("Alice Smith_1234_assignsubmission_file")
    assert alice.startswith("Alice_Smith_1234_assignsubmission_file-")
    assert found == [
        (alice, "toy", "Alice Smith_1234_assignsubmission_file_toy.ipynb"),
        ("carol", None, "carol (1).ipynb"),
        ("carol", None, "carol.ipynb"),
        ("bob", "toy2", "toy2_bob.ipynb"),
    ]
    forced = submissions.collect(tmp_path, assignments=["toy", "toy2"], assignment="toy")
    assert {s.assignment for s in forced} == {"toy"}


def test_collect_grades_one_of_two_files_of_one_student(tmp_path):
    # formerly "dan" and "dan-2" (which could be another student's id): now one student, the
    # newest file graded, the other listed in the reasons
    os.utime(_write_nb(tmp_path / "a" / "dan_toy.ipynb"), (1_000_000, 1_000_000))
    _write_nb(tmp_path / "b" / "dan_toy.ipynb")
    [found] = submissions.collect(tmp_path, assignments=["toy"])
    assert (found.student, found.label) == ("dan", "b/dan_toy.ipynb")
    assert found.notes == (
        "2 notebooks for toy: graded b/dan_toy.ipynb (the newest)",
        "extra file not graded: a/dan_toy.ipynb (an older copy)",
    )


def test_collect_zip_is_safe(tmp_path):
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("../../evil_toy.ipynb", "{}")
        bundle.writestr("__MACOSX/._erin_toy.ipynb", "junk")
        bundle.writestr("folder/erin_toy.ipynb", "{}")
        bundle.writestr("notes.txt", "not a notebook")
    found = submissions.collect(archive, assignments=["toy"], unpack_dir=tmp_path / "unpacked")
    assert [(s.student, s.problem is None) for s in found] == [("evil", False), ("erin", True)]
    assert "unsafe path" in found[0].problem  # refused, with a reason, not extracted
    assert (tmp_path / "unpacked") in found[1].path.parents
    assert not (tmp_path.parent / "evil_toy.ipynb").exists()
    assert [p.name for p in (tmp_path / "unpacked").iterdir()] == [found[1].path.name]


def test_collect_errors_are_clear(tmp_path):
    with pytest.raises(AutograderError, match="no submissions"):
        submissions.collect(tmp_path / "missing", assignments=["toy"])
    with pytest.raises(AutograderError, match="no .ipynb"):
        submissions.collect(tmp_path, assignments=["toy"])
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(AutograderError, match="not a valid .zip"):
        submissions.collect(bad, assignments=["toy"], unpack_dir=tmp_path / "u")


# ---------------------------------------------------------------------------- reading


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (b"  \n", "empty file"),
        (b'{"cells": [', "invalid JSON at line 1"),
        (b"[1, 2]", "no list of cells"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
    ],
)
def test_load_submission_rejects_with_a_reason(data, reason):
    with pytest.raises(repair.Rejected, match=reason) as info:
        repair.load_submission(data)
    assert info.value.status == "invalid"


def test_load_submission_tolerates_malformed_cells(toy):
    source, _ = toy
    raw = json.loads(nbformat.writes(source))
    raw["cells"][0]["source"] = ["# list ", "source"]
    raw["cells"].append("not a cell")
    raw["cells"].append({"cell_type": "weird", "source": "x"})
    raw["cells"][1]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "hi"}]
    del raw["cells"][2]["id"]
    notebook = repair.load_submission(json.dumps(raw).encode())
    assert notebook.cells[0].source == "# list source"
    assert notebook.cells[1].outputs == []
    assert notebook.cells[-1].cell_type == "raw"
    assert len({c.id for c in notebook.cells}) == len(notebook.cells)


# ---------------------------------------------------------------------------- identification


def test_identify_by_grade_ids_and_by_sources(template, toy):
    source, release_info = toy
    solved = students.solved_release(source, release_info.notebook)
    assert repair.identify(solved, template.releases, None)[0] == "toy"
    stripped = json.loads(fx.stripped_metadata(source, release_info.notebook, TOY_TARGET))
    stripped_nb = repair.load_submission(json.dumps(stripped).encode())
    assert repair.identify(stripped_nb, template.releases, None)[0] == "toy"
    with pytest.raises(repair.Rejected) as info:
        repair.identify(solved, template.releases, "toy2")
    assert info.value.status == "wrong_assignment"
    assert "notebook of toy, not toy2" in info.value.reason


def test_identify_unknown_notebook(template):
    blank = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)")])
    with pytest.raises(repair.Rejected, match="cannot tell which assignment"):
        repair.identify(blank, template.releases, None)
    with pytest.raises(repair.Rejected, match="not a copy of the assignment|metadata of this"):
        repair.identify(blank, template.releases, "toy")


# ---------------------------------------------------------------------------- repairs


def _repaired(data: bytes, release_info):
    return repair.repair(repair.load_submission(data), release_info)


def test_intact_solution_needs_no_repair(toy):
    source, release_info = toy
    notebook, notes, repaired = _repaired(
        fx.solution(source, release_info.notebook, TOY_TARGET), release_info
    )
    assert (notes, repaired) == ([], False)
    assert _ids(notebook) == release_info.grade_ids


def test_stripped_metadata_is_recovered_in_place(toy):
    source, release_info = toy
    data = fx.stripped_metadata(source, release_info.notebook, TOY_TARGET)
    notebook, notes, repaired = _repaired(data, release_info)
    assert repaired and "recovered" in notes[0]
    assert _ids(notebook) == release_info.grade_ids
    # the answers are the student's, at the right places
    by_id = {
        c.metadata["nbgrader"]["grade_id"]: c for c in notebook.cells if "nbgrader" in c.metadata
    }
    assert "features.norm(dim=1" in by_id["ex2_normalise"].source
    assert by_id["q1_why_normalise"].source.startswith("So that every image")
    assert (
        by_id["ex2_normalise"].metadata["nbgrader"]
        == release_info.cells_by_id["ex2_normalise"].metadata["nbgrader"]
    )


def test_stripped_metadata_with_added_and_deleted_cells(toy):
    source, release_info = toy
    solved = students.solved_release(source, release_info.notebook)
    for cell in solved.cells:
        cell.metadata.pop("nbgrader")
    ex2 = next(i for i, c in enumerate(solved.cells) if "features.norm(dim=1" in c.source)
    # a scratch cell before the answer, one after it; the ex1 answer cell deleted
    solved.cells.insert(
        ex2 + 1, nbformat.v4.new_code_cell("print(normalise_rows(torch.ones(1, 2)))")
    )
    solved.cells.insert(ex2, nbformat.v4.new_code_cell("x = 1"))
    solved.cells = [c for c in solved.cells if "return x * x" not in c.source]
    notebook, notes, _ = _repaired(nbformat.writes(solved).encode(), release_info)
    assert _ids(notebook) == release_info.grade_ids
    by_id = {
        c.metadata["nbgrader"]["grade_id"]: c for c in notebook.cells if "nbgrader" in c.metadata
    }
    assert "features.norm(dim=1" in by_id["ex2_normalise"].source  # not the scratch cells
    assert "raise NotImplementedError" in by_id["ex1_square"].source  # restored empty
    assert any("ex1_square missing: restored empty" in note for note in notes)
    sources = [c.source for c in notebook.cells]
    assert sources.index("x = 1") < sources.index(by_id["ex2_normalise"].source)


def test_stripped_and_mostly_edited_is_rejected(toy):
    source, release_info = toy
    solved = students.solved_release(source, release_info.notebook)
    for cell in solved.cells:
        cell.metadata.pop("nbgrader")
        if cell.cell_type == "code" and "assert" in cell.source:
            cell.source += "\n# edited"
    with pytest.raises(repair.Rejected, match="cannot be matched") as info:
        _repaired(nbformat.writes(solved).encode(), release_info)
    assert info.value.status == "invalid"


def test_deleted_test_cell_is_restored_after_its_answer(toy):
    source, release_info = toy
    notebook, notes, _ = _repaired(
        fx.deleted_test(source, release_info.notebook, TOY_TARGET), release_info
    )
    ids = _ids(notebook)
    assert ids == release_info.grade_ids
    assert any("test_ex2_normalise missing: restored" in note for note in notes)


def test_duplicates_keep_the_last_copy(toy):
    source, release_info = toy
    notebook, notes, _ = _repaired(
        fx.duplicated_cell(source, release_info.notebook, TOY_TARGET), release_info
    )
    assert _ids(notebook) == release_info.grade_ids
    marked = [
        c
        for c in notebook.cells
        if c.metadata.get("nbgrader", {}).get("grade_id") == "ex2_normalise"
    ]
    assert "features.norm(dim=1" in marked[0].source  # the last copy (the right one) is graded
    assert any("sum(dim=1" in c.source for c in notebook.cells)  # the earlier copy still runs
    assert any("appears 2 times: graded the last copy" in note for note in notes)


def test_tampered_metadata_is_reset_and_edits_reported(toy):
    source, release_info = toy
    solved = students.solved_release(source, release_info.notebook)
    for cell in solved.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade_id") == "test_ex1_square":
            meta["points"] = 100
            meta["grade"] = False
            cell.source = "pass"
        if meta.get("grade_id") == "setup":
            meta["grade_id"] = "not_in_release"
    notebook, notes, _ = _repaired(nbformat.writes(solved).encode(), release_info)
    test = next(
        c
        for c in notebook.cells
        if c.metadata.get("nbgrader", {}).get("grade_id") == "test_ex1_square"
    )
    assert test.metadata["nbgrader"]["points"] == 2 and test.metadata["nbgrader"]["grade"] is True
    assert any("test_ex1_square edited: graded with the original" in note for note in notes)
    assert any("unknown grade id(s) not_in_release" in note for note in notes)
    assert any("setup" in note and "restored" in note for note in notes) or "setup" in _ids(
        notebook
    )


# ---------------------------------------------------------------------------- release leaks


def test_release_of_toy_leaks_nothing(toy):
    source, release_info = toy
    assert release.find_leaks(source, release_info.notebook) == []


def test_leaks_are_found(toy):
    source, release_info = toy
    leaky = nbformat.reads(nbformat.writes(release_info.notebook), as_version=4)
    for cell in leaky.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid == "ex2_normalise":
            cell.source += "\n    return features / features.norm(dim=1, keepdim=True)"
        if gid == "test_ex1_square":
            cell.source += "\n### BEGIN HIDDEN TESTS"
        if gid == "setup":
            cell.outputs = [nbformat.v4.new_output("stream", text="hi")]
            cell.execution_count = 3
    leaks = release.find_leaks(source, leaky)
    assert any("ex2_normalise: reveals" in leak for leak in leaks)
    assert any(
        "test_ex1_square: contains the marker 'BEGIN HIDDEN TESTS'" in leak for leak in leaks
    )
    assert any("setup: has outputs" in leak for leak in leaks)
    assert any("setup: has an execution count" in leak for leak in leaks)


def test_hidden_test_lines_are_secret(toy):
    source, release_info = toy
    leaky = nbformat.reads(nbformat.writes(release_info.notebook), as_version=4)
    leaky.cells[0].source += "\n    probe=_evidence.attempt(normalise_rows, _evidence"
    leaks = release.find_leaks(source, leaky)
    assert leaks == [] or all("title" in leak for leak in leaks)  # partial line: not a leak
    leaky.cells[
        0
    ].source += '\n    probe=_evidence.attempt(normalise_rows, _evidence.probes().tensors("ex2")["features"]),'
    assert any("reveals 'probe=_evidence" in leak for leak in release.find_leaks(source, leaky))


# ---------------------------------------------------------------------------- simulated students


def test_solved_release_has_answers_without_markers(toy):
    source, release_info = toy
    solved = students.solved_release(source, release_info.notebook)
    text = nbformat.writes(solved)
    assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text
    assert "return x * x" in text
    with pytest.raises(ValueError, match="not found"):
        students.edit_answer(solved, "ex1_square", "no such text", "x")


# ---------------------------------------------------------------------------- reports


def _record(**changes):
    cells = [
        results.CellResult(
            "test_ex1_square", "Exercise 1 (2 points)", "auto", 2.0, 2.0, "passed", "passed"
        ),
        results.CellResult(
            "test_ex2_normalise",
            "Exercise 2 (3 points)",
            "auto",
            3.0,
            0.0,
            "failed",
            "each row must be <divided> by its L2 norm",
        ),
        results.CellResult(
            "q1_why_normalise", "Question 1", "manual", 1.0, None, "manual", "to be graded by hand"
        ),
    ]
    record = results.Record(
        "alice",
        "toy",
        "alice_toy.ipynb",
        "ok",
        ["+1 point(s) to grade by hand"],
        2.0,
        5.0,
        cells,
        [
            {
                "cell": "ex2_normalise",
                "kind": "answer cell",
                "ename": "ValueError",
                "message": "ValueError: bad",
            }
        ],
    )
    for key, value in changes.items():
        setattr(record, key, value)
    return record


def test_grades_csv_columns_and_values():
    rows = report.grades_csv(
        [
            _record(),
            _record(
                student="bob",
                score=0.0,
                status="invalid",
                cells=[],
                reasons=["empty file"],
                label="bob_toy.ipynb",
            ),
        ]
    ).splitlines()
    assert rows[0] == (
        "student,assignment,score,max_score,status,reason,source,test_ex1_square,"
        "test_ex2_normalise,q1_why_normalise"
    )
    assert rows[1] == "alice,toy,2,5,ok,+1 point(s) to grade by hand,alice_toy.ipynb,2,0,"
    assert rows[2] == "bob,toy,0,5,invalid,empty file,bob_toy.ipynb,,,"


def test_grades_csv_prefixes_cells_of_several_assignments():
    other = _record(
        assignment="toy2",
        cells=[
            results.CellResult("test_ex1_cube", "Exercise 1", "auto", 1.0, 1.0, "passed", "passed")
        ],
    )
    header = report.grades_csv([_record(), other]).splitlines()[0]
    assert "toy:test_ex1_square" in header and "toy2:test_ex1_cube" in header


def test_gradescope_results_schema():
    data = report.gradescope_results([_record()])
    assert data["score"] == 2.0
    assert {t["name"] for t in data["tests"]} == {
        "Exercise 1 (2 points) [test_ex1_square]",
        "Exercise 2 (3 points) [test_ex2_normalise]",
    }
    for test in data["tests"]:
        assert set(test) >= {"name", "score", "max_score", "output", "visibility"}
        assert test["visibility"] in ("hidden", "after_due_date", "after_published", "visible")
    assert "ValueError: bad" in data["output"]


def test_feedback_page_is_escaped_and_self_contained():
    page = feedback.render(_record())
    assert "&lt;divided&gt;" in page and "<divided>" not in page
    assert "2 / 5" in page and "to be graded by hand" in page
    assert "<link" not in page and "<script" not in page and "http" not in page.split("<footer")[0]


def test_messages_never_quote_hidden_test_lines():
    hidden = ['assert tensors_close(normalise_rows(probe), expected), "each row must be divided"']
    leaked = (
        'oops: assert tensors_close(normalise_rows(probe), expected), "each row must be divided"'
    )
    assert results._clean_message(leaked, hidden) == ""
    assert results._clean_message("\x1b[31mred\x1b[0m text", hidden) == "red text"
    assert len(results._clean_message("x" * 1000, hidden)) == 400


def test_failing_line_is_shown_only_when_visible():
    red = "\x1b[0;31m"
    output = {
        "ename": "AssertionError",
        "evalue": "",
        "traceback": [
            f"{red}AssertionError{red} Traceback (most recent call last)",
            f"Cell In[12], line 3\n      1 x = 1\n{red}----> 3{red} assert normalise_rows(v).sum() == 2\n",
        ],
    }
    visible = "x = 1\nassert normalise_rows(v).sum() == 2"
    assert results.failing_visible_line(output, visible) == "assert normalise_rows(v).sum() == 2"
    assert results.failing_visible_line(output, "x = 1") is None  # a hidden line: never shown
    assert results._error_message(output, [], 30, visible) == (
        "failed",
        "this check failed: assert normalise_rows(v).sum() == 2",
    )
    # not a visible line: the exception's name only (its message is student code's text)
    assert results._error_message(output, [], 30, "x = 1") == ("failed", "AssertionError")
    judged = {"ename": "JudgeVerdict", "evalue": "count frozen parameters too", "traceback": []}
    assert results._error_message(judged, [], 30, visible) == (
        "failed",
        "count frozen parameters too",
    )
    forged = {"ename": "AssertionError", "evalue": "secret from a hidden cell", "traceback": []}
    assert "secret" not in results._error_message(forged, [], 30, visible)[1]


def test_running_cell_from_the_journal():
    events = [
        {"event": "start", "index": 1},
        {"event": "end", "index": 1},
        {"event": "start", "index": 3, "grade_id": "ex2"},
    ]
    assert results.running_cell(events)["index"] == 3
    assert results.running_cell(events[:2]) is None


# ---------------------------------------------------------------------------- sandbox


def test_disk_usage_counts_allocated_blocks_and_refuses_a_flood(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "full.bin").write_bytes(os.urandom(3 << 20))
    with open(tmp_path / "sparse.bin", "wb") as f:  # 1 GB apparent size, nothing written
        f.truncate(1 << 30)
    used = sandbox.disk_usage_mb(tmp_path)
    assert 2.9 < used < 3.5
    monkeypatch.setattr(sandbox, "MAX_DISK_ENTRIES", 2)
    for k in range(3):
        (tmp_path / f"f{k}").touch()
    assert sandbox.disk_usage_mb(tmp_path) == float("inf")


def test_disk_usage_sees_files_deleted_while_open(tmp_path):
    import psutil

    with open(tmp_path / "hidden", "wb") as held:
        os.unlink(tmp_path / "hidden")
        held.write(os.urandom(3 << 20))
        held.flush()
        assert sandbox.disk_usage_mb(tmp_path) == 0
        assert 2.9 < sandbox.unlinked_open_files_mb([psutil.Process()]) < 3.5
    assert sandbox.unlinked_open_files_mb([psutil.Process()]) < 0.1


# The limits (tree memory, wall clock, escaped and orphaned processes) are tested on the path
# grading takes, the long-lived Worker: the toy batch's memory hog and infinite loop
# (test_autograder_toy.py) and the hostile batch's double-forked daemon (test_hostile.py).


# ---------------------------------------------------------------------------- metrics, calibration


def test_report_metric(tmp_path, monkeypatch):
    from featurelab.reporting import read_metrics, report_metric

    monkeypatch.delenv("FEATURELAB_METRICS_FILE", raising=False)
    report_metric("accuracy", 0.5)  # unset: nothing happens, nothing raised
    target = tmp_path / "m" / "metrics.json"
    monkeypatch.setenv("FEATURELAB_METRICS_FILE", str(target))
    report_metric("accuracy", 0.5)
    report_metric("nmi", __import__("numpy").float32(0.25))
    report_metric("accuracy", 0.75)
    assert read_metrics(target) == {"accuracy": 0.75, "nmi": 0.25}
    with pytest.raises(ValueError, match="not a finite number"):
        report_metric("accuracy", float("nan"))


def test_calibration_arithmetic():
    assert calibrate.parse_margins(None) == (0.05, {})
    assert calibrate.parse_margins(["0.1", "nmi=0.02"]) == (0.1, {"nmi": 0.02})
    with pytest.raises(AutograderError):
        calibrate.parse_margins(["accuracy=lots"])
    data = {"tp3": {"full": {"accuracy": {"threshold": 0.8}}}, "other": {}}
    calibrate.update_thresholds(
        data,
        "tp3",
        "smoke",
        {"accuracy": 0.9, "nmi": 0.5},
        default_margin=0.05,
        margins={"nmi": 0.1},
        source="test",
    )
    assert data["tp3"]["full"] == {"accuracy": {"threshold": 0.8}}  # other profiles kept
    assert data["tp3"]["smoke"]["accuracy"] == {
        "threshold": 0.85,
        "reference": 0.9,
        "margin": 0.05,
        "source": "test",
    }
    assert data["tp3"]["smoke"]["nmi"]["threshold"] == 0.4
    assert "other" in data


# ---------------------------------------------------------------------------- preflight (static)


def test_static_checks_pass_on_the_toy_sources():
    for assignment in ("toy", "toy2"):
        notebook = course.read_notebook(course.source_notebook(TOY_COURSE, assignment))
        assert [
            p for p in preflight.static_checks(assignment, notebook) if p.level == "error"
        ] == []


def test_static_checks_find_broken_sources(toy):
    source, _ = toy
    broken = nbformat.reads(nbformat.writes(source), as_version=4)
    by_id = {c.metadata["nbgrader"]["grade_id"]: c for c in broken.cells}
    by_id["test_ex1_square"].source = (
        "from autograder.checks import tensors_equal\n" + by_id["test_ex1_square"].source
    )
    by_id["test_ex3_accuracy"].metadata["nbgrader"]["points"] = 0
    by_id["ex3_accuracy"].source = by_id["ex3_accuracy"].source.replace("### END SOLUTION", "")
    by_id["setup"].outputs = [nbformat.v4.new_output("stream", text="x")]
    by_id["ex1_square"].metadata["nbgrader"]["grade_id"] = "ex2_normalise"
    messages = " | ".join(str(p) for p in preflight.static_checks("toy", broken))
    for expected in (
        "imports autograder",
        "without points",
        "unbalanced BEGIN/END SOLUTION",
        "has outputs",
        "used 2 times",
    ):
        assert expected in messages


# ---------------------------------------------------------------------------- command line


def test_cli_forwards_keyword_arguments(monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr(
        batch,
        "main",
        lambda submissions, **kwargs: seen.update(kwargs, submissions=submissions) or 0,
    )
    code = cli.main(
        [
            "grade",
            str(tmp_path),
            "--out",
            str(tmp_path / "o"),
            "--jobs",
            "3",
            "--profile",
            "smoke",
            "--timeout-cell",
            "20",
            "--memory-mb",
            "3000",
            "--assignment",
            "toy",
        ]
    )
    assert code == 0
    assert seen["jobs"] == 3 and seen["profile"] == "smoke" and seen["timeout_cell"] == 20
    assert seen["memory_mb"] == 3000 and seen["assignment"] == "toy" and seen["resume"] is True
    with pytest.raises(SystemExit):
        cli.main(["grade", str(tmp_path), "--out", "o", "--jobs", "0"])


def test_cli_reports_user_errors(capsys, tmp_path):
    code = cli.main(["--course-root", str(TOY_COURSE), "release", "nope", "--check"])
    assert code == 1
    assert "unknown assignment(s) nope" in capsys.readouterr().err


def test_module_entry_point():
    result = subprocess.run(
        [sys.executable, "-m", "autograder", "--help"],
        capture_output=True,
        text=True,
        cwd=course.REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(course.REPO_ROOT)},
    )
    assert result.returncode == 0
    for command in ("release", "grade", "calibrate", "preflight", "demo"):
        assert command in result.stdout
