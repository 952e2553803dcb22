"""Grade by question: ``python -m autograder questions OUT [--port P] [--names]``.

formgrader grades one notebook at a time; a class of 100 is graded faster one *question* at a
time, with the model answer and the rubric in view. This small web server (standard library
only) shows, per hand-graded question of the course written by ``grade`` (``OUT/course``):

* on top, the question, the model answer and the rubric (:mod:`autograder.rubrics`);
* below, every student's answer, anonymised by default ("Answer 7", in an order that does not
  follow the names; ``--names`` shows the student ids), each with a score and a comment field.

"Save" writes the scores and comments into the same ``gradebook.db`` that formgrader uses
(``manual_score`` and ``manual_comment`` of nbgrader's rows, as formgrader does), so both can be
used in turn; a field is only written when it was changed on the page, so an edit made
meanwhile in formgrader is not overwritten by a stale page. It listens on 127.0.0.1 only, and
every form carries a per-server secret (a page of another site cannot post to it).
"""

from __future__ import annotations

import hashlib
import html
import secrets
import threading
import urllib.parse
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from . import gradebook as gradebook_mod
from . import rubrics
from .course import AutograderError

MAX_BODY = 4 * 2**20
STYLE = (
    rubrics.STYLE
    + """
.answer{border:1px solid #d1d9e0;border-radius:.5rem;padding:.4rem 1rem;margin:1rem 0}
.answer.todo{border-left:6px solid #d4a72c}.answer.done{border-left:6px solid #1a7f37}
.answer .text{background:#fff;border-top:1px dashed #d1d9e0;margin:.4rem 0}
.grading{display:flex;gap:1rem;align-items:flex-start;flex-wrap:wrap}
textarea{width:30rem;max-width:100%;min-height:3.5rem}input.score{width:5rem}
.bar{position:sticky;top:0;background:#fff;padding:.4rem 0;border-bottom:1px solid #d1d9e0}
.error{background:#ffebe9;padding:.4rem 1rem}.ok{background:#dafbe1;padding:.4rem 1rem}
"""
)


@dataclass
class Answer:
    """One student's answer to one question, with its gradebook rows."""

    label: str
    student: str
    text: str | None  # None: no graded notebook
    unanswered: bool
    grade_id: str  # the gradebook row ids (not the students')
    comment_id: str | None
    score: float | None  # manual score
    auto_score: float | None
    comment: str
    points: float

    @property
    def graded(self) -> bool:
        return self.score is not None or self.auto_score is not None


def _order_key(assignment: str, student: str) -> str:
    return hashlib.sha256(f"{assignment}\0{student}".encode()).hexdigest()


def _answer_text(course: Path, student: str, assignment: str, grade_id: str) -> str | None:
    path = course / gradebook_mod.autograded_path(student, assignment)
    notebook = gradebook_mod.read_notebook(path)
    if notebook is None:
        return None
    return gradebook_mod.answer_sources(notebook).get(grade_id, "")


def answers(gb, course: Path, assignment: str, grade_id: str, names: bool) -> list[Answer]:
    """Every submission's answer to ``grade_id``, in the page's (anonymous) order."""
    found = []
    submissions = gb.find_assignment(assignment).submissions
    ordered = sorted(submissions, key=lambda s: _order_key(assignment, s.student.id))
    for number, submission in enumerate(ordered, start=1):
        student = submission.student.id
        grade = comment = None
        for notebook in submission.notebooks:
            grade = grade or next((g for g in notebook.grades if g.name == grade_id), None)
            comment = comment or next((c for c in notebook.comments if c.name == grade_id), None)
        if grade is None:
            continue
        unanswered = grade.auto_score == 0 and grade.manual_score is None
        found.append(
            Answer(
                student if names else f"Answer {number}",
                student,
                _answer_text(course, student, assignment, grade_id),
                unanswered,
                grade.id,
                comment.id if comment is not None else None,
                grade.manual_score,
                grade.auto_score,
                (comment.manual_comment or "") if comment is not None else "",
                float(grade.max_score),
            )
        )
    return found


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def _answer_html(index: int, answer: Answer) -> str:
    e = html.escape
    if answer.text is None:
        text = "<p class='meta'>(no graded notebook: see the submission's status)</p>"
    elif answer.unanswered:
        text = "<p class='meta'>No answer (the cell was left as released): 0 unless you score it."
        text += "</p>"
    else:
        text = rubrics.untrusted_markdown(answer.text)
    state = "done" if answer.graded else "todo"
    auto = "" if answer.auto_score is None else f" (automatic: {answer.auto_score:g})"
    comment = ""
    if answer.comment_id is not None:
        comment = (
            f"<label>Comment (shown to the student)<br><textarea id='comment-{index}' "
            f"name='comment-{e(answer.comment_id)}'>{e(answer.comment)}</textarea></label>"
            f"<input type='hidden' name='was-comment-{e(answer.comment_id)}' "
            f"value='{e(answer.comment)}'>"
        )
    return (
        f"<section class='answer {state}' id='answer-{index}'><h3>{e(answer.label)}</h3>"
        f"<div class='text rendered' data-part='answer'>{text}</div><div class='grading'>"
        f"<label>Score <input class='score' type='number' step='any' min='0' "
        f"max='{answer.points:g}' id='score-{index}' name='score-{e(answer.grade_id)}' "
        f"value='{_number(answer.score)}'> / {answer.points:g}{e(auto)}</label>"
        f"<input type='hidden' name='was-score-{e(answer.grade_id)}' "
        f"value='{_number(answer.score)}'>{comment}"
        f"<button type='submit' id='save-{index}'>Save</button></div></section>"
    )


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style>{rubrics.MATHJAX}</head>"
        f"<body>{body}</body></html>"
    )


class QuestionServer(ThreadingHTTPServer):
    """The server: the course, one gradebook session (under a lock), the form secret."""

    daemon_threads = True

    def __init__(self, address, course: Path, *, names: bool = False):
        from nbgrader.api import Gradebook

        self.course = Path(course)
        self.names = names
        self.token = secrets.token_urlsafe(24)
        self.lock = threading.Lock()
        self.gradebook = Gradebook(
            gradebook_mod.db_url(self.course), course_id=gradebook_mod.COURSE_ID
        )
        super().__init__(address, Handler)

    def server_close(self) -> None:
        super().server_close()
        self.gradebook.close()

    def question(self, assignment: str, grade_id: str) -> rubrics.Question | None:
        path = self.course / "source" / assignment / f"{assignment}.ipynb"
        notebook = gradebook_mod.read_notebook(path)
        if notebook is None:
            return None
        found = rubrics.questions(notebook, assignment)
        return next((q for q in found if q.grade_id == grade_id), None)

    def all_questions(self) -> list[rubrics.Question]:
        found = []
        for assignment in sorted(a.name for a in self.gradebook.assignments):
            path = self.course / "source" / assignment / f"{assignment}.ipynb"
            notebook = gradebook_mod.read_notebook(path)
            found += rubrics.questions(notebook, assignment) if notebook is not None else []
        return found


class Handler(BaseHTTPRequestHandler):
    server: QuestionServer

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass  # quiet: the terminal shows the URL only

    def _send(self, status: int, body: str, content_type: str = "text/html") -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", f"{content_type}; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def _route(self) -> tuple[str, list[str], dict]:
        parsed = urllib.parse.urlsplit(self.path)
        parts = [urllib.parse.unquote(p) for p in parsed.path.split("/") if p]
        query = dict(urllib.parse.parse_qsl(parsed.query))
        return (parts[0] if parts else ""), parts[1:], query

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        kind, rest, query = self._route()
        with self.server.lock:
            self.server.gradebook.db.rollback()  # fresh reads: formgrader may have written
            if kind == "" and not rest:
                return self._send(HTTPStatus.OK, self._index())
            if kind == "q" and len(rest) == 2:
                page = self._question_page(*rest, saved=query.get("saved"))
                if page is not None:
                    return self._send(HTTPStatus.OK, page)
            if kind == "guide" and len(rest) == 1:
                path = self.server.course / "guide" / f"{Path(rest[0]).name}.html"
                if path.is_file():
                    return self._send(HTTPStatus.OK, path.read_text(encoding="utf-8"))
        self._send(HTTPStatus.NOT_FOUND, _page("Not found", "<h1>Not found</h1>"))

    def do_POST(self) -> None:  # noqa: N802
        kind, rest, _query = self._route()
        length = int(self.headers.get("Content-Length") or 0)
        if kind != "q" or len(rest) != 2 or length > MAX_BODY:
            return self._send(HTTPStatus.BAD_REQUEST, _page("Bad request", "<h1>Bad request</h1>"))
        form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode("utf-8"), True))
        if not secrets.compare_digest(form.get("token", ""), self.server.token):
            return self._send(HTTPStatus.FORBIDDEN, _page("Forbidden", "<h1>Stale page</h1>"))
        with self.server.lock:
            saved, errors = save(self.server.gradebook, rest[0], rest[1], form)
            if errors:
                page = self._question_page(*rest, saved=str(saved), errors=errors)
                return self._send(HTTPStatus.UNPROCESSABLE_ENTITY, page or "")
        target = f"/q/{urllib.parse.quote(rest[0])}/{urllib.parse.quote(rest[1])}?saved={saved}"
        self.send_response(HTTPStatus.SEE_OTHER)
        self.send_header("Location", target)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _index(self) -> str:
        e = html.escape
        rows = []
        for question in self.server.all_questions():
            found = answers(
                self.server.gradebook,
                self.server.course,
                question.assignment,
                question.grade_id,
                True,
            )
            todo = sum(1 for a in found if not a.graded)
            link = f"/q/{urllib.parse.quote(question.assignment)}/{urllib.parse.quote(question.grade_id)}"
            rows.append(
                f"<tr><td>{e(question.assignment)}</td><td><a href='{e(link)}'>"
                f"{e(question.heading)}</a></td><td>{question.points:g}</td>"
                f"<td>{len(found) - todo} / {len(found)}</td></tr>"
            )
        body = (
            "<h1>Grade by question</h1><p class='meta'>Course: "
            f"{e(str(self.server.course))}</p><table><tr><th>assignment</th><th>question</th>"
            "<th>points</th><th>graded</th></tr>" + "".join(rows) + "</table>"
        )
        return _page("Grade by question", body)

    def _question_page(self, assignment, grade_id, *, saved=None, errors=()) -> str | None:
        e = html.escape
        question = self.server.question(assignment, grade_id)
        if question is None:
            return None
        found = answers(
            self.server.gradebook, self.server.course, assignment, grade_id, self.server.names
        )
        graded = sum(1 for a in found if a.graded)
        notes = "".join(f"<div class='error'>{e(message)}</div>" for message in errors)
        if saved is not None and not errors:
            notes += f"<div class='ok' id='saved'>Saved ({e(saved)} change(s)).</div>"
        guide = f"/guide/{urllib.parse.quote(assignment)}"
        body = (
            f"<p><a href='/'>All questions</a> · <a href='{e(guide)}'>Grading guide</a></p>"
            f"{rubrics.question_block(question, level=1)}"
            f"<form method='post' id='grades'><div class='bar'>{notes}"
            f"<strong id='progress'>{graded} / {len(found)} graded</strong> "
            "<button type='submit' id='save-all'>Save all</button></div>"
            f"<input type='hidden' name='token' value='{e(self.server.token)}'>"
            + "".join(_answer_html(i, a) for i, a in enumerate(found, start=1))
            + "</form>"
        )
        return _page(f"{assignment}: {question.heading}", body)


def _parse_score(text: str, points: float) -> float | None:
    text = text.strip().replace(",", ".")
    if not text:
        return None
    value = float(text)  # ValueError: reported
    if not 0 <= value <= points:
        raise ValueError(f"{value:g} is not between 0 and {points:g}")
    return value


def save(gb, assignment: str, grade_id: str, form: dict) -> tuple[int, list[str]]:
    """Write the changed fields of a question's form; returns (changes, errors)."""
    from nbgrader.api import MissingEntry

    changes, errors = 0, []
    for key, value in form.items():
        kind, _, row = key.partition("-")
        if kind not in ("score", "comment") or form.get(f"was-{key}") == value:
            continue
        try:
            if kind == "score":
                grade = gb.find_grade_by_id(row)
                if grade.name != grade_id or grade.assignment.assignment.name != assignment:
                    raise MissingEntry()
                grade.manual_score = _parse_score(value, float(grade.max_score))
                grade.needs_manual_grade = grade.manual_score is None and grade.auto_score is None
            else:
                comment = gb.find_comment_by_id(row)
                if comment.name != grade_id or comment.assignment.assignment.name != assignment:
                    raise MissingEntry()
                comment.manual_comment = value.strip() or None
            changes += 1
        except MissingEntry:
            errors.append(f"unknown field {key} (reload the page)")
        except ValueError as error:
            errors.append(f"score {value!r}: {error}")
    gb.db.commit()
    return changes, errors


def make_server(out: Path, *, host: str = "127.0.0.1", port: int = 0, names: bool = False):
    course = gradebook_mod.course_dir(Path(out).resolve())
    if not (course / "gradebook.db").is_file():
        raise AutograderError(
            f"no course in {course}: run `python -m autograder gradebook {out}` first"
        )
    return QuestionServer((host, port), course, names=names)


def main(*, out: Path, host: str = "127.0.0.1", port: int = 8800, names: bool = False) -> int:
    """``python -m autograder questions OUT``: serve until Ctrl-C."""
    server = make_server(out, host=host, port=port, names=names)
    url = f"http://{server.server_address[0]}:{server.server_address[1]}/"
    print(f"grade by question: {url}  (Ctrl-C to stop; scores go to {server.course}/gradebook.db)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
