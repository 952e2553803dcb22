"""The nbgrader course of a grading run, ``OUT/course``: what ``nbgrader formgrader`` opens.

    python -m autograder gradebook OUT        # also done at the end of every ``grade``

``OUT/course/`` is an ordinary nbgrader course directory, written with nbgrader's own API
(:class:`nbgrader.api.Gradebook`), as ``nbgrader autograde`` would have left it:

* ``nbgrader_config.py``: the course root is the folder itself (it can be moved);
* ``source/<id>/`` and ``release/<id>/``: the assignments as graded (from the run's template);
* ``gradebook.db``: the assignments and their cells (copied from the template's gradebook),
  every student, one submission per student and assignment, per graded cell the automatic
  score (``needs_manual_grade`` for the free-text answers still to grade), and per answer cell
  an automatic comment: our messages for the tests that follow it, or nbgrader's
  "No response." for an answer left as released;
* ``autograded/<student>/<id>/<id>.ipynb``: the graded notebooks (the submitted notebook when
  grading did not finish), kept in ``OUT/autograded/`` by the grader
  (:func:`keep_autograded`) and linked here;
* ``guide/<id>.html``: the grading guides (:mod:`autograder.rubrics`);
* ``records.json``: the records the gradebook was built from (``export`` reads them).

**Regrading keeps the graders' work.** A hand-given score (``manual_score``, extra credit) and
comment stay as they are unless the answer they grade changed: the source of that answer cell
differs from the notebook graded before (for a test cell overridden by hand: any answer cell
of the notebook changed). A changed answer is to be graded again.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from . import course as course_mod
from .course import REPO_ROOT
from .results import Record

COURSE_DIR = "course"
COURSE_ID = "featurelab"
RECORDS_FILE = "records.json"
NO_RESPONSE = "No response."  # nbgrader's own automatic comment for an unanswered cell

CONFIG_TEXT = f'''"""nbgrader configuration of a featurelab grading run (written by python -m autograder).

Open the course with formgrader: `cd` into this folder, run `jupyter lab`, then
Nbgrader > Formgrader (or `jupyter server` and open /formgrader).
"""

import os

c = get_config()  # noqa: F821
c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.course_id = {COURSE_ID!r}
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(c.CourseDirectory.root, "gradebook.db")
'''


def course_dir(out: Path) -> Path:
    return Path(out) / COURSE_DIR


def db_url(course: Path) -> str:
    return f"sqlite:///{Path(course).resolve() / 'gradebook.db'}"


def autograded_path(student: str, assignment: str) -> str:
    """Where a graded notebook is, relative to ``OUT`` and to ``OUT/course``."""
    return f"autograded/{student}/{assignment}/{assignment}.ipynb"


def _safe_name(text: str | None) -> bool:
    from .submissions import report_name

    return bool(text) and report_name(text) == text


def keep_autograded(out: Path, record: Record) -> None:
    """Write the graded notebook a record carries (``record.notebook``, from a worker) into
    ``OUT/autograded/`` and point ``record.autograded`` at it. Called by the process that owns
    ``OUT`` (:func:`autograder.grading.save_record`)."""
    from .grading import atomic_write_text

    text, record.notebook = record.notebook, None
    if text is None or not _safe_name(record.student) or not _safe_name(record.assignment):
        return
    relative = autograded_path(record.student, record.assignment)
    atomic_write_text(Path(out) / relative, text)
    record.autograded = relative


def read_notebook(path: Path):
    try:
        return course_mod.read_notebook(path) if path.is_file() else None
    except (OSError, ValueError):
        return None


def answer_sources(notebook) -> dict[str, str]:
    """grade id -> source of every answer cell (nbgrader ``solution``) of a notebook."""
    if notebook is None:
        return {}
    return {
        cell.metadata["nbgrader"]["grade_id"]: cell.source
        for cell in notebook.cells
        if cell.metadata.get("nbgrader", {}).get("solution")
        and cell.metadata["nbgrader"].get("grade_id")
    }


def changed_answers(old, new) -> set[str]:
    """Answer cells whose source differs between two graded notebooks (none without ``old``)."""
    if old is None:
        return set()
    before, after = answer_sources(old), answer_sources(new)
    return {gid for gid in before.keys() | after.keys() if before.get(gid) != after.get(gid)}


# --------------------------------------------------------------------------------------------
# definitions: the assignments and their cells, from the template's gradebook


def _sync_assignment(template_gb, gb, name: str) -> None:
    source = template_gb.find_assignment(name)
    gb.update_or_create_assignment(name, duedate=source.duedate)
    for notebook in source.notebooks:
        nb = notebook.name
        gb.update_or_create_notebook(nb, name)
        for cell in notebook.grade_cells:
            gb.update_or_create_grade_cell(
                cell.name, nb, name, max_score=cell.max_score, cell_type=cell.cell_type
            )
        for cell in notebook.solution_cells:
            gb.update_or_create_solution_cell(cell.name, nb, name)
        for cell in notebook.task_cells:
            gb.update_or_create_task_cell(
                cell.name, nb, name, max_score=cell.max_score, cell_type=cell.cell_type
            )
        for cell in notebook.source_cells:
            gb.update_or_create_source_cell(
                cell.name,
                nb,
                name,
                cell_type=cell.cell_type,
                locked=cell.locked,
                source=cell.source,
                checksum=cell.checksum,
            )
        _remove_stale_cells(gb, template_gb.find_notebook(nb, name), gb.find_notebook(nb, name))


def _remove_stale_cells(gb, template_nb, course_nb) -> None:
    """Cells the source no longer has: removed with their grades and comments."""
    wanted = {(type(c).__name__, c.name) for c in template_nb._base_cells}
    wanted |= {("SourceCell", c.name) for c in template_nb.source_cells}
    for cell in list(course_nb._base_cells) + list(course_nb.source_cells):
        if (type(cell).__name__, cell.name) in wanted:
            continue
        for row in list(getattr(cell, "grades", [])) + list(getattr(cell, "comments", [])):
            gb.db.delete(row)
        gb.db.delete(cell)
    gb.db.commit()


def _copy_assignment_files(template_root: Path, course: Path, assignment: str) -> None:
    for source, target in ((course_mod.SOURCE_DIR, "source"), (course_mod.RELEASE_DIR, "release")):
        destination = course / target / assignment
        if destination.exists():
            shutil.rmtree(destination)
        shutil.copytree(
            template_root / source / assignment,
            destination,
            ignore=shutil.ignore_patterns(*course_mod.IGNORED_NAMES),
        )


# --------------------------------------------------------------------------------------------
# one submission


@dataclass
class Summary:
    """What :func:`write_course` did."""

    course: Path
    submissions: int = 0
    to_grade: int = 0  # answers still to grade by hand
    kept: int = 0  # hand-given scores kept through a regrade
    reset: int = 0  # hand-given scores dropped: the answer changed
    skipped: list[str] = field(default_factory=list)  # records that cannot be in the gradebook


def _rows(gb, submitted_nb) -> tuple[dict, dict]:
    """Grades and comments of a submitted notebook by cell name (missing rows created: cells
    added to the source since the submission was first written)."""
    from nbgrader.api import Comment, Grade

    grades = {g.name: g for g in submitted_nb.grades}
    comments = {c.name: c for c in submitted_nb.comments}
    master = submitted_nb.notebook
    for cell in master.grade_cells + master.task_cells:
        if cell.name not in grades:
            grades[cell.name] = Grade(cell_id=cell.id, notebook=submitted_nb)
    for cell in master.solution_cells + master.task_cells:
        if cell.name not in comments:
            comments[cell.name] = Comment(cell_id=cell.id, notebook=submitted_nb)
    return grades, comments


def _tests_by_answer(notebook) -> dict[str, list[str]]:
    """answer cell grade id -> the test cells after it (code answers: up to the next one)."""
    result: dict[str, list[str]] = {}
    current = None
    for cell in notebook.cells if notebook is not None else []:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution"):
            result.setdefault(meta.get("grade_id"), [])
            if cell.cell_type == "code":
                current = meta.get("grade_id")
        elif meta.get("grade") and current is not None:
            result[current].append(meta.get("grade_id"))
    return result


def _unanswered(notebook) -> set[str]:
    """Answer cells left exactly as released (nbgrader's checksum test)."""
    from nbgrader.utils import compute_checksum

    found = set()
    for cell in notebook.cells if notebook is not None else []:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution") and meta.get("checksum") == compute_checksum(cell):
            found.add(meta.get("grade_id"))
    return found


def auto_comments(record: Record, notebook) -> dict[str, str | None]:
    """Automatic comment per answer cell: "No response." or the messages of its tests and the
    error it raised (the same words as the feedback page: nothing of the hidden tests)."""
    cells = {c.grade_id: c for c in record.cells}
    unanswered = _unanswered(notebook)
    comments: dict[str, str | None] = {}
    for answer, tests in _tests_by_answer(notebook).items():
        if answer in unanswered:
            comments[answer] = NO_RESPONSE
            continue
        lines = [
            f"{gid}: {cells[gid].score or 0:g}/{cells[gid].points:g} {cells[gid].message}"
            for gid in tests
            if gid in cells and cells[gid].kind == "auto"
        ]
        lines += [
            f"this cell raised {e['message']}" for e in record.code_errors if e["cell"] == answer
        ]
        comments[answer] = "\n".join(lines) or None
    return comments


def _apply_grades(record: Record, grades: dict, comments: dict, changed: set[str], notebook):
    """Automatic scores and comments of one record onto its gradebook rows; returns
    ``(kept, reset)`` counts of hand-given scores."""
    kept = reset = 0
    cells = {c.grade_id: c for c in record.cells}
    for name, grade in grades.items():
        cell = cells.get(name)
        manual = name in comments  # an answer graded as a whole: by hand
        dirty = name in changed if manual else bool(changed)
        if grade.manual_score is not None or grade.extra_credit is not None:
            if dirty:
                grade.manual_score = grade.extra_credit = None
                reset += 1
            else:
                kept += 1
        if cell is not None:
            auto = cell.score if (cell.kind == "auto" or cell.outcome == "no_answer") else None
        else:  # not graded at all: 0, except an error the instructor must look at
            auto = None if (manual and record.status == "error") else 0.0
        grade.auto_score = auto
        grade.needs_manual_grade = grade.manual_score is None and auto is None
    automatic = auto_comments(record, notebook) if notebook is not None else {}
    for name, comment in comments.items():
        if name in changed:
            comment.manual_comment = None
        comment.auto_comment = automatic.get(name)
    return kept, reset


def _place_notebook(source: Path | None, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    if source is None:
        return
    try:
        os.link(source, target)  # the grader replaces its file, never writes into it
    except OSError:
        shutil.copyfile(source, target)


def _sync_submission(gb, course: Path, out: Path, record: Record) -> tuple[int, int, int]:
    """One record into the gradebook; returns (kept, reset, answers to grade by hand)."""
    from nbgrader.api import MissingEntry

    assignment, student = record.assignment, record.student
    gb.update_or_create_student(student)
    try:
        submission = gb.find_submission(assignment, student)
    except MissingEntry:
        with warnings.catch_warnings():  # nbgrader's own SQLAlchemy 2 autoflush warnings
            warnings.simplefilter("ignore")
            submission = gb.add_submission(assignment, student)
    submitted_nb = next(nb for nb in submission.notebooks if nb.name == assignment)
    grades, comments = _rows(gb, submitted_nb)
    source = Path(out) / record.autograded if record.autograded else None
    source = source if source is not None and source.is_file() else None
    new = read_notebook(source) if source else None
    target = course / autograded_path(student, assignment)
    changed = changed_answers(read_notebook(target), new)
    kept, reset = _apply_grades(record, grades, comments, changed, new)
    gb.db.commit()
    _place_notebook(source if new is not None else None, target)
    pending = sum(1 for g in grades.values() if g.needs_manual_grade)
    return kept, reset, pending


def _one_per_submission(records: list[Record], known: set[str]) -> tuple[list[Record], list[str]]:
    """One record per (student, assignment) (the one with a notebook, then the last by label);
    the labels of records that cannot go into the gradebook, with why."""
    chosen: dict[tuple[str, str], Record] = {}
    skipped = []
    for record in sorted(records, key=lambda r: (r.autograded is not None, r.label)):
        if record.assignment not in known or not _safe_name(record.student):
            skipped.append(f"{record.label}: no assignment of the course")
            continue
        key = (record.student, record.assignment)
        if key in chosen:
            skipped.append(f"{chosen[key].label}: another notebook of {key[0]} was used")
        chosen[key] = record
    return list(chosen.values()), skipped


# --------------------------------------------------------------------------------------------
# the course


def write_course(
    records: list[Record],
    out: Path,
    *,
    course_root: Path = REPO_ROOT,
    work_dir: Path | None = None,
    template=None,
) -> Summary:
    """Write or update ``OUT/course`` from the records of a run (module docstring)."""
    from nbgrader.api import Gradebook

    from .grading import atomic_write_json, atomic_write_text
    from .rubrics import write_guides

    out = Path(out).resolve()
    if template is None:
        from .template import build_template

        assignments = course_mod.assignments(course_root)
        template = build_template(course_root, assignments, Path(work_dir or out / ".work"))
    assignments = sorted(template.releases)
    course = course_dir(out)
    course.mkdir(parents=True, exist_ok=True)
    atomic_write_text(course / "nbgrader_config.py", CONFIG_TEXT)
    for assignment in assignments:
        _copy_assignment_files(template.root, course, assignment)
    chosen, skipped = _one_per_submission(records, set(assignments))
    summary = Summary(course, skipped=skipped)
    with (
        Gradebook(db_url(course), course_id=COURSE_ID) as gb,
        Gradebook(db_url(template.root), course_id=COURSE_ID) as template_gb,
    ):
        for assignment in assignments:
            _sync_assignment(template_gb, gb, assignment)
        for record in sorted(chosen, key=lambda r: (r.assignment, r.student)):
            kept, reset, pending = _sync_submission(gb, course, out, record)
            summary.submissions += 1
            summary.kept, summary.reset = summary.kept + kept, summary.reset + reset
            summary.to_grade += pending
    atomic_write_json(course / RECORDS_FILE, [r.to_dict() for r in records])
    write_guides(course, assignments)
    return summary


def update_after_grade(records, out: Path, *, course_root: Path, work_dir: Path | None) -> None:
    """The course at the end of ``grade``: a failure here never fails the grading run."""
    try:
        write_course(records, out, course_root=course_root, work_dir=work_dir)
    except Exception as error:  # noqa: BLE001 - the grades are written; say how to retry
        print(
            f"warning: the nbgrader course was not updated ({type(error).__name__}: {error}); "
            f"run `python -m autograder gradebook {out}`",
            file=sys.stderr,
        )


def load_records(out: Path) -> list[Record]:
    """Every intact record saved in ``OUT/.state`` (what ``grade`` graded into OUT)."""
    from .grading import _record_digest

    records = []
    for path in sorted((Path(out) / ".state").glob("*.json")):
        try:
            saved = json.loads(path.read_text())
            if saved.get("digest") == _record_digest(saved["key"], saved["record"]):
                records.append(Record.from_dict(saved["record"]))
        except (OSError, ValueError, TypeError, KeyError):
            continue
    return records


def describe(summary: Summary, out: Path) -> str:
    course = summary.course
    lines = [
        f"course:   {course} ({summary.submissions} submission(s), {summary.to_grade} "
        f"answer(s) to grade by hand"
        + (f", {summary.kept} hand grade(s) kept" if summary.kept else "")
        + (f", {summary.reset} reset: the answer changed" if summary.reset else "")
        + ")",
        f"          formgrader: cd {course} && jupyter lab   (Nbgrader > Formgrader)",
        f"          by question: python -m autograder questions {out}",
        f"          guides: {course / 'guide'}/<assignment>.html;"
        f" final grades: python -m autograder export {out}",
    ]
    lines += [f"          not in the gradebook: {reason}" for reason in summary.skipped]
    return "\n".join(lines)


def main(*, out: Path, course_root: Path = REPO_ROOT) -> int:
    """``python -m autograder gradebook OUT``."""
    from .course import AutograderError

    out = Path(out).resolve()
    records = load_records(out)
    if not records:
        raise AutograderError(f"no graded submission in {out} (run `grade ... --out {out}`)")
    summary = write_course(records, out, course_root=course_root)
    print(describe(summary, out))
    return 0
