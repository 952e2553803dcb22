"""Final grades from the gradebook: ``python -m autograder export OUT [--to DIR]``.

Reads the course of a run (``OUT/course``: ``records.json`` and ``gradebook.db``, where the
graders gave their scores and comments, in formgrader or on the question pages) and writes,
into ``DIR`` (default ``OUT/export``):

* ``grades.csv``: ``student, assignment, score, max_score`` (automatic + hand points),
  ``auto_score, auto_max, hand_score, hand_max, complete`` (``yes``: nothing left to grade by
  hand), ``status, reason, source``, then one column per graded cell (as ``grade``'s);
* ``results/<student>.json``: Gradescope's ``results.json``, the hand-graded answers as tests
  with their comments;
* ``lms.csv``: the gradebook import of an LMS (Canvas, Moodle): one row per student, one
  column per assignment holding its points; empty while an answer is still to grade by hand
  or when nothing was submitted (map the ``student`` column to the LMS's user identifier);
* ``feedback/<student>/<assignment>.html``: the feedback pages with the hand-given scores and
  comments.

A score given by hand replaces the automatic one (nbgrader's rule), plus any extra credit.
"""

from __future__ import annotations

import csv
import dataclasses
import io
from pathlib import Path

from . import gradebook as gradebook_mod
from . import report
from .results import CellResult, Record

COLUMNS = [
    "student",
    "assignment",
    "score",
    "max_score",
    "auto_score",
    "auto_max",
    "hand_score",
    "hand_max",
    "complete",
    "status",
    "reason",
    "source",
]


@dataclasses.dataclass
class Final:
    """One submission with the graders' work merged in."""

    record: Record  # cells with the final scores; score / max_score: automatic + hand
    auto_score: float
    auto_max: float
    hand_score: float
    hand_max: float
    complete: bool


def read_gradebook(course: Path) -> dict[tuple[str, str], dict]:
    """(student, assignment) -> {"grades": {cell: grade dict}, "comments": {cell: text}}."""
    from nbgrader.api import Gradebook

    found: dict[tuple[str, str], dict] = {}
    with Gradebook(gradebook_mod.db_url(course), course_id=gradebook_mod.COURSE_ID) as gb:
        for assignment in gb.assignments:
            for submission in assignment.submissions:
                grades, comments = {}, {}
                for notebook in submission.notebooks:
                    grades.update({g.name: g.to_dict() for g in notebook.grades})
                    comments.update({c.name: c.manual_comment for c in notebook.comments})
                found[(submission.student.id, assignment.name)] = {
                    "grades": grades,
                    "comments": comments,
                }
    return found


def _final_cell(cell: CellResult, grade: dict | None, comment: str | None) -> CellResult:
    if grade is None:
        return cell
    hand = grade["manual_score"] is not None
    score = grade["manual_score"] if hand else grade["auto_score"]
    if score is not None:
        score = float(score) + float(grade["extra_credit"] or 0)
    if cell.kind == "manual":
        if hand:
            return dataclasses.replace(
                cell, score=score, outcome="graded", message=comment or "graded by hand"
            )
        if score is None:
            return dataclasses.replace(
                cell, score=None, outcome="manual", message="to be graded by hand"
            )
        return dataclasses.replace(cell, score=score)
    if not hand:
        return dataclasses.replace(cell, score=score)
    outcome = "passed" if score >= cell.points else ("partial" if score > 0 else "failed")
    message = f"{cell.message} (score set by the grader)" + (f": {comment}" if comment else "")
    return dataclasses.replace(cell, score=score, outcome=outcome, message=message)


def _cell_from_grade(name: str, grade: dict, manual: bool, comment: str | None) -> CellResult:
    kind, outcome = ("manual", "manual") if manual else ("auto", "not_run")
    base = CellResult(name, "", kind, float(grade["max_score"]), None, outcome, "not graded")
    return _final_cell(base, grade, comment)


def _is_pending_reason(reason: str) -> bool:
    return reason.startswith("+") and "to grade by hand" in reason


def merge(record: Record, entry: dict | None) -> Final:
    """``record`` with the gradebook's scores and comments (``entry``: see
    :func:`read_gradebook`; None when the submission is not in the gradebook)."""
    grades = (entry or {}).get("grades", {})
    comments = (entry or {}).get("comments", {})
    cells = [_final_cell(c, grades.get(c.grade_id), comments.get(c.grade_id)) for c in record.cells]
    if not record.cells:  # not graded automatically: the gradebook's rows, as given by hand
        cells = [
            _cell_from_grade(name, grade, name in comments, comments.get(name))
            for name, grade in sorted(grades.items())
        ]
    pending = [c for c in cells if c.kind == "manual" and c.score is None]
    reasons = [r for r in record.reasons if not _is_pending_reason(r)]
    if pending:
        reasons.append(
            f"+{sum(c.points for c in pending):g} point(s) still to grade by hand "
            f"({', '.join(c.grade_id for c in pending)})"
        )
    cell_ids = {c.grade_id for c in cells}
    for name, text in sorted(comments.items()):
        if text and name not in cell_ids:  # a comment on a code answer
            reasons.append(f"comment on {name}: {text}")
    auto = [c for c in cells if c.kind == "auto"]
    hand = [c for c in cells if c.kind == "manual"]
    auto_score = sum(c.score or 0.0 for c in auto) if cells else record.score
    auto_max = sum(c.points for c in auto) if auto else record.max_score
    final = dataclasses.replace(record, cells=cells, reasons=reasons)
    final.score = round(auto_score + sum(c.score or 0.0 for c in hand), 6)
    final.max_score = auto_max + sum(c.points for c in hand)
    looked_at = any(g["manual_score"] is not None for g in grades.values())
    complete = not pending and not any(g["needs_manual_grade"] for g in grades.values())
    complete = complete and (record.status != "error" or looked_at)  # "the instructor looks"
    return Final(
        final,
        auto_score,
        auto_max,
        sum(c.score or 0.0 for c in hand),
        sum(c.points for c in hand),
        complete,
    )


def finals(out: Path) -> list[Final]:
    """Every submission of the run at ``OUT``, merged with its gradebook."""
    import json

    from .course import AutograderError

    course = gradebook_mod.course_dir(out)
    records_file = course / gradebook_mod.RECORDS_FILE
    if not records_file.is_file() or not (course / "gradebook.db").is_file():
        raise AutograderError(
            f"no course in {course}: run `python -m autograder gradebook {out}` first"
        )
    records = [Record.from_dict(data) for data in json.loads(records_file.read_text())]
    entries = read_gradebook(course)
    return [merge(r, entries.get((r.student, r.assignment))) for r in records]


# --------------------------------------------------------------------------------------------
# files


def grades_csv(items: list[Final]) -> str:
    records = [f.record for f in items]
    columns, prefixed = report.cell_columns(records)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS + columns)
    number = report._number
    for item in sorted(items, key=lambda f: (f.record.assignment or "", f.record.student)):
        record = item.record
        by_column = {
            (f"{record.assignment}:{c.grade_id}" if prefixed else c.grade_id): c
            for c in record.cells
        }
        row = [report._cell(record.student), report._cell(record.assignment or "")]
        row += [number(record.score), number(record.max_score)]
        row += [number(item.auto_score), number(item.auto_max)]
        row += [number(item.hand_score), number(item.hand_max)]
        row += ["yes" if item.complete else "no", record.status, report._cell(record.reason)]
        row += [report._source(record.label)]
        row += [number(by_column[c].score) if c in by_column else "" for c in columns]
        writer.writerow(row)
    return buffer.getvalue()


def lms_csv(items: list[Final]) -> str:
    """One row per student, one column per assignment (points; empty: incomplete/missing)."""
    assignments = sorted({f.record.assignment for f in items if f.record.assignment})
    table: dict[str, dict[str, str]] = {}
    for item in items:
        row = table.setdefault(item.record.student, {})
        if item.record.assignment and item.complete:
            row[item.record.assignment] = report._number(item.record.score)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["student", *assignments])
    for student in sorted(table):
        writer.writerow([report._cell(student), *(table[student].get(a, "") for a in assignments)])
    return buffer.getvalue()


def gradescope_results(items: list[Final]) -> dict:
    """Gradescope ``results.json`` of one student, hand-graded answers included."""
    records = [f.record for f in items]
    results = report.gradescope_results(records)
    several = len({r.assignment for r in records}) > 1
    for record in records:
        prefix = f"{record.assignment} / " if several else ""
        for cell in record.cells:
            if cell.kind != "manual":
                continue
            results["tests"].append(
                {
                    "name": f"{prefix}{cell.heading or cell.grade_id} [{cell.grade_id}]",
                    "score": cell.score or 0.0,
                    "max_score": cell.points,
                    "status": "passed" if (cell.score or 0) >= cell.points else "failed",
                    "output": cell.message,
                    "visibility": "visible",
                }
            )
    for entry, item in zip(results["extra_data"]["assignments"], items, strict=True):
        entry["complete"] = item.complete
    return results


def write(items: list[Final], target: Path) -> dict[str, Path]:
    """Every file of the export into ``target``."""
    from .feedback import render
    from .grading import atomic_write_json, atomic_write_text

    target = Path(target)
    atomic_write_text(target / "grades.csv", grades_csv(items))
    atomic_write_text(target / "lms.csv", lms_csv(items))
    records = [f.record for f in items]
    pages, results = report._report_paths(target, records)
    for record in records:
        atomic_write_text(pages[id(record)], report._safe_text(render(record, final=True)))
    by_student: dict[str, list[Final]] = {}
    for item in items:
        by_student.setdefault(item.record.student, []).append(item)
    for student, own in by_student.items():
        atomic_write_json(results[student], gradescope_results(own))
    return {
        "grades": target / "grades.csv",
        "lms": target / "lms.csv",
        "feedback": target / "feedback",
        "results": target / "results",
    }


def export(out: Path, target: Path | None = None) -> tuple[list[Final], dict[str, Path]]:
    out = Path(out).resolve()
    items = finals(out)
    return items, write(items, Path(target) if target else out / "export")


def main(*, out: Path, target: Path | None = None) -> int:
    """``python -m autograder export OUT [--to DIR]``."""
    items, written = export(out, target)
    incomplete = [f.record for f in items if not f.complete]
    print(f"{len(items)} submission(s), {len(items) - len(incomplete)} complete")
    for record in incomplete:
        print(
            f"  incomplete: {record.student} / {record.assignment or record.label}: {record.reason}"
        )
    print(
        f"grades:   {written['grades']}\nLMS:      {written['lms']} (empty while incomplete)\n"
        f"feedback: {written['feedback']}/<student>/<assignment>.html\n"
        f"results:  {written['results']}/<student>.json (Gradescope)"
    )
    return 0
