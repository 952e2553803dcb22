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

import json
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

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

PACKAGE_DIR = REPO_ROOT / "src" / "featurelab"
PYPROJECT = REPO_ROOT / "pyproject.toml"
LAB_REQUIREMENTS = ("jupyterlab", "ipykernel")  # taken from the `course` extra of pyproject.toml
# Datasets per assignment, named as `python -m featurelab.data get NAME` takes them.
DATASETS = {
    "tp3_scene15_svm": "scene15",
    "tp4_cats_dogs_mobilenet": "petimages",
    "tp5_cifar10_clustering": "cifar10",
}
DATA_COMMAND = "python -m featurelab.data get"
GIT_AUTHOR = ("featurelab release", "featurelab-release@localhost")

# --------------------------------------------------------------------------------------------
# the files


def _pyproject() -> dict:
    return tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))


def _requirement_name(spec: str) -> str:
    name = spec
    for sep in "<>=!~[; @":
        name = name.split(sep)[0]
    return name.strip().lower()


def lab_requirements(project: dict) -> list[str]:
    extras = project.get("optional-dependencies", {})
    wanted = []
    for spec in [s for specs in extras.values() for s in specs]:
        if _requirement_name(spec) in LAB_REQUIREMENTS and spec not in wanted:
            wanted.append(spec)
    missing = set(LAB_REQUIREMENTS) - {_requirement_name(s) for s in wanted}
    return wanted + sorted(missing)


def _toml_list(items: list[str], indent: str = "    ") -> str:
    return "[\n" + "".join(f"{indent}{json.dumps(item)},\n" for item in items) + "]"


def pyproject_text(project: dict, package_data: list[str]) -> str:
    deps = project["dependencies"]
    lab = lab_requirements(project)
    data = ""
    if package_data:
        data = f"\n[tool.setuptools.package-data]\nfeaturelab = {_toml_list(package_data)}\n"
    return f"""[build-system]
requires = ["setuptools>=77"]
build-backend = "setuptools.build_meta"

[project]
name = "featurelab"
version = {json.dumps(project["version"])}
description = "Course package of the featurelab practical-work notebooks: transfer learning by feature extraction with pretrained CNNs (PyTorch)."
readme = "README.md"
requires-python = {json.dumps(project.get("requires-python", ">=3.10"))}
license = "MIT"
license-files = ["LICENSE"]
# What the notebooks need (Colab installs exactly this).
dependencies = {_toml_list(deps)}

[project.optional-dependencies]
# Working on your own machine: JupyterLab and the Python kernel.
lab = {_toml_list(lab)}

[tool.setuptools.packages.find]
where = ["src"]
{data}"""


def environment_text(project: dict) -> str:
    lines = "".join(
        f"      - {spec}\n" for spec in [*project["dependencies"], *lab_requirements(project)]
    )
    return (
        "# conda env create -f environment.yml && conda activate featurelab\n"
        "# (the same packages as pyproject.toml with its [lab] extra)\n"
        "name: featurelab\nchannels:\n  - conda-forge\ndependencies:\n  - python=3.11\n"
        f"  - pip\n  - pip:\n{lines}      - -e .\n"
    )


LICENSE_TEXT = """MIT License

Copyright (c) {holder}

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""

GITIGNORE_TEXT = """.venv/
__pycache__/
*.egg-info/
.ipynb_checkpoints/
/data/
/build/
"""


def _title(notebook, assignment: str) -> str:
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return assignment


def readme_text(identity: identity_mod.CourseIdentity, titles: dict[str, str]) -> str:
    badge = "https://colab.research.google.com/assets/colab-badge.svg"
    rows = "\n".join(
        f"| [{titles[a]}](notebooks/{a}/{a}.ipynb) | "
        f"{'`' + DATA_COMMAND + ' ' + DATASETS[a] + '`' if a in DATASETS else 'none'} | "
        f"[![Open In Colab]({badge})]({identity.colab_notebook_url(a)}) |"
        for a in titles
    )
    names = [DATASETS[a] for a in titles if a in DATASETS]
    dataset_lines = (
        (
            f"{DATA_COMMAND} NAME    # NAME: {', '.join(names)} (see the table)\n"
            f"{DATA_COMMAND} all     # every dataset of the course"
        )
        if names
        else "# no notebook of this edition needs a dataset"
    )
    return f"""# featurelab: transfer learning by feature extraction (student edition)

Practical-work notebooks (TPs) on **feature extraction with pretrained CNNs** in PyTorch, and
`featurelab`, the small helper package they import. This is the course version `{identity.ref}`.

| notebook | data | Colab |
|---|---|---|
{rows}

## On Colab

Click a notebook's badge. Its first cell installs the course package, on Colab only:

    {identity.pip_requirement}

Choose a GPU runtime (Runtime > Change runtime type) for the TPs that extract features from a
dataset. On Colab the parameters cell's `DOWNLOAD = None` means yes: a missing dataset or
pretrained weight file is downloaded when the notebook first needs it (free space checked,
progress bar, checksum). A runtime reset wipes the runtime's disk: set
`DATA_ROOT = "/content/drive/MyDrive/featurelab"` in the parameters cell to keep the data, the
weights and the feature cache on your Google Drive (the notebook mounts it and asks for your
permission once).

## On your own machine

Two commands (Python >= 3.10 and git):

```bash
git clone --branch {identity.ref} {identity.clone_url} featurelab-course && cd featurelab-course
python3 -m venv .venv && .venv/bin/python -m pip install -e ".[lab]"
```

then `.venv/bin/jupyter lab notebooks/`. With conda instead:
`conda env create -f environment.yml && conda activate featurelab`, then `jupyter lab notebooks/`.

## Data and pretrained weights

```bash
{dataset_lines}
```

downloads a dataset, checks its checksum and extracts it, into `$FEATURELAB_DATA` (default:
`data/` in this folder; `~/.cache/featurelab/data` when the package is installed elsewhere).
It skips what is already there and verified. TPs without a dataset in the table need none.
The pretrained ImageNet weights go to the torch hub cache (`$TORCH_HOME`):
`python -m featurelab.backbones get all` fetches them ahead of time (before working offline).
Or set `DOWNLOAD = True` in a notebook's parameters cell: it then fetches the data and weights it
misses itself.

Each notebook starts with a parameters cell: `PROFILE` (`full`, the default: the real data),
`DATA_ROOT`, `DEVICE` (cuda > mps > cpu) and `BATCH_SIZE`. `PROFILE = "smoke"` (or
`FEATURELAB_PROFILE=smoke`) runs a notebook on tiny generated data: a quick check that your code
runs, not of its results.

## Check your work: the visible tests

Each exercise is followed by a test cell that opens with `\"\"\"Check that ...\"\"\"`. Run the
notebook from the top (Kernel > Restart Kernel and Run All Cells): a test cell that finishes
without an error passed; an `AssertionError` says what is wrong. The grader runs these tests
and more on the notebook you hand in, so:

* write your code where it says `YOUR CODE HERE` and your answers in the answer cells;
* do not delete, split or edit the test cells, and hand in the `.ipynb` file itself
  (keep its name and its cell metadata);
* a notebook that runs from top to bottom without an error is the one that gets graded well.

## License

MIT (see `LICENSE`).
"""


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
