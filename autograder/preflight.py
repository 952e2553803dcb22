"""``python -m autograder preflight``: is the course ready to be graded?

Static checks of every source notebook (nothing runs):

* nbgrader metadata valid (nbgrader's own validator, schema version 3), grade ids unique;
* every graded cell has points > 0, every test cell is locked, at least one autograded cell;
* answer cells hold ``### BEGIN SOLUTION`` / ``### END SOLUTION`` (balanced), hidden tests are
  balanced and only in test cells; visible test lines do not import ``autograder`` (students
  do not have it);
* no outputs, no execution counts.

Course-level checks (nothing runs either):

* the course identity (``autograder/course.toml``): an error while it is the placeholder and the
  sources use the identity tokens (the badges and the Colab install cell would point at a
  repository that does not exist); a warning for a branch-like ``ref``; sources must use the
  ``{{COURSE_...}}`` tokens, not a hard-coded Colab or ``git+https://`` URL;
* thresholds of the profile (``grading``/``full``) never measured with the pretrained weights
  (:func:`autograder.calibrate.uncalibrated`): an error, with the command that measures them.

Then (unless ``--static-only``) the solution and the blank release of every assignment are
graded in one parallel batch, in the chosen profile, exactly like students' work:

* the solution must get full marks with no error in any cell, and no test cell may write to
  stderr (plain nbgrader would give it 0);
* the blank release must score 0 on every autograded cell (a test that passes on the blank
  release tests nothing the student writes);
* every executed cell of the solution is timed against the per-cell limit (a table; cells over
  half of the limit are flagged SLOW, over it OVER).
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from . import cells as cells_mod
from . import course as course_mod
from .course import REPO_ROOT


@dataclass
class Problem:
    assignment: str
    level: str  # "error" | "warning"
    message: str

    def __str__(self) -> str:
        return f"{self.level.upper():7s} {self.assignment}: {self.message}"


@dataclass
class PreflightReport:
    problems: list[Problem] = field(default_factory=list)
    timings: list[dict] = field(default_factory=list)  # assignment, index, grade_id, seconds, limit
    records: list = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "error"]


def static_checks(assignment: str, notebook) -> list[Problem]:
    """Problems of one source notebook (see the module docstring)."""
    from nbgrader.nbgraderformat import MetadataValidator, ValidationError

    problems = []

    def error(message):
        problems.append(Problem(assignment, "error", message))

    def warning(message):
        problems.append(Problem(assignment, "warning", message))

    try:
        MetadataValidator().validate_nb(copy.deepcopy(notebook))
    except ValidationError as exc:
        error(f"nbgrader metadata invalid: {exc}")
    seen: dict[str, int] = {}
    autograded = 0
    for index, cell in enumerate(notebook.cells, start=1):
        gid, is_test = _check_cell(index, cell, error, warning)
        if gid is not None:
            seen[gid] = seen.get(gid, 0) + 1
        autograded += is_test
    for gid, count in seen.items():
        if count > 1:
            error(f"grade id {gid!r} used {count} times")
    if not autograded:
        error("no autograded test cell")
    return problems


def _check_cell(index: int, cell, error, warning) -> tuple[str | None, bool]:
    """Report the problems of one source cell through ``error`` / ``warning``; returns
    ``(its grade id, or None for an ordinary cell; whether it is an autograded test cell)``."""
    meta = cell.metadata.get("nbgrader")
    where = f"cell {index}"
    source = cell.source
    if cell.cell_type == "code":
        if cell.get("outputs"):
            error(f"{where} has outputs (commit notebooks without outputs)")
        if cell.get("execution_count") is not None:
            error(f"{where} has an execution count")
    if "BEGIN HIDDEN TESTS" in source and not (
        meta and meta.get("grade") and not meta.get("solution")
    ):
        error(f"{where} has hidden tests but is not a test cell: they would be lost")
    if not meta:
        if "BEGIN SOLUTION" in source:
            error(f"{where} has a solution region but is not an nbgrader answer cell")
        return None, False
    gid = meta.get("grade_id", "")
    where = f"{gid or where}"
    if meta.get("schema_version") != 3:
        error(f"{where}: nbgrader schema_version {meta.get('schema_version')!r}, expected 3")
    if meta.get("grade"):
        points = meta.get("points")
        if not isinstance(points, (int, float)) or points <= 0:
            error(f"{where}: graded cell without points > 0 (points={points!r})")
    if meta.get("solution"):
        if "BEGIN SOLUTION" not in source:
            (error if cell.cell_type == "code" else warning)(
                f"{where}: answer cell without ### BEGIN SOLUTION (the whole cell would be "
                "replaced by the stub)"
            )
        elif not cells_mod.balanced(source, "SOLUTION"):
            error(f"{where}: unbalanced BEGIN/END SOLUTION")
        return gid, False
    if meta.get("grade") and cell.cell_type == "code":
        _check_test_cell(where, meta, source, error, warning)
        return gid, True
    return gid, False


def _check_test_cell(where: str, meta: dict, source: str, error, warning) -> None:
    """The problems of an autograded test cell: unlocked, unbalanced or missing hidden tests,
    a visible line importing ``autograder``."""
    if not meta.get("locked"):
        error(f"{where}: test cell is not locked")
    if not cells_mod.balanced(source, "HIDDEN TESTS"):
        error(f"{where}: unbalanced BEGIN/END HIDDEN TESTS")
    visible = cells_mod.region_lines(source, "HIDDEN TESTS")[1]
    if any("autograder" in line and "import" in line for line in visible):
        error(
            f"{where}: a visible test line imports autograder (students do not "
            "have it): move it inside the hidden tests"
        )
    if "BEGIN HIDDEN TESTS" not in source:
        warning(f"{where}: no hidden tests")


def course_checks(course_root: Path, assignment_ids: list[str], profile: str) -> list[Problem]:
    """Course identity and calibration problems (module docstring)."""
    from . import calibrate, identity

    problems = []
    uses_tokens = False
    for assignment in assignment_ids:
        text = course_mod.source_notebook(course_root, assignment).read_text(encoding="utf-8")
        uses_tokens |= identity.TOKEN_PREFIX in text
        if "colab.research.google.com/github/" in text:
            problems.append(
                Problem(
                    assignment,
                    "error",
                    "hard-coded Colab badge URL: use "
                    "{{COURSE_COLAB_URL}}/notebooks/<id>/<id>.ipynb",
                )
            )
        if "git+https://" in text or "git+http://" in text:
            problems.append(
                Problem(
                    assignment,
                    "error",
                    "hard-coded git URL in an install line: "
                    "use git+{{COURSE_REPO_URL}}@{{COURSE_REF}}",
                )
            )
    try:
        course_identity = identity.load(course_root=course_root)
    except course_mod.AutograderError as error:
        problems.append(Problem("course", "error", str(error)))
    else:
        for level, message in identity.problems(course_identity):
            if level == "error" and not uses_tokens:
                continue  # no notebook of this course carries the identity
            problems.append(Problem("course", level, message))
    if profile in calibrate.CALIBRATED_PROFILES:
        missing = calibrate.uncalibrated(assignment_ids, profile)
        for line in missing:
            problems.append(
                Problem(
                    line.split(" ", 1)[0],
                    "error",
                    f"threshold never measured with the pretrained weights: {line}",
                )
            )
        if missing:
            problems.append(
                Problem(
                    "course",
                    "error",
                    f"uncalibrated {profile!r} thresholds: {calibrate.how_to_calibrate(profile)}",
                )
            )
    return problems


def run_checks(
    record_solution, record_blank, assignment: str, limit: int
) -> tuple[list[Problem], list[dict]]:
    """Problems and timings from the graded solution and blank release of one assignment."""
    problems = _solution_problems(record_solution, assignment)
    timings: list[dict] = []
    test_ids = {c.grade_id for c in record_solution.cells if c.kind == "auto"}
    for timing in record_solution.timings:
        if timing.get("stderr") and timing.get("grade_id") in test_ids:
            problems.append(
                Problem(
                    assignment,
                    "warning",
                    f"test cell {timing['grade_id']} writes to stderr with the "
                    "solution (plain nbgrader would give it 0)",
                )
            )
        timings.append({"assignment": assignment, **timing, "limit": limit})
        if timing["seconds"] >= limit:
            problems.append(
                Problem(
                    assignment,
                    "error",
                    f"cell {timing['index'] + 1} ({timing.get('grade_id') or '-'}) "
                    f"takes {timing['seconds']:.1f} s, over the {limit} s limit",
                )
            )
    if record_blank is not None:
        problems += _blank_problems(record_blank, assignment)
    return problems, timings


def _solution_problems(solution, assignment: str) -> list[Problem]:
    """The solution must score full marks without an error in any cell."""
    problems = []
    if solution.status not in ("ok", "repaired") or solution.score < solution.max_score:
        failing = [
            f"{c.grade_id} ({c.message})"
            for c in solution.cells
            if c.kind == "auto" and (c.score or 0) < c.points
        ]
        problems.append(
            Problem(
                assignment,
                "error",
                f"the solution scores {solution.score:g}/{solution.max_score:g} "
                f"({solution.status}; {solution.reason}); failing: "
                f"{', '.join(failing) or '-'}",
            )
        )
    for error in solution.code_errors:
        message = f"the solution's cell {error['cell']} raised {error['message']}"
        problems.append(Problem(assignment, "error", message))
    return problems


def _blank_problems(blank, assignment: str) -> list[Problem]:
    """The blank release must be gradable and score nothing."""
    problems = []
    passing = [c.grade_id for c in blank.cells if c.kind == "auto" and (c.score or 0) > 0]
    if passing:
        problems.append(
            Problem(
                assignment,
                "error",
                f"test cell(s) {', '.join(passing)} give points to the blank "
                "release (they test nothing the student writes)",
            )
        )
    if blank.status in ("error", "invalid"):
        message = f"the blank release could not be graded: {blank.reason}"
        problems.append(Problem(assignment, "error", message))
    return problems


def preflight(
    *,
    course_root: Path = REPO_ROOT,
    assignments: list[str] | None = None,
    profile: str = "grading",
    jobs: int | None = None,
    timeout_cell: int | None = None,
    static_only: bool = False,
    progress: bool = True,
    out: Path | None = None,
) -> PreflightReport:
    """Run the checks (module docstring) and return the report."""
    from . import batch as batching
    from . import students
    from .submissions import Submission

    course_root = Path(course_root).resolve()
    assignment_ids = course_mod.resolve_assignments(course_root, assignments)
    report = PreflightReport()
    report.problems += course_checks(course_root, assignment_ids, profile)
    for assignment in assignment_ids:
        notebook = course_mod.read_notebook(course_mod.source_notebook(course_root, assignment))
        report.problems += static_checks(assignment, notebook)
    if static_only:
        return report
    with tempfile.TemporaryDirectory(prefix="featurelab-preflight-") as tmp:
        out = Path(out) if out else Path(tmp) / "out"
        template = batching.build_template(
            course_root, course_mod.assignments(course_root), out / ".work"
        )
        limit = timeout_cell or template.execute_timeout
        batch = []
        for assignment in assignment_ids:
            source = course_mod.read_notebook(course_mod.source_notebook(course_root, assignment))
            release = template.release(assignment).notebook
            for who, notebook in (
                ("solution", students.solved_release(source, release)),
                ("blank", students.blank_release(release)),
            ):
                path = Path(tmp) / "submissions" / f"{who}_{assignment}.ipynb"
                students.write(notebook, path)
                batch.append(Submission(who, assignment, path, path.name, "flat"))
        options = batching.Options(profile=profile, timeout_cell=timeout_cell)
        result = batching.grade_batch(
            batch,
            out=out,
            course_root=course_root,
            options=options,
            jobs=jobs,
            progress=progress,
            resume=False,
        )
    report.records = result.records
    by_key = {(r.student, r.assignment): r for r in result.records}
    for assignment in assignment_ids:
        problems, timings = run_checks(
            by_key[("solution", assignment)], by_key.get(("blank", assignment)), assignment, limit
        )
        report.problems += problems
        report.timings += timings
    return report


def format_timings(timings: list[dict]) -> str:
    lines = [f"{'assignment':28s} {'cell':>4s}  {'grade id':32s} {'seconds':>8s} {'limit':>6s}"]
    for row in timings:
        flag = (
            "OVER"
            if row["seconds"] >= row["limit"]
            else "SLOW"
            if row["seconds"] >= row["limit"] / 2
            else ""
        )
        lines.append(
            f"{row['assignment']:28s} {row['index'] + 1:4d}  "
            f"{(row.get('grade_id') or '-')[:32]:32s} {row['seconds']:8.2f} "
            f"{row['limit']:6d} {flag}".rstrip()
        )
    return "\n".join(lines)


def main(
    *,
    course_root: Path,
    assignments: list[str] | None,
    profile: str,
    jobs: int | None,
    timeout_cell: int | None,
    static_only: bool,
) -> int:
    """CLI entry point (exit code 1 on any error)."""
    report = preflight(
        course_root=course_root,
        assignments=assignments,
        profile=profile,
        jobs=jobs,
        timeout_cell=timeout_cell,
        static_only=static_only,
    )
    if report.timings:
        print(f"per-cell times of the solutions (profile {profile}):")
        print(format_timings(report.timings))
    for problem in report.problems:
        print(problem)
    if report.errors:
        print(f"preflight FAILED: {len(report.errors)} error(s)")
        return 1
    print("preflight OK" + (f" ({len(report.problems)} warning(s))" if report.problems else ""))
    return 0
