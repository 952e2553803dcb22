"""Reports of a grading run: ``grades.csv``, feedback pages, Gradescope ``results.json``.

``OUT/grades.csv`` (written atomically): ``student, assignment, score, max_score, status,
reason, source``, then one column per graded cell (its grade id; ``<assignment>:<grade id>`` when the
run holds several assignments). ``score``/``max_score`` are the *automatic* points; a manually
graded answer's column is empty until graded by hand (0 when left unanswered), and the reason
says how many points are still to be graded by hand. ``source`` is the file (or folder) as given,
relative to the input (what is not printable escaped, see :mod:`autograder.submissions`): it maps
each ``student`` id back to the original name; a value that a spreadsheet would run as a
formula (``=``, ``+``, ``-``, ``@`` first) is prefixed with ``'``.

Paths are short and file-system safe whatever the names: ``feedback/<student>/<assignment>.html``
and ``results/<student>.json`` use :func:`autograder.submissions.report_name` (a long or unsafe
name is cut and given a hash suffix); names that would clash (on a case-insensitive file system
too) get a hash suffix of their own.

``status``: ``ok``; ``repaired`` (graded after repairs the reason lists); ``limited`` (a cell hit
the per-cell time or the memory limit); ``crashed`` (a cell crashed the kernel and was skipped);
``timeout`` (the submission hit the wall clock; graded from the finished cells); ``error`` (not
graded: see the log); ``invalid`` (not a usable notebook); ``wrong_assignment``.

``OUT/results/<student>.json`` follows Gradescope's ``results.json`` schema (``score``,
``execution_time``, ``output``, ``tests[{name, score, max_score, output, visibility, status}]``,
``extra_data``); a student with several assignments in one run gets all of them, test names
prefixed with the assignment.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from .feedback import render
from .submissions import digest, display_name, printable, report_name

FIXED_COLUMNS = ["student", "assignment", "score", "max_score", "status", "reason", "source"]


def _number(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:g}"


def cell_columns(records) -> tuple[list[str], bool]:
    """Graded-cell columns in notebook order; prefixed when several assignments are present."""
    assignments = list(dict.fromkeys(r.assignment for r in records if r.assignment and r.cells))
    prefixed = len(assignments) > 1
    columns = []
    for assignment in assignments:
        example = next(r for r in records if r.assignment == assignment and r.cells)
        for cell in example.cells:
            columns.append(f"{assignment}:{cell.grade_id}" if prefixed else cell.grade_id)
    return list(dict.fromkeys(columns)), prefixed


def _cell(text) -> str:
    return printable(str(text))


def _source(label: str) -> str:
    text = printable(label)
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def grades_csv(records) -> str:
    columns, prefixed = cell_columns(records)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(FIXED_COLUMNS + columns)
    for record in sorted(records, key=lambda r: (r.assignment or "", r.student, r.label)):
        by_column = {
            (f"{record.assignment}:{c.grade_id}" if prefixed else c.grade_id): c
            for c in record.cells
        }
        row = [
            _cell(record.student),
            _cell(record.assignment or ""),
            _number(record.score),
            _number(record.max_score),
            record.status,
            _cell(record.reason),
            _source(record.label),
        ]
        row += [_number(by_column[c].score) if c in by_column else "" for c in columns]
        writer.writerow(row)
    return buffer.getvalue()


def gradescope_results(records) -> dict:
    """Gradescope ``results.json`` for the records of one student."""
    several = len({r.assignment for r in records}) > 1
    tests, outputs = [], []
    score = 0.0
    seconds = 0.0
    for record in records:
        score += record.score
        seconds += record.seconds
        prefix = f"{record.assignment} / " if several else ""
        outputs.append(
            f"{record.assignment or record.label}: {record.score:g} / {record.max_score:g} "
            f"({record.status})" + (f" — {record.reason}" if record.reason else "")
        )
        for cell in record.cells:
            if cell.kind == "manual":
                continue  # graded by hand: listed in the output, not as an automatic test
            tests.append(
                {
                    "name": f"{prefix}{cell.heading or cell.grade_id} [{cell.grade_id}]",
                    "score": cell.score or 0.0,
                    "max_score": cell.points,
                    "status": "passed" if cell.outcome == "passed" else "failed",
                    "output": cell.message,
                    "visibility": "visible",
                }
            )
        for error in record.code_errors:
            outputs.append(f"{error['cell']} ({error['kind']}) raised {error['message']}")
    return {
        "score": round(score, 6),
        "execution_time": round(seconds, 1),
        "output": "\n".join(outputs),
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
        "extra_data": {
            "assignments": [
                {
                    "assignment": r.assignment,
                    "status": r.status,
                    "score": r.score,
                    "max_score": r.max_score,
                    "reason": r.reason,
                }
                for r in records
            ]
        },
    }


def _student_dir(record) -> str:
    return report_name(record.student)


def _page_name(record) -> str:
    return report_name(record.assignment or Path(printable(record.label)).stem or "notebook")


def feedback_path(out: Path, record, records=None) -> Path:
    """Where ``record``'s feedback page is (``records``: the whole run, to resolve clashes)."""
    if records is not None:
        return _report_paths(Path(out), records)[0][id(record)]
    return Path(out) / "feedback" / _student_dir(record) / f"{_page_name(record)}.html"


def _report_paths(out: Path, records) -> tuple[dict[int, Path], dict[str, Path]]:
    """Feedback page per record (by ``id``) and results file per student: never two alike."""
    folders: dict[str, str] = {}  # student -> folder name
    taken: dict[str, str] = {}  # casefolded folder name -> student
    for student in sorted({r.student for r in records}):
        name, tries = report_name(student), 0
        while taken.get(name.casefold(), student) != student:
            tries += 1
            name = report_name(f"{report_name(student)[:40]}-{digest(f'{student}#{tries}')}")
        taken[name.casefold()] = student
        folders[student] = name
    pages: dict[int, Path] = {}
    used: set[str] = set()
    for record in sorted(records, key=lambda r: (r.student, r.assignment or "", r.label)):
        name = plain = _page_name(record)
        key, tries = f"{folders[record.student]}/{name}".casefold(), 0
        while key in used:
            tries += 1
            name = report_name(f"{plain[:40]}-{digest(f'{record.label}#{tries}')}")
            key = f"{folders[record.student]}/{name}".casefold()
        used.add(key)
        pages[id(record)] = out / "feedback" / folders[record.student] / f"{name}.html"
    results = {student: out / "results" / f"{name}.json" for student, name in folders.items()}
    return pages, results


def _safe_text(text: str) -> str:
    """Text that can be written as UTF-8 whatever it holds (a lone surrogate is escaped)."""
    return re.sub("[\ud800-\udfff]", lambda match: display_name(match.group()), text)


def write_reports(records, out: Path, *, course_root: Path | None = None) -> dict[str, Path]:
    """Write grades.csv, feedback pages and Gradescope results for ``records`` into ``out``."""
    from .grading import atomic_write_json, atomic_write_text

    out = Path(out)
    written = {"grades": out / "grades.csv"}
    atomic_write_text(out / "grades.csv", grades_csv(records))
    pages, results = _report_paths(out, records)
    for record in records:
        atomic_write_text(pages[id(record)], _safe_text(render(record)))
    by_student: dict[str, list] = {}
    for record in records:
        by_student.setdefault(record.student, []).append(record)
    for student, own in by_student.items():
        atomic_write_json(results[student], gradescope_results(own))
    written["feedback"] = out / "feedback"
    written["results"] = out / "results"
    return written


def results_path(out: Path, student: str, records=None) -> Path:
    """Where ``student``'s Gradescope results are (``records``: the run, to resolve clashes)."""
    if records is not None:
        return _report_paths(Path(out), records)[1][student]
    return Path(out) / "results" / f"{report_name(student)}.json"


def format_table(records) -> str:
    """The gradebook as a plain-text table (what ``grade`` and ``demo`` print)."""
    header = ["student", "assignment", "score", "status", "reason"]
    rows = [
        [
            printable(r.student),
            printable(r.assignment or "-"),
            f"{r.score:g}/{r.max_score:g}",
            r.status,
            printable((r.reason[:90] + "…") if len(r.reason) > 91 else r.reason),
        ]
        for r in sorted(records, key=lambda r: (r.assignment or "", r.student))
    ]
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows, strict=True)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += [
        "  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    return "\n".join(lines)
