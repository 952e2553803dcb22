"""What grading one submission produces: per-cell results, the record, and their messages.

Messages teach without leaking: a test cell's message is the judge's verdict, one of the
grader's own texts, or a line of the release (the failing visible assert); student code
contributes the name of an exception, never its text.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import repair as repair_mod
from .template import Template

STATUS_ORDER = (
    "ok",
    "repaired",
    "limited",
    "crashed",
    "timeout",
    "error",
    "invalid",
    "wrong_assignment",
)


# --------------------------------------------------------------------------------------------
# results


@dataclass
class CellResult:
    grade_id: str
    heading: str
    kind: str  # "auto" | "manual"
    points: float
    score: float | None  # None: to be graded by hand
    outcome: (
        str  # passed | partial | failed | timeout | crashed | memory | not_run | manual | no_answer
    )
    message: str


@dataclass
class Record:
    """The result of one submission (stored in ``OUT/.state``; every report derives from it)."""

    student: str
    assignment: str | None
    label: str
    status: str
    reasons: list[str] = field(default_factory=list)
    score: float = 0.0
    max_score: float = 0.0
    cells: list[CellResult] = field(default_factory=list)
    code_errors: list[dict] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    timings: list[dict] = field(default_factory=list)
    attempts: int = 0
    seconds: float = 0.0
    peak_rss_mb: float = 0.0
    log: str | None = None
    # the graded notebook, as OUT/autograded/<student>/<assignment>/<assignment>.ipynb (written
    # by the process that owns OUT, :func:`autograder.gradebook.keep_autograded`); in transit
    # from a worker (a thread, a Dask worker), its JSON text is ``notebook``: None once kept
    autograded: str | None = None
    notebook: str | None = field(default=None, repr=False, compare=False)

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Record:
        data = dict(data)
        data["cells"] = [CellResult(**cell) for cell in data.get("cells", [])]
        return cls(**data)


def _worst(statuses: list[str]) -> str:
    return max(statuses, key=STATUS_ORDER.index) if statuses else "ok"


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _clean_message(text: str, hidden_lines: list[str], limit: int = 400) -> str:
    text = _ANSI.sub("", text or "").strip()
    if any(line in text for line in hidden_lines):
        return ""
    lines = text.splitlines()[:6]
    text = "\n".join(lines)
    return text if len(text) <= limit else text[: limit - 1] + "…"


_TRACEBACK_LINE = re.compile(r"^-*>\s*(\d+)\s(.*)$")


def failing_visible_line(output, visible_source: str) -> str | None:
    """The line of a test cell where it failed, if that line is a *visible* one.

    IPython tracebacks mark the failing line of each frame with ``---->``; the first such line
    is in the test cell itself. It is returned only when the release (what the student has)
    contains it verbatim; a hidden test's line is never returned.
    """
    visible = {line.strip() for line in visible_source.splitlines() if line.strip()}
    for entry in output.get("traceback", []):
        for line in _ANSI.sub("", entry).splitlines():
            match = _TRACEBACK_LINE.match(line.strip())
            if match:
                code = match.group(2).strip()
                return code if code in visible else None
    return None


_GRADER_ERRORS = {
    # error names the grader itself puts on a cell, with its own words (never the evalue)
    "KernelDied": (
        "crashed",
        "this cell crashed the Python kernel (segfault, os._exit(), killed "
        "process...) and was not run when grading",
    ),
    "NoEvidence": ("failed", "this check did not run to its end (its results are missing)"),
}


_EXCEPTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]{0,59}$")


def _error_message(
    output, hidden_lines: list[str], timeout_s: int, visible_source: str = ""
) -> tuple[str, str]:
    """(outcome, message) for an error output of a test cell.

    Only the judge's words (``JudgeVerdict``), the grader's own texts and lines of the release
    are shown: an error raised by student code contributes its exception name, never its
    message (it could carry anything, e.g. the hidden collectors' code).
    """
    from .judged_execute import VERDICT_ENAME

    ename = output.get("ename") or "Error"
    if not isinstance(ename, str) or not _EXCEPTION_NAME.match(ename):
        ename = "Error"
    line = failing_visible_line(output, visible_source)
    if ename == VERDICT_ENAME:
        return "failed", _clean_message(output.get("evalue", ""), hidden_lines) or "a check failed"
    if ename == "CellTimeoutError":
        return "timeout", f"did not finish within the {timeout_s} s per-cell limit"
    if ename == "KeyboardInterrupt":
        return "timeout", f"interrupted (per-cell limit of {timeout_s} s)"
    if ename == "MemoryLimitExceeded":
        return "memory", "this cell used more memory than the limit and was stopped"
    if ename == "DiskLimitExceeded":
        return "disk", "this cell wrote more files than the limit allows and was stopped"
    if ename in _GRADER_ERRORS:
        return _GRADER_ERRORS[ename]
    if ename == "AssertionError" and line:
        return "failed", f"this check failed: {line}"
    return "failed", ename + (f" (in: {line})" if line else "")


def pick_error(cell):
    """The error output of a cell (``CellTimeoutError`` first: nbgrader appends it after the
    ``KeyboardInterrupt`` that the interrupt raised), or None."""
    errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    for output in errors:
        if output.get("ename") == "CellTimeoutError":
            return output
    return errors[0] if errors else None


def read_journal(path: Path) -> list[dict]:
    events = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a kill
    return events


def running_cell(events: list[dict]) -> dict | None:
    """The cell that started and never ended (where the process died), if any."""
    open_cells = {}
    for event in events:
        if event.get("event") == "start":
            open_cells[event["index"]] = event
        elif event.get("event") == "end":
            open_cells.pop(event["index"], None)
    return max(open_cells.values(), key=lambda e: e["index"]) if open_cells else None


def _graded_cells(release: repair_mod.Release) -> list[tuple[str, dict, str]]:
    result = []
    for cell in release.notebook.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade"):
            kind = "manual" if meta.get("solution") else "auto"
            result.append((meta["grade_id"], meta, kind))
    return result


def _score_from_gradebook(db: Path, assignment: str, student: str) -> dict[str, dict]:
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{db}") as gradebook:
        notebook = gradebook.find_submission_notebook(assignment, assignment, student)
        return {grade.name: grade.to_dict() for grade in notebook.grades}


def build_cells(
    template: Template,
    assignment: str,
    grades: dict[str, dict] | None,
    autograded_nb,
    journal: list[dict],
    timeout_s: int,
    verdicts: dict | None = None,
) -> list[CellResult]:
    """Per graded cell: points, score and a message that teaches without leaking tests.

    ``grades`` (from the gradebook) is None when nbgrader did not finish (wall clock, memory,
    a crash on the last attempt): ``verdicts`` then holds the judge's verdicts on the evidence
    the notebook left (:func:`judge_leftovers`); a cell without evidence scores 0.
    """
    release = template.release(assignment)
    hidden = template.hidden_lines[assignment]
    headings = template.headings[assignment]
    outputs_by_id = {}
    if autograded_nb is not None:
        for cell in autograded_nb.cells:
            gid = cell.metadata.get("nbgrader", {}).get("grade_id")
            if gid:
                outputs_by_id[gid] = cell
    ended = {e["grade_id"]: e for e in journal if e.get("event") == "end" and e.get("grade_id")}
    cells = []
    for gid, meta, kind in _graded_cells(release):
        points = float(meta.get("points", 0))
        result = functools.partial(CellResult, gid, headings.get(gid, ""), kind, points)
        event = ended.get(gid, {})
        if kind == "manual":
            cells.append(_manual_result(result, grades, gid))
        elif grades is None:
            cells.append(_unfinished_result(result, points, (verdicts or {}).get(gid), event))
        else:
            score = grades.get(gid, {}).get("auto_score")
            cell = outputs_by_id.get(gid)
            error = pick_error(cell) if cell is not None else None
            visible = release.cells_by_id[gid].source if gid in release.cells_by_id else ""
            explain = functools.partial(
                _error_message, hidden_lines=hidden, timeout_s=timeout_s, visible_source=visible
            )
            score = 0.0 if score is None else float(score)
            cells.append(_finished_result(result, score, points, error, event, explain))
    return cells


def _manual_result(result, grades: dict | None, gid: str) -> CellResult:
    """A hand-graded cell: to grade by hand, or 0 when nbgrader found it unanswered."""
    grade = (grades or {}).get(gid, {})
    if grades is not None and grade.get("auto_score") == 0 and not grade.get("needs_manual_grade"):
        return result(0.0, "no_answer", "no answer given")
    return result(None, "manual", "to be graded by hand")


def _unfinished_result(result, points: float, verdict, event: dict) -> CellResult:
    """A test cell when nbgrader did not finish: the judge's ``verdict`` on the evidence the
    run left, else did not finish (it started, ``event``) or not run."""
    if verdict is not None:
        score = (
            (points if verdict.score is None else min(points, verdict.score))
            if verdict.passed
            else 0.0
        )
        outcome = "passed" if verdict.passed else "failed"
        return result(score, outcome, "passed" if verdict.passed else verdict.message)
    if event:
        outcome = {"CellTimeoutError": "timeout"}.get(event.get("error") or "", "failed")
        return result(0.0, outcome, f"did not finish ({event.get('error') or 'no result'})")
    return result(0.0, "not_run", "not run: grading stopped before this cell")


def _finished_result(result, score: float, points: float, error, event: dict, explain):
    """A test cell nbgrader scored: passed, or why not (``explain(error)`` turns the cell's
    error output into ``(outcome, message)`` without leaking hidden tests)."""
    if score >= points:
        stderr_note = (
            " (your code wrote to stderr while this check ran; that is ignored)"
            if event.get("stderr")
            else ""
        )
        return result(score, "passed", "passed" + stderr_note)
    if error is not None:
        outcome, message = explain(error)
        return result(score, outcome, message)
    if event.get("error"):
        return result(score, "failed", event["error"])
    if score > 0:
        return result(score, "partial", "partial credit")
    if event.get("stderr"):
        return result(score, "failed", "wrote to stderr, which nbgrader counts as a failure")
    return result(score, "failed", "no credit")


def code_errors(autograded_nb, hidden: list[str], timeout_s: int) -> list[dict]:
    """Errors raised by the student's own cells (answers and added cells), type and message."""
    found = []
    if autograded_nb is None:
        return found
    for index, cell in enumerate(autograded_nb.cells):
        if cell.cell_type != "code":
            continue
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade") and not meta.get("solution"):
            continue  # test cells are reported per graded cell
        error = pick_error(cell)
        if error is None:
            continue
        where = meta.get("grade_id") or f"cell {index + 1}"
        if meta.get("solution"):
            kind = "answer cell"
        elif meta.get("locked"):
            kind = "instructor cell"
        else:
            kind = "cell"
        ename = error.get("ename") or "Error"
        if not isinstance(ename, str) or not _EXCEPTION_NAME.match(ename):
            ename = "Error"
        if ename == "CellTimeoutError":
            message = f"interrupted: still running after the {timeout_s} s per-cell limit"
        elif ename in _GRADER_ERRORS:
            message = _GRADER_ERRORS[ename][1]
        else:  # the exception's name only: its message is the student code's text
            message = ename
        found.append({"cell": where, "kind": kind, "ename": ename, "message": message})
    return found


# ----------------------------------------------------------------- what a run left


def read_metrics(run_dir: Path) -> dict[str, float]:
    """Metrics of one run: the notebook's own ``report_metric`` values (informational: written
    inside the sandbox) overridden by the judge's (computed outside it)."""
    from featurelab.reporting import read_metrics

    metrics: dict[str, float] = {}
    notebook_file = run_dir / "sandbox" / "metrics.json"
    if notebook_file.is_file() and not notebook_file.is_symlink():
        try:
            if notebook_file.stat().st_size < 2**20:
                metrics.update(read_metrics(notebook_file))
        except (ValueError, OSError, TypeError):
            pass
    judge_file = run_dir / "judge.json"
    if judge_file.is_file():
        try:
            metrics.update(json.loads(judge_file.read_text()).get("metrics", {}))
        except (ValueError, OSError, AttributeError):
            pass
    return metrics


def log_failure_reason(log_text: str) -> str:
    """The last exception line of an nbgrader log (or its last ERROR line): why it failed."""
    errors = [
        line
        for line in log_text.splitlines()
        if "| ERROR]" in line
        and "Please see" not in line
        and "There was an error processing" not in line
    ]
    for line in reversed(log_text.splitlines()):
        stripped = line.strip()
        if re.match(r"^[A-Za-z_.]+(Error|Exception)\b", stripped):
            return stripped[:300]
    return errors[-1].split("]", 1)[-1].strip()[:300] if errors else "nbgrader failed (see the log)"


def score_record(
    record: Record, template, grades, autograded_nb, journal, timeout_s, verdicts
) -> None:
    """Fill ``record``'s cells, score, errors and reasons from nbgrader's grades (or, when it did
    not finish, the judge's ``verdicts`` on the evidence left) and the run's journal."""
    assignment = record.assignment
    record.cells = build_cells(
        template, assignment, grades, autograded_nb, journal, timeout_s, verdicts=verdicts
    )
    record.code_errors = code_errors(autograded_nb, template.hidden_lines[assignment], timeout_s)
    record.score = round(sum(c.score or 0.0 for c in record.cells if c.kind == "auto"), 6)
    timeouts = [c.grade_id for c in record.cells if c.outcome == "timeout"]
    timeouts += [e["cell"] for e in record.code_errors if e["ename"] == "CellTimeoutError"]
    if timeouts:
        record.status = _worst([record.status, "limited"])
        record.reasons.append(
            f"{', '.join(timeouts)}: interrupted at the {timeout_s} s per-cell limit"
        )
    raised = [
        f"{e['cell']} ({e['ename']})"
        for e in record.code_errors
        if e["ename"]
        not in ("CellTimeoutError", "KernelDied", "MemoryLimitExceeded", "DiskLimitExceeded")
        and e["kind"] == "answer cell"
    ]
    if raised:
        record.reasons.append(f"errors in answer cells: {', '.join(raised)}")
    manual = [c for c in record.cells if c.kind == "manual" and c.score is None]
    if manual:
        total = sum(c.points for c in manual)
        record.reasons.append(
            f"+{total:g} point(s) to grade by hand ({', '.join(c.grade_id for c in manual)})"
        )
