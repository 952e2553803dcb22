"""Feedback for students: one self-contained HTML page per submission.

Not nbgrader's ``generate_feedback`` (it shows the hidden tests' source and tracebacks). Per
graded cell: the exercise heading and grade id, points obtained / possible, and a short message:
"passed", or the failing check's assertion message / exception type and message. Never the
hidden test's code, never a traceback. Manually graded answers are listed as "to be graded by
hand". Errors raised by the student's own cells are listed with their type and message (their
own code, so nothing is hidden there).
"""

from __future__ import annotations

import html
from datetime import datetime, timezone

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;
max-width:52rem;color:#1f2328;line-height:1.45;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.1rem;margin-top:2rem}
.meta{color:#59636e;margin-top:0}
.total{font-size:1.25rem;margin:1rem 0;padding:.8rem 1rem;border-radius:.5rem;background:#f6f8fa}
.note{background:#fff8c5;border-left:4px solid #d4a72c;padding:.5rem .8rem;margin:.4rem 0}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.45rem .6rem;border-bottom:1px solid #d1d9e0;vertical-align:top}
th{background:#f6f8fa;font-weight:600}
td.points{white-space:nowrap;text-align:right;font-variant-numeric:tabular-nums}
code,.msg{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.88rem}
.msg{white-space:pre-wrap}
.passed{color:#1a7f37}.failed,.timeout,.crashed,.memory,.not_run,.no_answer{color:#d1242f}
.partial{color:#9a6700}.manual,.graded{color:#59636e}
footer{margin-top:2rem;color:#59636e;font-size:.85rem}
"""

OUTCOME_LABEL = {
    "passed": "✔ passed",
    "partial": "◐ partial credit",
    "failed": "✘ failed",
    "timeout": "⏱ time limit",
    "crashed": "✘ crashed",
    "memory": "✘ memory limit",
    "disk": "✘ disk limit",
    "not_run": "– not run",
    "manual": "✎ to be graded by hand",
    "graded": "✎ graded by hand",
    "no_answer": "✘ no answer",
}

STATUS_TEXT = {
    "ok": "Graded.",
    "repaired": "Graded after repairing the notebook (see the notes).",
    "limited": "Graded; some cells hit a time or memory limit.",
    "crashed": "Graded; a cell crashed the Python kernel and was skipped.",
    "timeout": "Grading hit the time limit; graded from the cells that finished.",
    "error": "Could not be graded automatically; your instructor will look at it.",
    "invalid": "Could not be graded: the file is not a usable notebook.",
    "wrong_assignment": "Could not be graded: this is not the notebook of this assignment.",
}


def _fmt(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:g}"


def _cells_table(record) -> str:
    """The table of graded cells: heading and grade id, points, outcome and message."""
    e = html.escape
    rows = []
    for cell in record.cells:
        label = OUTCOME_LABEL.get(cell.outcome, cell.outcome)
        rows.append(
            "<tr>"
            f"<td>{e(cell.heading or cell.grade_id)}<br><code>{e(cell.grade_id)}</code></td>"
            f"<td class='points'>{_fmt(cell.score)} / {_fmt(cell.points)}</td>"
            f"<td><span class='{e(cell.outcome)}'>{e(label)}</span>"
            + (
                f"<div class='msg'>{e(cell.message)}</div>"
                if cell.message and cell.message not in ("passed", "to be graded by hand")
                else ""
            )
            + "</td></tr>"
        )
    return (
        "<h2>Graded cells</h2><table><tr><th>exercise</th><th>points</th><th>result</th></tr>"
        + "".join(rows)
        + "</table>"
        if rows
        else ""
    )


def _errors_table(record) -> str:
    """The errors raised by the notebook's own cells (type and message), if any."""
    e = html.escape
    errors = ""
    if record.code_errors:
        items = "".join(
            f"<tr><td><code>{e(item['cell'])}</code><br>{e(item['kind'])}</td>"
            f"<td class='msg'>{e(item['message'])}</td></tr>"
            for item in record.code_errors
        )
        errors = (
            "<h2>Errors raised by the notebook's cells</h2>"
            "<table><tr><th>cell</th><th>error</th></tr>" + items + "</table>"
        )
    return errors


def render(record, *, final: bool = False) -> str:
    """The HTML page of one :class:`autograder.results.Record` (``final``: with the scores
    given by hand, from ``export``: the total is then the whole score)."""
    e = html.escape
    assignment = record.assignment or "(unknown assignment)"
    table = _cells_table(record)
    manual_points = sum(c.points for c in record.cells if c.kind == "manual" and c.score is None)
    notes = "".join(f"<div class='note'>{e(reason)}</div>" for reason in record.reasons)
    errors = _errors_table(record)
    pending = f" (+ {manual_points:g} point(s) to be graded by hand)" if manual_points else ""
    title = "Score" if final else "Automatic score"
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Feedback: {e(assignment)} — {e(record.student)}</title>
<style>{STYLE}</style></head>
<body>
<h1>Feedback: {e(assignment)}</h1>
<p class="meta">Student <strong>{e(record.student)}</strong> · file <code>{e(record.label)}</code></p>
<div class="total">{title}: <strong>{_fmt(record.score)} / {_fmt(record.max_score)}</strong>{e(pending)}
<br><span class="meta">{e(STATUS_TEXT.get(record.status, record.status))}</span></div>
{notes}
{table}
{errors}
<footer>Generated by the featurelab autograder on {e(stamp)}. The hidden checks are not shown;
the messages say what was expected.</footer>
</body></html>
"""
