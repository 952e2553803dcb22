"""Model answers and rubrics of the hand-graded questions, and the grading guide graders read.

A hand-graded answer is a markdown cell with nbgrader ``grade: true, solution: true``. In the
source (``solutions/<id>/<id>.ipynb``) its solution region holds the model answer, then one
paragraph starting with ``**Rubric (N points):**`` whose criteria (``X pt: ...``) add up to the
cell's points. The student release replaces the whole region by ``YOUR ANSWER HERE``: neither
the model answer nor the rubric is ever released (``release --check`` would find their lines).

:func:`write_guides` writes one page per assignment (``<course>/guide/<id>.html``): for each
hand-graded question, the question as students see it, its points, the model answer and the
rubric. The grade-by-question page (:mod:`autograder.questions`) shows the same on top of the
students' answers.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path

from . import cells as cells_mod

_RUBRIC = re.compile(r"^\*\*Rubric\b", re.M)
_DECLARED = re.compile(r"^\*\*Rubric \((\d+(?:\.\d+)?) points?\):\*\*")
_ITEM = re.compile(r"(\d+(?:\.\d+)?)\s*pts?\b")


@dataclass(frozen=True)
class Question:
    """One hand-graded question of an assignment, as graders need it."""

    assignment: str
    grade_id: str
    heading: str
    prompt: str  # markdown: the question, as in the release
    points: float
    model_answer: str  # markdown
    rubric: str | None  # markdown; None when the source gives none


def solution_text(source: str) -> str:
    """The text between the ``BEGIN SOLUTION`` and ``END SOLUTION`` lines of a cell."""
    return "\n".join(cells_mod.region_lines(source, "SOLUTION")[0]).strip()


def split_rubric(text: str) -> tuple[str, str | None]:
    """``(model answer, rubric)`` of a solution text; the rubric is None when absent."""
    match = _RUBRIC.search(text)
    if match is None:
        return text.strip(), None
    return text[: match.start()].strip(), text[match.start() :].strip()


def _heading(markdown: str, default: str) -> str:
    headings = [line.lstrip("# ").strip() for line in markdown.splitlines() if line.startswith("#")]
    return headings[-1] if headings else default


def is_hand_graded(cell) -> bool:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return bool(meta.get("grade") and meta.get("solution") and cell.get("cell_type") == "markdown")


def questions(source_nb, assignment: str) -> list[Question]:
    """The hand-graded questions of a source notebook, in notebook order."""
    found = []
    cells = source_nb.cells
    for index, cell in enumerate(cells):
        if not is_hand_graded(cell):
            continue
        meta = cell.metadata["nbgrader"]
        previous = cells[index - 1] if index > 0 else None
        prompt = ""
        if previous is not None and previous.cell_type == "markdown":
            if not previous.metadata.get("nbgrader", {}).get("solution"):
                prompt = previous.source
        answer, rubric = split_rubric(solution_text(cell.source))
        found.append(
            Question(
                assignment,
                meta["grade_id"],
                _heading(prompt, meta["grade_id"]),
                prompt,
                float(meta.get("points", 0)),
                answer,
                rubric,
            )
        )
    return found


def rubric_problems(question: Question) -> list[str]:
    """What is wrong with a question's rubric: missing, or points that do not add up."""
    where = f"{question.assignment}: {question.grade_id}"
    if question.rubric is None:
        return [f"{where}: no rubric (a '**Rubric (N points):**' paragraph after the answer)"]
    problems = []
    if not question.model_answer:
        problems.append(f"{where}: no model answer before the rubric")
    declared = _DECLARED.match(question.rubric)
    if declared is None:
        problems.append(f"{where}: the rubric does not start with '**Rubric (N points):**'")
    elif float(declared.group(1)) != question.points:
        problems.append(
            f"{where}: the rubric is for {declared.group(1)} point(s), the cell gives "
            f"{question.points:g}"
        )
    items = sum(float(value) for value in _ITEM.findall(question.rubric))
    if abs(items - question.points) > 1e-9:
        problems.append(
            f"{where}: the rubric's criteria add up to {items:g} pt, the cell gives "
            f"{question.points:g}"
        )
    return problems


# --------------------------------------------------------------------------------------------
# HTML


def trusted_markdown(text: str) -> str:
    """HTML of the instructor's own markdown (sources: model answers, rubrics, prompts)."""
    from nbconvert.filters.markdown import markdown2html_mistune

    return markdown2html_mistune(text)


def untrusted_markdown(text: str) -> str:
    """HTML of a student's markdown: raw HTML escaped, harmful links neutralised."""
    import mistune

    render = mistune.create_markdown(escape=True, plugins=["table", "strikethrough", "math"])
    return render(text)


STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1.5rem auto;
max-width:60rem;color:#1f2328;line-height:1.45;padding:0 1rem}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-top:1px solid #d1d9e0;
padding-top:1rem}.meta{color:#59636e}
.box{border-radius:.5rem;padding:.2rem 1rem;margin:.6rem 0}
.prompt{background:#f6f8fa}.model{background:#dafbe1}.rubric{background:#fff8c5}
.missing{background:#ffebe9}.label{font-weight:600;font-size:.85rem;text-transform:uppercase;
color:#59636e;margin:.6rem 0 0}
table{border-collapse:collapse}th,td{border:1px solid #d1d9e0;padding:.2rem .5rem}
"""

MATHJAX = (
    "<script>window.MathJax={tex:{inlineMath:[['$','$'],['\\\\(','\\\\)']]}};</script>"
    '<script async src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"></script>'
)


def question_block(question: Question, *, level: int = 2) -> str:
    """The question, its points, model answer and rubric (HTML), for the guide and the
    grade-by-question page."""
    e = html.escape
    rubric = (
        f"<div class='box rubric' data-part='rubric'>{trusted_markdown(question.rubric)}</div>"
        if question.rubric
        else "<div class='box missing'>No rubric in the source: grade against the model "
        "answer.</div>"
    )
    return (
        f"<h{level} id='{e(question.grade_id)}'>{e(question.heading)} "
        f"<span class='meta'>({question.points:g} pt, <code>{e(question.grade_id)}</code>)"
        f"</span></h{level}>"
        f"<p class='label'>Question</p><div class='box prompt'>{trusted_markdown(question.prompt)}"
        "</div>"
        f"<p class='label'>Model answer</p><div class='box model' data-part='model'>"
        f"{trusted_markdown(question.model_answer)}</div>"
        f"<p class='label'>Rubric</p>{rubric}"
    )


def guide_html(assignment: str, found: list[Question]) -> str:
    """The grading guide of one assignment (for graders only: it holds the model answers)."""
    e = html.escape
    total = sum(q.points for q in found)
    contents = "".join(
        f"<li><a href='#{e(q.grade_id)}'>{e(q.heading)}</a> ({q.points:g} pt)</li>" for q in found
    )
    body = "".join(question_block(q) for q in found) or "<p>No hand-graded question.</p>"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Grading guide: {e(assignment)}</title><style>{STYLE}</style>{MATHJAX}</head>
<body><h1>Grading guide: {e(assignment)}</h1>
<p class="meta">For graders only (model answers). {len(found)} hand-graded question(s),
{total:g} point(s).</p><ul>{contents}</ul>
{body}
</body></html>
"""


def write_guides(course_dir: Path, assignments: list[str], source_dir: str = "source") -> dict:
    """``<course_dir>/guide/<assignment>.html`` for every assignment; returns the paths."""
    from .course import read_notebook
    from .grading import atomic_write_text

    written = {}
    for assignment in assignments:
        path = Path(course_dir) / source_dir / assignment / f"{assignment}.ipynb"
        found = questions(read_notebook(path), assignment)
        target = Path(course_dir) / "guide" / f"{assignment}.html"
        atomic_write_text(target, guide_html(assignment, found))
        written[assignment] = target
    return written
