"""``python -m autograder release``: regenerate the student notebooks from the sources.

``solutions/<id>/<id>.ipynb`` (nbgrader source: solutions, hidden tests) ->
``notebooks/<id>/<id>.ipynb`` (the student release, committed) with nbgrader's
``generate_assignment``, run in a temporary copy of the course so that nothing but the release
folders and the gradebook changes. The course identity (``autograder/course.toml``, see
:mod:`autograder.identity`) replaces the ``{{COURSE_...}}`` tokens of the sources first: the
Colab badges and the Colab install cell of the release point at the public student repository,
pinned to its ``ref``. The output is deterministic (same sources, same bytes): no
outputs, no execution counts, the nbgrader metadata (with checksums) kept.

The gradebook the release creates (hidden tests and checksums, needed by ``nbgrader
autograde``) is written to ``<course>/gradebook.db`` (git-ignored), where plain nbgrader
commands look for it; an existing gradebook is updated in place, so grades already in it are
kept. ``python -m autograder grade`` does not depend on it: it releases into its own template
for every run, so it never grades against a stale gradebook.

``release --check`` regenerates into a temporary folder and fails when ``notebooks/`` differs
(stale or missing files), then checks that no release leaks a solution: no solution or hidden
test markers, and no line that only appears inside a ``BEGIN SOLUTION`` / ``BEGIN HIDDEN TESTS``
region of the source.

``release --student DIR`` builds the self-contained student repository instead (see
:mod:`autograder.edition`).
"""

from __future__ import annotations

import filecmp
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from . import cells as cells_mod
from . import course as course_mod
from . import identity as identity_mod
from .course import REPO_ROOT, AutograderError
from .template import course_config_text

MARKERS = (
    "BEGIN SOLUTION",
    "END SOLUTION",
    "BEGIN HIDDEN TESTS",
    "END HIDDEN TESTS",
    "BEGIN MARK SCHEME",
    "END MARK SCHEME",
)
MIN_LEAK_LINE = 8  # shorter solution lines ("pass", "return x") are too common to call a leak


def substitute_identity(folder: Path, identity: identity_mod.CourseIdentity) -> None:
    """Replace the identity tokens (``{{COURSE_...}}``) in every notebook under ``folder``.

    Done on the temporary copy of the sources, before nbgrader: the checksums nbgrader stores
    for locked cells (the setup cell holds the Colab install line) match the released text.
    """
    for path in sorted(Path(folder).rglob("*.ipynb")):
        text = path.read_text(encoding="utf-8")
        replaced = identity.substitute(text)
        if replaced != text:
            path.write_text(replaced, encoding="utf-8")


def unknown_tokens(text: str) -> list[str]:
    """Identity-like tokens (``{{COURSE_...}}``) left in ``text``."""
    return sorted(set(re.findall(r"\{\{COURSE_[A-Za-z0-9_]*\}\}", text)))


def generate_into(
    course_root: Path,
    assignment_ids: list[str],
    work: Path,
    *,
    db_path: Path | None = None,
    identity: identity_mod.CourseIdentity | None = None,
) -> Path:
    """Release ``assignment_ids`` in a temporary course under ``work``; returns its release dir.

    The course identity (``autograder/course.toml`` unless ``identity`` is given) replaces the
    ``{{COURSE_...}}`` tokens of the sources (Colab badge, Colab install cell).
    """
    identity = identity or identity_mod.load(course_root=course_root)
    temp_course = Path(work) / "course"
    course_mod.copy_sources(course_root, assignment_ids, temp_course)
    substitute_identity(temp_course / course_mod.SOURCE_DIR, identity)
    db_path = db_path or temp_course / "gradebook.db"
    (temp_course / "nbgrader_config.py").write_text(course_config_text(temp_course, None, db_path))
    course_mod.run_nbgrader(
        "generate_assignment",
        "*",
        "--force",
        course_root=temp_course,
        work_dir=Path(work) / "jupyter",
    )
    released = temp_course / course_mod.RELEASE_DIR
    for path in sorted(released.rglob("*.ipynb")):
        left = unknown_tokens(path.read_text(encoding="utf-8"))
        if left:
            raise AutograderError(
                f"{path.relative_to(released)}: unknown identity token(s) {', '.join(left)} "
                f"(known: {', '.join(identity_mod.TOKENS)})"
            )
    return released


def _files(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    return {
        str(path.relative_to(folder)): path
        for path in sorted(folder.rglob("*"))
        if path.is_file()
        and not set(path.relative_to(folder).parts) & set(course_mod.IGNORED_NAMES)
    }


def generate(
    course_root: Path = REPO_ROOT,
    assignments: list[str] | None = None,
    *,
    gradebook: bool = True,
    identity: identity_mod.CourseIdentity | None = None,
) -> dict[str, Path]:
    """Regenerate ``notebooks/<id>/`` for ``assignments`` (all by default); returns the notebooks.

    Each ``notebooks/<id>/`` folder is replaced as a whole (a file removed from the source
    disappears from the release). With ``gradebook``, ``<course>/gradebook.db`` is updated.
    """
    course_root = Path(course_root).resolve()
    assignment_ids = course_mod.resolve_assignments(course_root, assignments)
    with tempfile.TemporaryDirectory(prefix="featurelab-release-") as work:
        db_path = course_root / "gradebook.db" if gradebook else None
        released = generate_into(
            course_root, assignment_ids, Path(work), db_path=db_path, identity=identity
        )
        result = {}
        for assignment in assignment_ids:
            target = course_root / course_mod.RELEASE_DIR / assignment
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(released / assignment, target)
            for path in target.rglob("*"):
                path.chmod(0o755 if path.is_dir() else 0o644)
            result[assignment] = course_mod.release_notebook(course_root, assignment)
    return result


def stale_files(
    course_root: Path = REPO_ROOT,
    assignments: list[str] | None = None,
    *,
    identity: identity_mod.CourseIdentity | None = None,
) -> list[str]:
    """Files of ``notebooks/`` that a fresh release would change: ``["<path>: why", ...]``."""
    course_root = Path(course_root).resolve()
    assignment_ids = course_mod.resolve_assignments(course_root, assignments)
    problems = []
    with tempfile.TemporaryDirectory(prefix="featurelab-release-check-") as work:
        released = generate_into(course_root, assignment_ids, Path(work), identity=identity)
        for assignment in assignment_ids:
            fresh = _files(released / assignment)
            committed = _files(course_root / course_mod.RELEASE_DIR / assignment)
            prefix = f"{course_mod.RELEASE_DIR}/{assignment}/"
            for name in sorted(set(fresh) | set(committed)):
                if name not in committed:
                    problems.append(f"{prefix}{name}: missing (run python -m autograder release)")
                elif name not in fresh:
                    problems.append(f"{prefix}{name}: not produced by the source any more")
                elif not filecmp.cmp(fresh[name], committed[name], shallow=False):
                    problems.append(f"{prefix}{name}: differs from a fresh release (stale)")
    return problems


def _text(source) -> str:
    return "".join(source) if isinstance(source, list) else str(source)


def _region_lines(source, region: str) -> tuple[set[str], set[str]]:
    """(stripped lines inside the region, stripped lines outside it) of one cell."""
    inside, outside = cells_mod.region_lines(source, region)
    return {line.strip() for line in inside}, {line.strip() for line in outside}


def find_leaks(source_nb, release_nb) -> list[str]:
    """What the release reveals that it should not: markers, solution or hidden-test lines.

    A line leaks when it is in the release but, in the source, only ever appears inside a
    solution or hidden-test region (a line the author also wrote outside such a region, e.g. a
    hint in the narrative, is not a leak). Also reports outputs and execution counts.
    """
    leaks = []
    secret: set[str] = set()
    public: set[str] = set()
    for cell in source_nb.cells:
        solution_in, solution_out = _region_lines(cell.source, "SOLUTION")
        hidden_in, hidden_out = _region_lines(cell.source, "HIDDEN TESTS")
        secret |= solution_in | hidden_in
        public |= solution_out & hidden_out
    secret = {
        line for line in secret - public if len(line) >= MIN_LEAK_LINE and not line.startswith("#")
    }
    for index, cell in enumerate(release_nb.cells):
        gid = cell.metadata.get("nbgrader", {}).get("grade_id") or f"cell {index + 1}"
        text = _text(cell.source)
        for marker in MARKERS:
            if marker in text:
                leaks.append(f"{gid}: contains the marker {marker!r}")
        for line in text.splitlines():
            if line.strip() in secret:
                leaks.append(f"{gid}: reveals {line.strip()!r}")
        if cell.cell_type == "code":
            if cell.get("outputs"):
                leaks.append(f"{gid}: has outputs")
            if cell.get("execution_count") is not None:
                leaks.append(f"{gid}: has an execution count")
    return leaks


def release_leaks(course_root: Path = REPO_ROOT, assignments: list[str] | None = None) -> list[str]:
    """:func:`find_leaks` for every committed release notebook: ``["<id>: <leak>", ...]``."""
    course_root = Path(course_root).resolve()
    problems = []
    for assignment in course_mod.resolve_assignments(course_root, assignments):
        released = course_mod.release_notebook(course_root, assignment)
        if not released.is_file():
            problems.append(f"{assignment}: no release notebook (run python -m autograder release)")
            continue
        source = course_mod.read_notebook(course_mod.source_notebook(course_root, assignment))
        for leak in find_leaks(source, course_mod.read_notebook(released)):
            problems.append(f"{assignment}: {leak}")
    return problems


@dataclass
class CheckResult:
    stale: list[str] = field(default_factory=list)
    leaks: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.stale and not self.leaks


def check(course_root: Path = REPO_ROOT, assignments: list[str] | None = None) -> CheckResult:
    """``release --check``: stale files and leaks (both empty when all is well)."""
    return CheckResult(
        stale_files(course_root, assignments), release_leaks(course_root, assignments)
    )


def main(
    *, course_root: Path = REPO_ROOT, assignments: list[str] | None = None, check_only: bool = False
) -> int:
    """CLI entry point (exit code)."""
    if check_only:
        result = check(course_root, assignments)
        for line in result.stale:
            print(f"stale: {line}")
        for line in result.leaks:
            print(f"leak:  {line}")
        if result.ok:
            print("release is up to date and leaks nothing")
            return 0
        print("release check FAILED: run `python -m autograder release` and fix any leak")
        return 1
    identity = identity_mod.load(course_root=course_root)
    written = generate(course_root, assignments, identity=identity)
    for assignment, path in written.items():
        print(f"released {assignment} -> {path.relative_to(Path(course_root).resolve())}")
    print(f"gradebook: {Path(course_root).resolve() / 'gradebook.db'}")
    print(f"course identity: {identity.describe()} ({identity.config})")
    if identity.is_placeholder:
        print(f"note: {identity_mod.placeholder_message(identity)}")
    return 0


__all__ = ["AutograderError", "check", "find_leaks", "generate", "release_leaks", "stale_files"]
