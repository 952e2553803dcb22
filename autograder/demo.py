"""``python -m autograder demo`` (``make demo``): grade a small class, offline, in minutes.

1. builds the tiny fixture datasets (``featurelab.data.ensure_fixtures`` under the data root)
   and the release (the grading template: ``generate_assignment`` of every source);
2. writes a handful of submissions into ``demo/submissions/``, made from the solutions the way
   students would hand them in: the solution, the blank release, and typical mistakes
   (preprocessing without the ImageNet normalisation, the eval() experiment without
   ``model.eval()``, the relu7 extractor built without ``.eval()``: its own ``training`` flag
   stays True, which the hidden test catches even though the VGG16 layers it wraps are in eval
   mode), each applied to the solution by an exact text edit that fails loudly if the
   notebook changed;
3. grades them in parallel in the ``smoke`` profile (random-initialised weights, fixtures)
   into ``demo/`` (git-ignored): ``grades.csv``, ``feedback/``, ``results/``, and the nbgrader
   course ``demo/course/`` that formgrader opens, its free-text answers waiting for a score
   (:mod:`autograder.gradebook`);
4. prints the gradebook and checks that every mistake lost exactly the points of the test
   cells it should (exit code 1 otherwise), then says how to grade the free-text answers
   (formgrader, or one question at a time) and export the final grades.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from . import course as course_mod
from .course import REPO_ROOT, AutograderError


@dataclass(frozen=True)
class DemoSubmission:
    """One simulated student: a notebook built from the solution, and what it must lose."""

    student: str
    assignment: str
    description: str
    edits: tuple[tuple[str | None, str, str], ...] = ()  # (grade id or None, old, new)
    blank: bool = False
    loses: tuple[str, ...] | None = ()  # test cells scoring 0 (None: all of them)


TP2 = "tp2_imagenet_prediction"
TP3 = "tp3_scene15_svm"

DEMO: tuple[DemoSubmission, ...] = (
    # The two VGG16 notebooks first: the longest jobs start at once, the short ones fill in.
    DemoSubmission("alice", TP3, "the solution"),
    DemoSubmission(
        "erin",
        TP3,
        "builds the relu7 extractor without .eval() (the new module stays in training mode)",
        edits=(
            (
                None,
                "relu7_extractor = VGG16relu7(model).eval()",
                "relu7_extractor = VGG16relu7(model)",
            ),
        ),
        loses=("test_ex2_vgg16_relu7",),
    ),
    DemoSubmission("alice", TP2, "the solution"),
    DemoSubmission("bob", TP2, "the blank release, handed in untouched", blank=True, loses=None),
    DemoSubmission(
        "carol",
        TP2,
        "preprocess() forgets the ImageNet mean/std normalisation",
        edits=(("ex2_preprocess", "return normalize(pixels)", "return pixels"),),
        loses=("test_ex2_preprocess",),
    ),
    DemoSubmission(
        "dave",
        TP2,
        "the eval() experiment never calls model.eval()",
        edits=(("ex4_eval_experiment", "model.eval()\n", ""),),
        loses=("test_ex4_eval_experiment",),
    ),
)


def build_submissions(
    folder: Path, template, course_root: Path, demo: tuple[DemoSubmission, ...] = DEMO
) -> list[Path]:
    """Write ``<student>_<assignment>.ipynb`` for every demo submission into ``folder``."""
    from . import students

    written = []
    for item in demo:
        release_nb = template.release(item.assignment).notebook
        if item.blank:
            notebook = students.blank_release(release_nb)
        else:
            source = course_mod.read_notebook(
                course_mod.source_notebook(course_root, item.assignment)
            )
            notebook = students.solved_release(source, release_nb)
            for grade_id, old, new in item.edits:
                notebook = students.edit_cell(notebook, old, new, grade_id=grade_id)
        path = Path(folder) / f"{item.student}_{item.assignment}.ipynb"
        students.write(notebook, path)
        written.append(path)
    return written


def check_outcomes(records, demo: tuple[DemoSubmission, ...] = DEMO) -> list[str]:
    """Problems: a demo submission that did not lose exactly the points it should."""
    problems = []
    by_key = {(r.student, r.assignment): r for r in records}
    for item in demo:
        record = by_key.get((item.student, item.assignment))
        if record is None:
            problems.append(f"{item.student}/{item.assignment}: not graded")
            continue
        auto = [c for c in record.cells if c.kind == "auto"]
        expected_lost = {c.grade_id for c in auto} if item.loses is None else set(item.loses)
        lost = {c.grade_id for c in auto if (c.score or 0) < c.points}
        if record.status not in ("ok", "repaired") or lost != expected_lost:
            problems.append(
                f"{item.student}/{item.assignment} ({item.description}): lost "
                f"{sorted(lost) or 'nothing'}, expected {sorted(expected_lost) or 'nothing'} "
                f"[{record.status}: {record.reason}]"
            )
    return problems


def demo(
    *,
    out: Path = REPO_ROOT / "demo",
    jobs: int | None = None,
    course_root: Path = REPO_ROOT,
    progress: bool = True,
    items: tuple[DemoSubmission, ...] = DEMO,
):
    """Run the demo (module docstring); returns ``(batch result, problems)``."""
    from . import batch, gradebook, report

    course_root = Path(course_root).resolve()
    out = Path(out).resolve()
    needed = sorted({item.assignment for item in items})
    missing = [a for a in needed if a not in course_mod.assignments(course_root)]
    if missing:
        raise AutograderError(f"the demo needs {', '.join(missing)} in {course_root / 'solutions'}")
    started = time.monotonic()
    work, submissions = _prepare(course_root, out, items)
    print(f"[4/4] grading in the smoke profile with {jobs or os.cpu_count()} worker(s)...")
    result = batch.grade_batch(
        submissions,
        out=out,
        course_root=course_root,
        jobs=jobs,
        options=batch.Options(profile="smoke", timeout_cell=600),
        progress=progress,
        work_dir=work,
    )
    report.write_reports(result.records, out, course_root=course_root)
    course = gradebook.write_course(result.records, out, course_root=course_root, work_dir=work)
    problems = check_outcomes(result.records, items)
    _print_summary(result, course, problems, out, started)
    return result, problems


def _prepare(course_root: Path, out: Path, items: tuple[DemoSubmission, ...]):
    """Steps 1 to 3 of the demo: the fixture datasets, the release and gradebook, the
    submissions; returns ``(work folder, submissions)``."""
    from featurelab.data import data_root, ensure_fixtures

    from . import batch
    from .submissions import Submission

    fixtures = ensure_fixtures(data_root() / "fixtures")
    print(f"[1/4] fixture datasets: {', '.join(str(p) for p in fixtures.values())}")
    work = out / ".work"
    template = batch.build_template(course_root, course_mod.assignments(course_root), work)
    print(
        f"[2/4] release and gradebook of {len(template.releases)} assignment(s): "
        f"{template.root / course_mod.RELEASE_DIR}"
    )
    folder = out / "submissions"
    paths = build_submissions(folder, template, course_root, items)
    submissions = [
        Submission(item.student, item.assignment, path, path.name, "flat")
        for item, path in zip(items, paths, strict=True)
    ]
    print(f"[3/4] {len(submissions)} submissions in {folder}:")
    for item in items:
        print(f"      {item.student:6s} {item.assignment:24s} {item.description}")
    return work, submissions


def _print_summary(result, course, problems: list[str], out: Path, started: float) -> None:
    """The table of results, where the outputs are, and the verdict of the demo."""
    from . import gradebook, report

    print()
    print(report.format_table(result.records))
    print()
    print(f"grades:   {out / 'grades.csv'}")
    print(f"feedback: {out / 'feedback'}/<student>/<assignment>.html, e.g.")
    for record in result.records[:3]:
        print(f"          {report.feedback_path(out, record)}")
    print(f"results:  {out / 'results'}/<student>.json (Gradescope format)")
    print(gradebook.describe(course, out))
    for problem in problems:
        print(f"UNEXPECTED: {problem}")
    verdict = (
        "every submission lost exactly the points it should"
        if not problems
        else f"{len(problems)} unexpected outcome(s)"
    )
    print(f"demo done in {time.monotonic() - started:.0f} s: {verdict}")


def main(*, out: Path, jobs: int | None, course_root: Path) -> int:
    """CLI entry point (exit code 1 when an outcome is not the expected one)."""
    _, problems = demo(out=out, jobs=jobs, course_root=course_root)
    return 1 if problems else 0
