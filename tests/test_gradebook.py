"""Hand-graded answers: the nbgrader course ``grade`` writes, rubrics and guides, the
grade-by-question server, regrades that keep the graders' work, and the final export.

The class (tests/data/handgrading.py: four toy submissions) is graded once per session; every
test that gives scores works on its own copy. The browser side is tests/test_browser.py.
"""

from __future__ import annotations

import csv
import json
import re
import threading
import urllib.error
import urllib.parse
import urllib.request

import pytest

from autograder import course, export, gradebook, questions, rubrics, students
from autograder.results import Record
from tests.data import handgrading
from tests.data.toy import TOY_COURSE, shared_work_dir

QUESTION = handgrading.QUESTION


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    return handgrading.graded_class(tmp_path_factory)


def _gradebook(out):
    from nbgrader.api import Gradebook

    return Gradebook(gradebook.db_url(gradebook.course_dir(out)), course_id=gradebook.COURSE_ID)


def _records(out) -> dict[str, Record]:
    data = json.loads((gradebook.course_dir(out) / gradebook.RECORDS_FILE).read_text())
    return {r["student"]: Record.from_dict(r) for r in data}


def _rows(path) -> dict[str, dict]:
    with open(path, newline="") as stream:
        return {row["student"]: row for row in csv.DictReader(stream)}


def _give(out, student: str, cell: str, score: float | None, comment: str | None = None):
    with _gradebook(out) as gb:
        grade = gb.find_grade(cell, "toy", "toy", student)
        grade.manual_score = score
        grade.needs_manual_grade = score is None and grade.auto_score is None
        if comment is not None:
            gb.find_comment(cell, "toy", "toy", student).manual_comment = comment
        gb.db.commit()


# ----------------------------------------------------------------------------- fast units


def test_every_hand_graded_question_of_the_course_has_a_rubric_that_adds_up():
    root = course.REPO_ROOT
    found = []
    for assignment in course.assignments(root):
        source = course.read_notebook(course.source_notebook(root, assignment))
        found += rubrics.questions(source, assignment)
    assert {q.assignment for q in found} == set(course.assignments(root))
    problems = [p for q in found for p in rubrics.rubric_problems(q)]
    assert problems == []
    for question in found:  # the release never carries a model answer or a rubric
        release = course.read_notebook(course.release_notebook(root, question.assignment))
        text = "\n".join(cell.source for cell in release.cells)
        assert "**Rubric" not in text
        for line in question.rubric.splitlines() + question.model_answer.splitlines():
            if len(line.strip()) >= 30:  # shorter lines ("accuracy.") are common words
                assert line.strip() not in text, (question.grade_id, line)


def test_rubric_problems_are_reported():
    def question(text, points=2.0):
        answer, rubric = rubrics.split_rubric(text)
        return rubrics.Question("a", "q", "Q", "", points, answer, rubric)

    assert rubrics.rubric_problems(question("An answer.")) == [
        "a: q: no rubric (a '**Rubric (N points):**' paragraph after the answer)"
    ]
    wrong = question("An answer.\n\n**Rubric (2 points):** 1 pt: this; 0.5 pt: that.")
    assert rubrics.rubric_problems(wrong) == [
        "a: q: the rubric's criteria add up to 1.5 pt, the cell gives 2"
    ]
    assert rubrics.rubric_problems(question("A.\n\n**Rubric (2 points):** 2 pt: all.")) == []


def test_a_worker_s_graded_notebook_is_kept_by_the_client(tmp_path):
    record = Record("anna7", "toy", "anna7_toy.ipynb", "ok")
    record.notebook = '{"cells": []}'
    gradebook.keep_autograded(tmp_path, record)
    assert record.notebook is None and record.autograded == "autograded/anna7/toy/toy.ipynb"
    assert (tmp_path / record.autograded).read_text() == '{"cells": []}'
    assert record.to_dict()["notebook"] is None  # the state never holds the notebook


# ----------------------------------------------------------------------------- the course


@pytest.mark.slow
def test_grade_writes_the_course_formgrader_opens(graded):
    out = graded / "out"
    course_dir = gradebook.course_dir(out)
    records = _records(out)
    assert set(records) == set(handgrading.ANSWERS)
    assert "c.CourseDirectory.root" in (course_dir / "nbgrader_config.py").read_text()
    for sub in ("source", "release"):
        assert (course_dir / sub / "toy" / "toy.ipynb").is_file()
    with _gradebook(out) as gb:
        assert {s.id for s in gb.students} == set(handgrading.ANSWERS)
        for student, record in records.items():
            notebook = course_dir / gradebook.autograded_path(student, "toy")
            graded_nb = course.read_notebook(notebook)
            answer = gradebook.answer_sources(graded_nb)[QUESTION]
            expected_answer = handgrading.ANSWERS[student]
            assert (answer == expected_answer) if expected_answer else "YOUR ANSWER" in answer
            for cell in record.cells:
                grade = gb.find_grade(cell.grade_id, "toy", "toy", student)
                if cell.kind == "auto":
                    assert grade.auto_score == cell.score and not grade.needs_manual_grade
            q1 = gb.find_grade(QUESTION, "toy", "toy", student)
            comment = gb.find_comment(QUESTION, "toy", "toy", student)
            if handgrading.ANSWERS[student] is None:  # left as released: 0, nothing to grade
                assert (q1.auto_score, q1.needs_manual_grade) == (0, False)
                assert comment.auto_comment == gradebook.NO_RESPONSE
            else:
                assert q1.auto_score is None and q1.needs_manual_grade
        messages = gb.find_comment("ex2_normalise", "toy", "toy", "anna7").auto_comment
        assert "test_ex2_normalise" in messages and "passed" in messages


@pytest.mark.slow
def test_grading_guide_shows_every_question_s_model_answer_and_rubric(graded):
    page = (gradebook.course_dir(graded / "out") / "guide" / "toy.html").read_text()
    source = course.read_notebook(course.source_notebook(TOY_COURSE, "toy"))
    [question] = rubrics.questions(source, "toy")
    assert question.rubric and question.model_answer
    assert "Rubric (1 point):" in page and question.model_answer.split(":")[0] in page
    assert question.heading in page


@pytest.mark.slow
def test_regrade_keeps_hand_scores_unless_the_answer_changed(graded, tmp_path):
    root = handgrading.copy_class(graded, tmp_path / "class")
    out = root / "out"
    _give(out, "anna7", QUESTION, 1.0, "well argued")
    _give(out, "bert7", QUESTION, 0.5, "partly")
    _give(out, "carl7", "test_ex1_square", 1.0)  # a test's score overridden by hand
    path = root / "submissions" / "bert7_toy.ipynb"
    notebook = course.read_notebook(path)
    students.answer_cell(notebook, QUESTION).source = "Every image then weighs the same."
    students.write(notebook, path)

    result = handgrading.grade(root)  # `grade` (resumed: bert7 is regraded) updates the course
    assert {r.student for r in result.records} == set(handgrading.ANSWERS)
    with _gradebook(out) as gb:
        anna = gb.find_grade(QUESTION, "toy", "toy", "anna7")
        assert (anna.manual_score, anna.needs_manual_grade) == (1.0, False)
        assert gb.find_comment(QUESTION, "toy", "toy", "anna7").manual_comment == "well argued"
        bert = gb.find_grade(QUESTION, "toy", "toy", "bert7")
        assert (bert.manual_score, bert.needs_manual_grade) == (None, True)
        assert gb.find_comment(QUESTION, "toy", "toy", "bert7").manual_comment is None
        assert gb.find_grade("test_ex1_square", "toy", "toy", "carl7").manual_score == 1.0
    answer = gradebook.answer_sources(
        course.read_notebook(gradebook.course_dir(out) / gradebook.autograded_path("bert7", "toy"))
    )[QUESTION]
    assert answer == "Every image then weighs the same."


@pytest.mark.slow
def test_export_totals_automatic_and_hand_points(graded, tmp_path):
    root = handgrading.copy_class(graded, tmp_path / "class")
    out = root / "out"
    records = _records(out)
    _give(out, "anna7", QUESTION, 1.0, "Clear and *right*.")
    _give(out, "carl7", QUESTION, 0.5)
    _give(out, "carl7", "test_ex2_normalise", 1.0)  # overrides the automatic 3
    items, written = export.export(out)
    rows = _rows(written["grades"])
    points = {c.grade_id: c.points for c in records["anna7"].cells}
    anna = rows["anna7"]
    assert float(anna["score"]) == records["anna7"].score + 1.0
    assert float(anna["max_score"]) == sum(points.values())
    assert (anna["hand_score"], anna["complete"], anna[QUESTION]) == ("1", "yes", "1")
    carl = records["carl7"]
    expected = carl.score - points["test_ex2_normalise"] + 1.0 + 0.5
    assert float(rows["carl7"]["score"]) == expected
    assert rows["bert7"]["complete"] == "no" and rows["bert7"][QUESTION] == ""
    assert "still to grade by hand" in rows["bert7"]["reason"]
    assert rows["dora7"]["complete"] == "yes"  # nothing answered: nothing to grade
    lms = _rows(written["lms"])
    assert lms["anna7"]["toy"] == anna["score"] and lms["bert7"]["toy"] == ""
    results = json.loads((written["results"] / "anna7.json").read_text())
    assert results["score"] == float(anna["score"])
    [hand] = [t for t in results["tests"] if f"[{QUESTION}]" in t["name"]]
    assert (hand["score"], hand["output"]) == (1.0, "Clear and *right*.")
    page = (written["feedback"] / "anna7" / "toy.html").read_text()
    assert "Clear and *right*." in page and f"Score: <strong>{anna['score']} / " in page
    assert sum(1 for f in items if f.complete) == 3


@pytest.mark.slow
def test_submissions_that_were_not_graded_go_into_the_gradebook_too(graded, tmp_path):
    """Refused (invalid), not graded (error: the instructor looks at it) and unknown-assignment
    records next to the class: the first scores 0 with nothing to grade, the second waits for
    a hand score, the last cannot be placed and is said so."""
    root = handgrading.copy_class(graded, tmp_path / "class")
    out = root / "out"
    records = list(_records(out).values())
    invalid = Record("eve7", "toy", "eve7_toy.ipynb", "invalid", ["empty file"])
    error = Record("fay7", "toy", "fay7_toy.ipynb", "error", ["nbgrader could not grade it"])
    error.autograded = records[0].autograded  # the submitted notebook, kept for the grader
    unknown = Record("gus7", None, "gus7.ipynb", "invalid", ["not a notebook of the course"])
    summary = gradebook.write_course(
        [*records, invalid, error, unknown], out, course_root=TOY_COURSE, work_dir=shared_work_dir()
    )
    assert summary.skipped == ["gus7.ipynb: no assignment of the course"]
    with _gradebook(out) as gb:
        eve = gb.find_grade(QUESTION, "toy", "toy", "eve7")
        assert (eve.auto_score, eve.needs_manual_grade) == (0, False)
        assert gb.find_grade("test_ex1_square", "toy", "toy", "eve7").auto_score == 0
        assert gb.find_grade(QUESTION, "toy", "toy", "fay7").needs_manual_grade
    assert (gradebook.course_dir(out) / gradebook.autograded_path("fay7", "toy")).is_file()
    assert not (gradebook.course_dir(out) / gradebook.autograded_path("eve7", "toy")).exists()
    rows = _rows(export.export(out)[1]["grades"])
    assert (rows["eve7"]["complete"], rows["eve7"]["score"]) == ("yes", "0")
    assert rows["fay7"]["complete"] == "no" and rows["gus7"]["status"] == "invalid"
    _give(out, "fay7", QUESTION, 1.0)
    assert _rows(export.export(out)[1]["grades"])["fay7"]["complete"] == "yes"


# ----------------------------------------------------------------------------- question server


@pytest.fixture
def server(graded, tmp_path):
    root = handgrading.copy_class(graded, tmp_path / "class")
    running = questions.make_server(root / "out", port=0)
    thread = threading.Thread(target=running.serve_forever, daemon=True)
    thread.start()
    running.out = root / "out"
    yield running
    running.shutdown()
    running.server_close()


def _get(server, path: str) -> str:
    port = server.server_address[1]
    return urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30).read().decode()


def _post(server, path: str, fields: dict):
    port = server.server_address[1]
    data = urllib.parse.urlencode(fields).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data)
    return urllib.request.urlopen(request, timeout=30)


def _form(page: str) -> dict:
    return dict(re.findall(r"<(?:input|textarea)[^>]* name='([^']+)'[^>]*value='([^']*)'", page))


@pytest.mark.slow
def test_question_page_saves_scores_and_comments_into_the_gradebook(server):
    page = _get(server, f"/q/toy/{QUESTION}")
    for student in handgrading.ANSWERS:
        assert student not in page  # anonymised
    assert page.count("class='answer ") == len(handgrading.ANSWERS)
    assert "Rubric (1 point):" in page
    form = _form(page)
    scores = sorted(k for k in form if k.startswith("score-"))
    with _gradebook(server.out) as gb:
        owner = {k: gb.find_grade_by_id(k[len("score-") :]).student.id for k in scores}
    answered = [k for k in scores if handgrading.ANSWERS[owner[k]] is not None]
    fields = dict(form)
    fields.update({answered[0]: "1", answered[1]: "0.25"})
    response = _post(server, f"/q/toy/{QUESTION}", fields)
    assert response.status == 200 and "saved=2" in response.url
    with _gradebook(server.out) as gb:
        for key, value in ((answered[0], 1.0), (answered[1], 0.25)):
            grade = gb.find_grade(QUESTION, "toy", "toy", owner[key])
            assert (grade.manual_score, grade.needs_manual_grade) == (value, False)
    # a stale page (its hidden "was" values) does not undo a score given meanwhile elsewhere
    _give(server.out, owner[answered[2]], QUESTION, 0.75)
    _post(server, f"/q/toy/{QUESTION}", dict(form))
    with _gradebook(server.out) as gb:
        assert gb.find_grade(QUESTION, "toy", "toy", owner[answered[2]]).manual_score == 0.75
    # out of range: refused, said, not saved
    bad = dict(form, **{answered[2]: "7"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        _post(server, f"/q/toy/{QUESTION}", bad)
    assert refused.value.code == 422 and "is not between 0 and 1" in refused.value.read().decode()
    # a page of another site does not know the secret
    with pytest.raises(urllib.error.HTTPError) as forbidden:
        _post(server, f"/q/toy/{QUESTION}", dict(form, token="guess", **{answered[2]: "0"}))
    assert forbidden.value.code == 403
    with _gradebook(server.out) as gb:
        assert gb.find_grade(QUESTION, "toy", "toy", owner[answered[2]]).manual_score == 0.75
    index = _get(server, "/")
    assert f"/q/toy/{QUESTION}" in index and "4 / 4" in index
