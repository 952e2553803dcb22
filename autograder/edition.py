"""``python -m autograder release --student DIR``: the self-contained student repository.

What students clone (or pip-install from a git URL, which is what the Colab install cell does):

    DIR/
      README.md            Colab badges, local set-up in two commands, data, visible tests
      LICENSE              MIT (as pyproject.toml says)
      pyproject.toml       package ``featurelab`` (src layout): runtime dependencies only,
                           extra ``[lab]`` = JupyterLab; no nbgrader, no dev tools
      environment.yml      the same for conda
      .gitignore
      notebooks/<id>/      the released notebooks (fresh from solutions/, identity substituted)
      src/featurelab/      the helper package, as in this repository

and nothing else: never ``solutions/``, ``autograder/`` (checks, thresholds, gradebook) or a
line of a solution region / hidden test. :func:`scan` proves it on the files written (every
file: notebooks by their cell text, everything else line by line); the build refuses, and
removes what it wrote, when the scan finds anything. The package is shipped as it is in
``src/featurelab`` (student-facing by design): there a block of consecutive secret lines is a
leak, and single shared lines (generic code such as ``return {``) are printed for review.

The course identity (``autograder/course.toml``) must be set: while it is the placeholder the
build refuses (``allow_placeholder`` for tests and demos). With ``git`` the folder becomes a
git repository with one commit (branch ``main``) tagged ``ref`` (unless ``ref`` is a commit
id), so that ``pip install "featurelab @ git+<url>@<ref>"`` works once it is pushed. Without
``git`` the files are written only: copy them into a clone of the student repository, commit
and tag there (that keeps its history across editions).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from . import course as course_mod
from . import identity as identity_mod
from . import release as release_mod
from .course import REPO_ROOT, AutograderError
from .edition_scan import (  # noqa: F401 (the scan is part of this module's API)
    FORBIDDEN_NAMES,
    IGNORED,
    edition_files,
    scan,
    secret_lines,
    shared_with_package,
)
from .edition_texts import (  # noqa: F401 (the texts are part of this module's API)
    DATA_COMMAND,
    DATASETS,
    GITIGNORE_TEXT,
    LAB_REQUIREMENTS,
    LICENSE_TEXT,
    PYPROJECT,
    _pyproject,
    _title,
    environment_text,
    lab_requirements,
    pyproject_text,
    readme_text,
)

PACKAGE_DIR = REPO_ROOT / "src" / "featurelab"
GIT_AUTHOR = ("featurelab release", "featurelab-release@localhost")

# --------------------------------------------------------------------------------------------
# the build


@dataclass
class Edition:
    path: Path
    files: list[str] = field(default_factory=list)
    titles: dict[str, str] = field(default_factory=dict)
    shared: list[str] = field(default_factory=list)  # shared_with_package: for review
    commit: str | None = None
    tag: str | None = None


def _check_target(target: Path, course_root: Path) -> None:
    for protected in {course_root, REPO_ROOT}:
        if target == protected or protected.is_relative_to(target):
            raise AutograderError(
                f"{target}: the student edition cannot be written over the course repository"
            )
        for name in ("solutions", "notebooks", "autograder", "src", "tests", ".git"):
            if target.is_relative_to(protected / name):
                raise AutograderError(
                    f"{target}: inside the course's {name}/ folder; choose "
                    "another folder (e.g. build/student-edition)"
                )


def _prepare_target(target: Path, *, force: bool, git: bool) -> bool:
    """Make ``target`` an empty folder (``.git`` kept with ``force``); True if it was created."""
    if not target.exists():
        target.mkdir(parents=True)
        return True
    if not target.is_dir():
        raise AutograderError(f"{target} exists and is not a folder")
    entries = [p for p in target.iterdir()]
    if entries and not force:
        raise AutograderError(
            f"{target} is not empty: choose a new folder, or --force to "
            "replace its content (a .git folder is kept)"
        )
    if git and (target / ".git").exists():
        raise AutograderError(
            f"{target} is already a git repository: build without --git and commit there yourself"
        )
    for entry in entries:
        if entry.name == ".git":
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    return False


def _clear(target: Path, created: bool) -> None:
    if created:
        shutil.rmtree(target, ignore_errors=True)
        return
    for entry in target.iterdir():
        if entry.name != ".git":
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()


def _git(target: Path, *args: str) -> str:
    name, email = GIT_AUTHOR
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": name,
        "GIT_COMMITTER_EMAIL": email,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
    }
    result = subprocess.run(
        [
            "git",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "tag.gpgsign=false",
            "-c",
            "core.hooksPath=/dev/null",
            *args,
        ],
        cwd=target,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise AutograderError(f"git {' '.join(args)} failed in {target}:\n{result.stderr.strip()}")
    return result.stdout.strip()


def build(
    target: Path,
    *,
    course_root: Path = REPO_ROOT,
    identity: identity_mod.CourseIdentity | None = None,
    assignments: list[str] | None = None,
    git: bool = False,
    force: bool = False,
    allow_placeholder: bool = False,
) -> Edition:
    """Write the student edition into ``target`` (module docstring); returns what was written."""
    course_root = Path(course_root).resolve()
    identity = identity or identity_mod.load(course_root=course_root)
    if identity.is_placeholder and not allow_placeholder:
        raise AutograderError(
            f"refusing to build the student edition: "
            f"{identity_mod.placeholder_message(identity)} "
            "(--allow-placeholder builds one anyway, for tests and demos)"
        )
    assignment_ids = course_mod.resolve_assignments(course_root, assignments)
    unknown = sorted({d for a, d in DATASETS.items() if a in assignment_ids} - _dataset_names())
    if unknown:
        raise AutograderError(
            f"dataset(s) {', '.join(unknown)} named in autograder/edition.py "
            "are not in featurelab.data.REGISTRY"
        )
    target = Path(target).absolute()
    _check_target(target.resolve(), course_root)
    created = _prepare_target(target, force=force, git=git)
    try:
        titles = _write(target, course_root, assignment_ids, identity)
        secrets = secret_lines(course_root, assignment_ids)
        leaks = scan(target, secrets, allow_placeholder=allow_placeholder)
        if leaks:
            raise AutograderError(
                "the student edition would leak (nothing was kept):\n  "
                + "\n  ".join(leaks[:40])
                + (f"\n  ... and {len(leaks) - 40} more" if len(leaks) > 40 else "")
            )
    except BaseException:
        _clear(target, created)
        raise
    edition = Edition(
        target,
        [p.relative_to(target).as_posix() for p in edition_files(target)],
        titles=titles,
        shared=shared_with_package(target, secrets),
    )
    if git:
        _git(target, "init", "-q", "-b", "main")
        _git(target, "add", "-A")
        _git(target, "commit", "-q", "-m", f"featurelab student edition {identity.ref}")
        edition.commit = _git(target, "rev-parse", "HEAD")
        if not identity.ref_is_commit:
            _git(target, "tag", identity.ref)
            edition.tag = identity.ref
    return edition


def _dataset_names() -> set[str]:
    from featurelab.data import REGISTRY

    return set(REGISTRY)


def _write(
    target: Path,
    course_root: Path,
    assignment_ids: list[str],
    identity: identity_mod.CourseIdentity,
) -> dict[str, str]:
    titles = {}
    with tempfile.TemporaryDirectory(prefix="featurelab-edition-") as work:
        released = release_mod.generate_into(
            course_root, assignment_ids, Path(work), identity=identity
        )
        leaks = []
        for assignment in assignment_ids:
            shutil.copytree(
                released / assignment,
                target / "notebooks" / assignment,
                ignore=shutil.ignore_patterns(*IGNORED),
            )
            notebook = course_mod.read_notebook(released / assignment / f"{assignment}.ipynb")
            source = course_mod.read_notebook(course_mod.source_notebook(course_root, assignment))
            leaks += [f"{assignment}: {leak}" for leak in release_mod.find_leaks(source, notebook)]
            titles[assignment] = _title(notebook, assignment)
        if leaks:
            raise AutograderError("the release leaks: " + "; ".join(leaks))
    shutil.copytree(
        PACKAGE_DIR, target / "src" / "featurelab", ignore=shutil.ignore_patterns(*IGNORED)
    )
    package_data = sorted(
        {
            f"**/*{p.suffix}" if p.suffix else p.name
            for p in (target / "src" / "featurelab").rglob("*")
            if p.is_file() and p.suffix != ".py"
        }
    )
    project = _pyproject()["project"]
    (target / "pyproject.toml").write_text(pyproject_text(project, package_data))
    (target / "environment.yml").write_text(environment_text(project))
    (target / "README.md").write_text(readme_text(identity, titles))
    (target / "LICENSE").write_text(LICENSE_TEXT.format(holder=identity.license_holder))
    (target / ".gitignore").write_text(GITIGNORE_TEXT)
    for path in target.rglob("*"):
        if ".git" not in path.relative_to(target).parts[:1]:
            path.chmod(0o755 if path.is_dir() else 0o644)
    return titles


def main(
    *,
    target: Path,
    course_root: Path = REPO_ROOT,
    assignments: list[str] | None = None,
    git: bool = False,
    force: bool = False,
    allow_placeholder: bool = False,
) -> int:
    """CLI entry point (exit code)."""
    identity = identity_mod.load(course_root=course_root)
    edition = build(
        target,
        course_root=course_root,
        identity=identity,
        assignments=assignments,
        git=git,
        force=force,
        allow_placeholder=allow_placeholder,
    )
    print(
        f"student edition for {identity.describe()} written to {edition.path} "
        f"({len(edition.files)} files; scanned: no solution, hidden test or reference line)"
    )
    if edition.shared:
        print(
            f"for review: {len(edition.shared)} single line(s) of the featurelab package also "
            "appear in a solution, hidden test or reference check (generic code, or a helper "
            "that gives an answer away?):"
        )
        for line in edition.shared:
            print(f"  {line}")
    if edition.commit:
        print(
            f"git: one commit {edition.commit[:12]} on main"
            + (f", tagged {edition.tag}" if edition.tag else "")
        )
        print(
            f"publish: cd {edition.path} && git remote add origin {identity.clone_url} && "
            f"git push -u origin main --tags"
        )
    else:
        print(
            f"copy it into a clone of {identity.repo_url}, commit and tag {identity.ref} "
            "(or rebuild with --git for a fresh repository)"
        )
    if identity.is_placeholder:
        print(f"WARNING: {identity_mod.placeholder_message(identity)}")
    return 0


__all__ = ["Edition", "build", "scan", "secret_lines"]
