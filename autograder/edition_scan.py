"""The student edition's leak scan: every line of a solution region, a hidden test or a
reference check, the markers and identity tokens, none of which may reach the edition."""

from __future__ import annotations

import json
from pathlib import Path

from . import course as course_mod
from . import identity as identity_mod
from . import release as release_mod
from .course import REPO_ROOT

FORBIDDEN_NAMES = (
    "solutions",
    "autograder",
    "thresholds.json",
    "gradebook.db",
    "nbgrader_config.py",
)
IGNORED = (*course_mod.IGNORED_NAMES, "*.pyc", "*.egg-info")
MIN_CHECK_LINE = 20  # shorter lines of autograder/checks are too common to be distinctive

# The shipped package (src/featurelab) is student-facing by design and owned by its authors; it
# legitimately shares generic lines with solutions, hidden tests and checks ("return {",
# "loss.backward()", the evidence API the hidden tests call). In its files a shared single line
# is listed for review (`shared_with_package`), while a block of PACKAGE_BLOCK consecutive
# secret lines (a pasted solution or check) is a leak. Everywhere else one line is a leak.
PACKAGE_PREFIX = "src/"
PACKAGE_BLOCK = 3


# --------------------------------------------------------------------------------------------
# what must never be in the edition


def _cell_lines(source) -> tuple[set[str], set[str], set[str]]:
    """(solution lines, hidden-test lines, lines outside both) of one cell, stripped."""
    solution_in, solution_out = release_mod._region_lines(source, "SOLUTION")
    hidden_in, hidden_out = release_mod._region_lines(source, "HIDDEN TESTS")
    return solution_in, hidden_in, solution_out & hidden_out


def _distinctive(line: str, minimum: int) -> bool:
    return (
        len(line) >= minimum
        and not line.startswith(("#", "import ", "from ", "@"))
        and line not in ('"""', "'''")
    )


def secret_lines(
    course_root: Path = REPO_ROOT,
    assignments: list[str] | None = None,
    checks_dir: Path | None = None,
) -> dict[str, str]:
    """``{stripped line: where it comes from}`` that no student-facing file may contain.

    * every line of a ``BEGIN SOLUTION`` or ``BEGIN HIDDEN TESTS`` region of ``solutions/``
      (at least 8 characters, not a comment: the rule of ``release --check``), unless the
      author also wrote it outside such regions (then the student sees it anyway);
    * every distinctive line of the reference checks, ``<course>/autograder/checks/*.py``
      (``<course>/checks/*.py`` for a course laid out like the toy one), at least 20
      characters; not a comment, an import, a decorator; not a line the release notebooks show.
    """
    course_root = Path(course_root).resolve()
    secret: dict[str, str] = {}
    public: set[str] = set()
    for assignment in course_mod.resolve_assignments(course_root, assignments):
        notebook = course_mod.read_notebook(course_mod.source_notebook(course_root, assignment))
        for cell in notebook.cells:
            solution, hidden, outside = _cell_lines(cell.source)
            public |= outside
            gid = cell.metadata.get("nbgrader", {}).get("grade_id", "?")
            for line in solution:
                secret.setdefault(line, f"solution {assignment}/{gid}")
            for line in hidden:
                secret.setdefault(line, f"hidden test {assignment}/{gid}")
    secret = {
        line: where
        for line, where in secret.items()
        if line not in public and _distinctive(line, release_mod.MIN_LEAK_LINE)
    }
    if checks_dir is None:
        candidates = [course_root / "autograder" / "checks", course_root / "checks"]
        checks_dir = next((c for c in candidates if c.is_dir()), candidates[0])
    for path in sorted(Path(checks_dir).glob("*.py")):
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if _distinctive(line, MIN_CHECK_LINE) and line not in public:
                secret.setdefault(line, f"reference check {path.parent.name}/{path.name}")
    return secret


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    return []


def _file_lines(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.splitlines()
    if path.suffix == ".ipynb":  # cell sources are JSON strings: scan them decoded too
        try:
            lines += "\n".join(_strings(json.loads(text))).splitlines()
        except ValueError:
            pass
    return lines


def edition_files(directory: Path) -> list[Path]:
    """Every file of the edition, ``.git/`` excepted (sorted)."""
    directory = Path(directory)
    return sorted(
        path
        for path in directory.rglob("*")
        if path.is_file() and ".git" not in path.relative_to(directory).parts[:1]
    )


def _secret_runs(lines: list[str], secrets: dict[str, str]) -> list[list[str]]:
    """Runs of consecutive secret lines (blank lines do not break a run)."""
    runs, current = [], []
    for line in lines:
        stripped = line.strip()
        if not stripped:
            continue
        if stripped in secrets:
            current.append(stripped)
        else:
            if current:
                runs.append(current)
            current = []
    if current:
        runs.append(current)
    return runs


def scan(directory: Path, secrets: dict[str, str], *, allow_placeholder: bool = False) -> list[str]:
    """What the edition in ``directory`` must not contain: ``["<file>: why", ...]``.

    Every file is read (as text; notebooks also by their decoded cell text): a line equal
    (stripped) to a :func:`secret_lines` line (in the package ``src/``: a block of
    ``PACKAGE_BLOCK`` consecutive ones; single shared lines are :func:`shared_with_package`),
    an nbgrader solution / hidden-test marker, a ``{{COURSE_...}}`` token, the placeholder
    repository URL (unless ``allow_placeholder``); and no file or folder may be named like the
    instructor side (``solutions``, ``autograder``, ``thresholds.json``, ...).
    """
    directory = Path(directory)
    problems = []
    for path in edition_files(directory):
        rel = path.relative_to(directory).as_posix()
        in_package = rel.startswith(PACKAGE_PREFIX)
        named = set(path.relative_to(directory).parts) & set(FORBIDDEN_NAMES)
        if named:
            problems.append(f"{rel}: instructor-side name {sorted(named)[0]!r}")
        lines = _file_lines(path)
        found = []
        if in_package:
            for run in _secret_runs(lines, secrets):
                if len(run) >= PACKAGE_BLOCK:
                    found.append(
                        f"reveals a block of {len(run)} lines of {secrets[run[0]]}, from {run[0]!r}"
                    )
        for line in lines:
            stripped = line.strip()
            if stripped in secrets and not in_package:
                found.append(f"reveals {stripped!r} ({secrets[stripped]})")
            found += [
                f"contains the marker {marker!r}"
                for marker in release_mod.MARKERS
                if marker in line
            ]
            if identity_mod.TOKEN_PREFIX in line:
                found.append(f"contains an unsubstituted identity token: {stripped!r}")
            if not allow_placeholder and identity_mod.PLACEHOLDER_URL in line:
                found.append(f"contains the placeholder URL {identity_mod.PLACEHOLDER_URL!r}")
        problems += [f"{rel}: {what}" for what in dict.fromkeys(found)]
    return problems


def shared_with_package(directory: Path, secrets: dict[str, str]) -> list[str]:
    """Single secret lines the package shares: not leaks by :func:`scan`'s rule, for review."""
    directory = Path(directory)
    shared: dict[str, str] = {}
    for path in edition_files(directory):
        rel = path.relative_to(directory).as_posix()
        if rel.startswith(PACKAGE_PREFIX):
            for line in _file_lines(path):
                if line.strip() in secrets:
                    shared.setdefault(line.strip(), rel)
    return [f"{rel}: {line!r} ({secrets[line]})" for line, rel in sorted(shared.items())]
