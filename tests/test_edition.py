"""The student edition (``python -m autograder release --student DIR``) and the course identity.

The slow part builds the real edition once (module fixture, ~1 min on 2 cores), then:

* scans every file of it for solution / hidden-test / reference-check lines, markers, identity
  tokens and the placeholder URL (and proves the scan can fail by planting each kind of leak);
* pip-installs it from a local ``git+file://...@<ref>`` URL into a fresh venv that borrows
  the main venv's dependencies through a ``.pth`` file (no torch download), and runs one notebook,
  answers filled with the solutions, in the ``smoke`` profile with nothing but the edition
  (no PYTHONPATH, cwd outside the repository).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import nbformat
import pytest

from autograder import calibrate, cli, edition, identity, preflight, release, students
from autograder import course as course_mod
from autograder.course import REPO_ROOT, AutograderError
from tests.data.toy import TOY_COURSE, copy_toy_course

TEST_IDENTITY = identity.CourseIdentity(
    host="github.com", owner="example-school", name="featurelab-students", ref="v1.2.0"
)
CHEAP_NOTEBOOK = "tp6_resnet18_features"

COURSE_TOML = """[student_repository]
host = "github.com"
owner = "{owner}"
name = "{name}"
ref = "{ref}"
"""


def _write_identity(course_root: Path, owner="featurelab", name="featurelab", ref="v0.1.0"):
    path = Path(course_root) / "autograder" / "course.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(COURSE_TOML.format(owner=owner, name=name, ref=ref))
    return path


# ------------------------------------------------------------------------------- identity (fast)


def test_identity_file_is_read_and_substituted(tmp_path):
    path = _write_identity(tmp_path, owner="my-school", name="tl-course", ref="v2.0.0")
    ident = identity.load(path)
    assert ident.repo_url == "https://github.com/my-school/tl-course"
    assert ident.pip_requirement == "featurelab @ git+https://github.com/my-school/tl-course@v2.0.0"
    assert not ident.is_placeholder and identity.problems(ident) == []
    line = '%pip install -q "featurelab @ git+{{COURSE_REPO_URL}}@{{COURSE_REF}}"'
    assert ident.substitute(line) == (
        '%pip install -q "featurelab @ git+https://github.com/my-school/tl-course@v2.0.0"'
    )
    badge = "({{COURSE_COLAB_URL}}/notebooks/tp1/tp1.ipynb)"
    assert ident.substitute(badge) == (
        "(https://colab.research.google.com/github/my-school/"
        "tl-course/blob/v2.0.0/notebooks/tp1/tp1.ipynb)"
    )
    assert release.unknown_tokens("{{COURSE_REF}} {{COURSE_TYPO}}") == [
        "{{COURSE_REF}}",
        "{{COURSE_TYPO}}",
    ]
    # the repository's own file parses; a course root without one falls back to it
    assert identity.load(course_root=tmp_path / "elsewhere").config == identity.CONFIG_FILE


def test_identity_rejects_bad_values_and_flags_placeholder_and_branches(tmp_path):
    path = _write_identity(tmp_path, owner="bad owner")
    with pytest.raises(AutograderError, match="owner"):
        identity.load(path)
    path.write_text("[student_repository]\nhost = 'github.com'\nowner = 'x'\nname = 'y'\n")
    with pytest.raises(AutograderError, match="ref"):
        identity.load(path)
    placeholder = identity.load(_write_identity(tmp_path, ref="main"))
    levels = dict(
        (message.split(" ")[0], level) for level, message in identity.problems(placeholder)
    )
    assert placeholder.is_placeholder
    assert levels == {"the": "error", "ref": "warning"}
    assert "course.toml" in identity.placeholder_message(placeholder)


def test_source_notebooks_use_the_identity_tokens():
    for assignment in course_mod.assignments(REPO_ROOT):
        text = course_mod.source_notebook(REPO_ROOT, assignment).read_text(encoding="utf-8")
        assert f"{{{{COURSE_COLAB_URL}}}}/notebooks/{assignment}/{assignment}.ipynb" in text
        assert "git+{{COURSE_REPO_URL}}@{{COURSE_REF}}" in text
        assert identity.PLACEHOLDER_URL not in text


def test_preflight_reports_identity_problems(tmp_path):
    # the toy course carries no token: the (placeholder) identity does not concern it
    assert [
        p for p in preflight.course_checks(TOY_COURSE, ["toy"], "smoke") if p.level == "error"
    ] == []
    course_root = copy_toy_course(tmp_path / "course")
    path = course_mod.source_notebook(course_root, "toy")
    notebook = nbformat.read(path, 4)
    notebook.cells[0].source += "\n\n[badge]({{COURSE_COLAB_URL}}/notebooks/toy/toy.ipynb)"
    nbformat.write(notebook, path)
    _write_identity(course_root)  # placeholder
    errors = [
        str(p) for p in preflight.course_checks(course_root, ["toy"], "smoke") if p.level == "error"
    ]
    assert len(errors) == 1 and "placeholder" in errors[0] and "course.toml" in errors[0]
    _write_identity(course_root, owner="my-school", name="course")
    assert [
        p for p in preflight.course_checks(course_root, ["toy"], "smoke") if p.level == "error"
    ] == []
    notebook.cells[0].source += "\n[x](https://colab.research.google.com/github/a/b/blob/main/x)"
    nbformat.write(notebook, path)
    errors = [
        str(p) for p in preflight.course_checks(course_root, ["toy"], "smoke") if p.level == "error"
    ]
    assert errors and "hard-coded Colab badge URL" in errors[0]


def test_the_edition_is_refused_with_the_placeholder_identity(tmp_path, capsys):
    placeholder = identity.load(_write_identity(tmp_path / "cfg"))
    with pytest.raises(AutograderError, match="placeholder.*--allow-placeholder"):
        edition.build(tmp_path / "edition", identity=placeholder)
    assert not (tmp_path / "edition").exists()
    course_root = copy_toy_course(tmp_path / "course")
    _write_identity(course_root)
    code = cli.main(
        ["--course-root", str(course_root), "release", "--student", str(tmp_path / "cli-edition")]
    )
    assert code == 1 and "refusing to build the student edition" in capsys.readouterr().err
    assert not (tmp_path / "cli-edition").exists()
    with pytest.raises(AutograderError, match="course repository"):
        edition.build(REPO_ROOT, identity=TEST_IDENTITY)
    with pytest.raises(AutograderError, match="solutions/ folder"):
        edition.build(REPO_ROOT / "solutions" / "x", identity=TEST_IDENTITY)


# ---------------------------------------------------------------------------- calibration (fast)


def _thresholds(tmp_path, calibrated_grading: bool) -> Path:
    path = tmp_path / "thresholds.json"
    path.write_text(
        json.dumps(
            {
                "_doc": "test",
                "tp3_scene15_svm": {
                    "grading": {
                        "accuracy": {
                            "threshold": 0.6,
                            "reference": None,
                            "margin": 0.1,
                            "source": "default",
                            "calibrated": calibrated_grading,
                        }
                    },
                    "smoke": {
                        "accuracy": {
                            "threshold": 0.8,
                            "reference": 1.0,
                            "margin": 0.2,
                            "source": "fixtures",
                            "calibrated": True,
                        }
                    },
                    "full": {
                        "accuracy": {
                            "threshold": 0.85,
                            "reference": 0.9,
                            "margin": 0.05,
                            "source": "published",
                        }
                    },  # no flag: not measured
                },
            }
        )
    )
    return path


def test_uncalibrated_lists_what_was_never_measured(tmp_path):
    path = _thresholds(tmp_path, calibrated_grading=False)
    assert calibrate.uncalibrated(None, "grading", path) == [
        "tp3_scene15_svm [grading] accuracy: threshold 0.6 (no reference value)"
    ]
    assert calibrate.uncalibrated(["tp3_scene15_svm"], "full", path) == [
        "tp3_scene15_svm [full] accuracy: threshold 0.85 (default reference 0.9, not measured here)"
    ]
    assert calibrate.uncalibrated(None, "smoke", path) == []
    assert calibrate.uncalibrated(["tp6_resnet18_features"], "grading", path) == []
    path = _thresholds(tmp_path, calibrated_grading=True)
    assert calibrate.uncalibrated(None, "grading", path) == []


def test_shipped_thresholds_say_whether_they_were_measured():
    data = json.loads(course_mod.THRESHOLDS_FILE.read_text())
    for assignment, profiles in data.items():
        if assignment.startswith("_"):
            continue
        for profile, metrics in profiles.items():
            for metric, entry in metrics.items():
                assert isinstance(entry.get("calibrated"), bool), (assignment, profile, metric)
                if profile == "smoke":
                    assert entry["calibrated"] is True
                if entry["calibrated"] is False:
                    assert "NOT measured" in entry["source"] or "not measured" in entry["source"]


def test_grade_refuses_uncalibrated_thresholds_before_grading(tmp_path, monkeypatch, capsys):
    from autograder import batch

    calls = []
    monkeypatch.setattr(batch, "main", lambda submissions, **kwargs: calls.append(kwargs) or 0)
    monkeypatch.setattr(course_mod, "THRESHOLDS_FILE", _thresholds(tmp_path, False))
    base = ["grade", str(tmp_path), "--out", str(tmp_path / "out")]
    for profile in ("grading", "full"):
        assert cli.main([*base, "--profile", profile]) == 1
        err = capsys.readouterr().err
        assert "refusing to grade" in err and "tp3_scene15_svm" in err
        assert f"python -m autograder calibrate --profile {profile}" in err
    assert calls == []
    assert cli.main([*base, "--profile", "grading", "--accept-uncalibrated"]) == 0
    assert cli.main([*base, "--profile", "smoke"]) == 0  # smoke never refuses
    # --assignment narrows the check to that assignment (tp6 has no metric threshold)
    assert cli.main([*base, "--assignment", "tp6_resnet18_features"]) == 0
    assert [c["profile"] for c in calls] == ["grading", "smoke", "grading"]
    monkeypatch.setattr(course_mod, "THRESHOLDS_FILE", _thresholds(tmp_path, True))
    assert cli.main([*base, "--profile", "grading"]) == 0


def test_preflight_reports_uncalibrated_thresholds(tmp_path, monkeypatch):
    monkeypatch.setattr(course_mod, "THRESHOLDS_FILE", _thresholds(tmp_path, False))
    problems = preflight.course_checks(REPO_ROOT, ["tp3_scene15_svm"], "grading")
    messages = [p.message for p in problems if p.level == "error"]
    assert any("never measured" in m and "tp3_scene15_svm [grading]" in m for m in messages)
    assert any("calibrate --profile grading" in m for m in messages)
    assert not [
        p
        for p in preflight.course_checks(REPO_ROOT, ["tp3_scene15_svm"], "smoke")
        if "measured" in p.message
    ]


def test_calibrate_marks_what_it_measured(tmp_path, monkeypatch):
    """calibrate() with the grading run faked: the measured metric becomes calibrated."""
    from types import SimpleNamespace

    from autograder import batch

    thresholds = _thresholds(tmp_path, calibrated_grading=False)
    source = course_mod.read_notebook(course_mod.source_notebook(TOY_COURSE, "toy"))
    monkeypatch.setattr(
        batch,
        "build_template",
        lambda *a, **k: SimpleNamespace(
            release=lambda assignment: SimpleNamespace(notebook=source)
        ),
    )
    record = SimpleNamespace(
        assignment="tp3_scene15_svm",
        metrics={"accuracy": 0.81},
        score=1,
        max_score=1,
        status="ok",
        reason="",
    )
    monkeypatch.setattr(batch, "grade_batch", lambda *a, **k: SimpleNamespace(records=[record]))
    assert calibrate.uncalibrated(None, "grading", thresholds)
    calibrate.calibrate(
        course_root=TOY_COURSE,
        profile="grading",
        assignments=["toy"],
        thresholds_file=thresholds,
        progress=False,
    )
    entry = json.loads(thresholds.read_text())["tp3_scene15_svm"]["grading"]["accuracy"]
    assert entry["calibrated"] is True and entry["reference"] == 0.81
    assert calibrate.uncalibrated(None, "grading", thresholds) == []
    assert calibrate.uncalibrated(None, "full", thresholds)  # not measured: still listed


# ------------------------------------------------------------------------- the edition (slow)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    target = tmp_path_factory.mktemp("edition") / "featurelab-students"
    result = edition.build(target, identity=TEST_IDENTITY, git=True)
    return result


def _git(folder: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=folder, capture_output=True, text=True, check=True
    ).stdout


@pytest.mark.slow
def test_edition_holds_the_student_files_and_nothing_secret(built):
    root = built.path
    files = set(built.files)
    assert {
        "README.md",
        "LICENSE",
        "pyproject.toml",
        "environment.yml",
        ".gitignore",
        "src/featurelab/__init__.py",
    } <= files
    for assignment in course_mod.assignments(REPO_ROOT):
        assert f"notebooks/{assignment}/{assignment}.ipynb" in files
    assert not [
        f
        for f in files
        if f.split("/")[0] in ("solutions", "autograder", "tests", "data_scripts", "bench")
    ]
    assert not [f for f in files if f.endswith(("thresholds.json", "gradebook.db"))]
    # the secrets are many (the scan is not vacuous) and none is in the edition
    secrets = edition.secret_lines()
    kinds = [where.split(" ")[0] for where in secrets.values()]
    assert kinds.count("solution") > 100 and kinds.count("hidden") > 50
    assert kinds.count("reference") > 100
    assert edition.scan(root, secrets) == []
    # the commit holds exactly what was scanned; tagged with the ref
    assert _git(root, "status", "--porcelain") == ""
    assert sorted(_git(root, "ls-files").split()) == sorted(files)
    assert len(_git(root, "rev-list", "--all").split()) == 1
    assert _git(root, "tag").split() == ["v1.2.0"]
    # runtime dependencies + JupyterLab only
    import tomllib

    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    main = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert project["dependencies"] == main["dependencies"]
    assert project["license"] == "MIT" and "MIT License" in (root / "LICENSE").read_text()
    everything = (root / "pyproject.toml").read_text() + (root / "environment.yml").read_text()
    for tool in ("nbgrader", "pytest", "ruff", "alembic"):
        assert tool not in everything
    assert "jupyterlab" in everything
    # the notebooks and the README point at the configured repository, pinned
    readme = (root / "README.md").read_text()
    assert "python -m featurelab.data get scene15" in readme
    assert f"git clone --branch v1.2.0 {TEST_IDENTITY.clone_url}" in readme
    for assignment in course_mod.assignments(REPO_ROOT):
        text = (root / "notebooks" / assignment / f"{assignment}.ipynb").read_text()
        assert TEST_IDENTITY.colab_notebook_url(assignment) in text
        assert TEST_IDENTITY.colab_notebook_url(assignment) in readme
        assert (
            '%pip install -q \\"featurelab @ '
            'git+https://github.com/example-school/featurelab-students@v1.2.0\\"' in text
        )


def _leaks_after(tmp_path: Path, built, plant) -> list[str]:
    copy = tmp_path / "copy"
    if copy.exists():
        shutil.rmtree(copy)
    shutil.copytree(built.path, copy, ignore=shutil.ignore_patterns(".git"))
    plant(copy)
    return edition.scan(copy, edition.secret_lines())


@pytest.mark.slow
def test_the_scan_catches_each_kind_of_planted_leak(built, tmp_path):
    secrets = edition.secret_lines()

    def pick(kind):  # the longest line of that kind: deterministic
        return max((line for line, where in secrets.items() if where.startswith(kind)), key=len)

    solution, hidden, check = pick("solution"), pick("hidden test"), pick("reference check")
    block = [line for line, where in secrets.items() if where.startswith("reference check")][:3]
    assert _leaks_after(tmp_path, built, lambda root: None) == []

    def in_readme(root):
        with open(root / "README.md", "a") as handle:
            handle.write(f"\n    {solution}\n")

    def in_notebook(root):
        path = root / "notebooks" / CHEAP_NOTEBOOK / f"{CHEAP_NOTEBOOK}.ipynb"
        notebook = nbformat.read(path, 4)
        notebook.cells[-1].source += f"\n{hidden}"
        nbformat.write(notebook, path)

    def in_package(root):  # a block pasted from a reference check
        body = "".join(f"    {line}\n\n" for line in block)
        (root / "src" / "featurelab" / "helpers.py").write_text(f"def f():\n{body}")

    def placeholder(root):
        with open(root / "LICENSE", "a") as handle:
            handle.write("see https://github.com/featurelab/featurelab\n")

    def instructor_files(root):
        (root / "autograder").mkdir()
        (root / "autograder" / "notes.txt").write_text("### BEGIN HIDDEN TESTS\n")

    cases = [
        (in_readme, "README.md", solution),
        (in_notebook, CHEAP_NOTEBOOK, hidden),
        (in_package, "src/featurelab/helpers.py", "block of 3 lines"),
        (lambda root: (root / "NOTES.md").write_text(f"    {check}\n"), "NOTES.md", check),
        (placeholder, "LICENSE", "placeholder URL"),
        (instructor_files, "autograder/notes.txt", "BEGIN HIDDEN TESTS"),
    ]
    for plant, where, what in cases:
        leaks = _leaks_after(tmp_path, built, plant)
        assert leaks and all(where in leak for leak in leaks), (plant.__name__, leaks)
        assert any(what in leak for leak in leaks), (plant.__name__, leaks)


EXECUTE = textwrap.dedent("""
    import sys
    import nbformat
    from nbclient import NotebookClient

    source, target, workdir = sys.argv[1:4]
    notebook = nbformat.read(source, 4)
    client = NotebookClient(notebook, timeout=600, kernel_name="edition",
                            resources={"metadata": {"path": workdir}})
    try:
        client.execute()
    finally:
        nbformat.write(notebook, target)
""")


def _student_venv(tmp_path: Path):
    """A fresh venv without featurelab that borrows the main venv's dependencies (torch & co.)
    through a .pth file; returns ``(python, env, run)``, ``run`` executing in ``tmp_path/student``.
    """
    venv = tmp_path / "venv"
    # --without-pip: on Python < 3.12 ensurepip also puts an old setuptools in the venv, which
    # would shadow the main venv's (too old for the edition's PEP 639 license field); pip and
    # setuptools come from the main venv through the .pth file below
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    # a .pth file pointing at the main venv's site-packages (the .pth files *there*, e.g. the
    # editable featurelab of the main checkout, are not processed, so only the edition provides
    # featurelab)
    main_paths = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    new_site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(new_site) / "main-venv-deps.pth").write_text("\n".join(sorted(main_paths)) + "\n")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    }
    env.update(
        PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        PIP_NO_INPUT="1",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
    )
    work = tmp_path / "student"
    work.mkdir()

    def run(*args, check=True):
        return subprocess.run(
            [*args], cwd=work, env=env, capture_output=True, text=True, check=check, timeout=900
        )

    return python, env, run


def _edition_kernel(tmp_path: Path, python: Path, env: dict) -> None:
    """Register the venv's python as the kernel ``edition`` in a private Jupyter folder."""
    kernels = tmp_path / "jupyter" / "kernels" / "edition"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "edition",
                "language": "python",
            }
        )
    )
    (tmp_path / "executor.py").write_text(EXECUTE)
    env.update(
        MPLBACKEND="Agg",
        FEATURELAB_CACHE=str(tmp_path / "cache"),
        JUPYTER_PATH=str(tmp_path / "jupyter"),
        JUPYTER_DATA_DIR=str(tmp_path / "jupyter"),
        JUPYTER_CONFIG_DIR=str(tmp_path / "jupyter-config"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "jupyter-runtime"),
        JUPYTER_PLATFORM_DIRS="1",
        IPYTHONDIR=str(tmp_path / "ipython"),
        PYDEVD_DISABLE_FILE_VALIDATION="1",
    )


@pytest.mark.slow
def test_edition_installs_from_its_git_url_and_runs_a_notebook(built, tmp_path):
    python, env, run = _student_venv(tmp_path)
    work = tmp_path / "student"
    url = f"git+file://{built.path}@{TEST_IDENTITY.ref}"
    # --ignore-installed: the main venv's featurelab metadata is visible through the .pth file;
    # pip must neither call it satisfied nor try to uninstall it
    install = run(
        str(python),
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "--ignore-installed",
        url,
        check=False,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    where = run(
        str(python),
        "-c",
        "import featurelab, featurelab.data; "
        "print(featurelab.__file__); print(sorted(featurelab.data.REGISTRY))",
    ).stdout
    assert Path(where.splitlines()[0]).resolve().is_relative_to(python.parent.parent.resolve()), (
        where
    )
    assert "scene15" in where
    no_autograder = run(str(python), "-c", "import autograder", check=False)
    assert no_autograder.returncode != 0 and "ModuleNotFoundError" in no_autograder.stderr
    # the student's notebook: the edition's release with the solutions typed in
    released = built.path / "notebooks" / CHEAP_NOTEBOOK / f"{CHEAP_NOTEBOOK}.ipynb"
    notebook = students.solved_release(
        course_mod.read_notebook(course_mod.source_notebook(REPO_ROOT, CHEAP_NOTEBOOK)),
        course_mod.read_notebook(released),
    )
    notebook.cells.append(
        nbformat.v4.new_code_cell(
            "import featurelab, sys\nprint('FEATURELAB_FILE', featurelab.__file__)\n"
            "print('HAS_AUTOGRADER', any(p.endswith('/work/main') for p in sys.path))"
        )
    )
    solved = work / f"{CHEAP_NOTEBOOK}.ipynb"
    students.write(notebook, solved)
    _edition_kernel(tmp_path, python, env)
    env.update(FEATURELAB_PROFILE="smoke", FEATURELAB_DATA=str(tmp_path / "data"))
    executed = work / "executed.ipynb"
    result = run(
        str(python),
        str(tmp_path / "executor.py"),
        str(solved),
        str(executed),
        str(work),
        check=False,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    outputs = nbformat.read(executed, 4)
    errors = [
        o
        for c in outputs.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == "error"
    ]
    assert errors == []
    last = "".join(o.get("text", "") for o in outputs.cells[-1].outputs)
    reported = last.split("FEATURELAB_FILE ")[1].split("\n")[0]
    assert Path(reported).resolve().is_relative_to(python.parent.parent.resolve()), last
    assert "HAS_AUTOGRADER False" in last


COLAB_STUB = {
    # google/ stays a namespace package (protobuf & co. may share it)
    "google/colab/__init__.py": "from . import drive  # noqa: F401\n",
    "google/colab/drive.py": "def mount(path):\n    raise RuntimeError('no Drive in this test')\n",
}


@pytest.mark.slow
def test_colab_branch_installs_the_edition_and_downloads_what_is_missing(built, tmp_path):
    """The Colab path as it can run here: a stub ``google.colab``, the notebook's own install
    cell (``%pip install "featurelab @ git+https://github.com/...@ref"``, the host rewritten by
    git to the local edition), then TP3 in the ``full`` profile with ``DOWNLOAD = None``: the
    missing 15 Scene archive is fetched from a loopback HTTP server (the registry's URL and
    checksum overrides), verified and extracted, and the pretrained weights come from the torch
    cache (as after an earlier session that kept them on Drive)."""
    import hashlib
    import http.server
    import io
    import threading
    import zipfile

    from PIL import Image

    from featurelab import backbones, data

    python, env, run = _student_venv(tmp_path)
    stub = tmp_path / "colab-stub"
    for rel, text in COLAB_STUB.items():
        (stub / rel).parent.mkdir(parents=True, exist_ok=True)
        (stub / rel).write_text(text)
    site = run(str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))")
    # Colab's kernel has google.colab imported before the first cell: so does this venv's python
    (Path(site.stdout.strip()) / "colab-stub.pth").write_text(f"{stub}\nimport google.colab\n")
    gitconfig = tmp_path / "gitconfig"
    gitconfig.write_text(f'[url "file://{built.path}"]\n\tinsteadOf = {TEST_IDENTITY.repo_url}\n')
    # the served archive: the real layout and image counts (the extraction checks them), with
    # tiny generated greyscale JPEGs (the fixture has 4 images per class, not 100)
    served = tmp_path / "served"
    served.mkdir()
    jpeg = io.BytesIO()
    Image.new("L", (8, 8), 128).save(jpeg, "JPEG")
    with zipfile.ZipFile(served / "15SceneData.zip", "w", zipfile.ZIP_STORED) as out:
        for folder, (count, _) in data.REGISTRY["scene15"].image_counts.items():
            for k in range(count):
                out.writestr(f"15SceneData/{folder}/image_{k:04d}.jpg", jpeg.getvalue())
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=served, **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # pretrained VGG16 "already downloaded": a seeded random network in the torch cache
    torch_home = tmp_path / "torch"
    weights = backbones.spec("vgg16").weights
    cached = torch_home / "hub" / "checkpoints" / Path(weights.url).name
    cached.parent.mkdir(parents=True)
    import torch

    torch.save(backbones._random_model(backbones.spec("vgg16")).state_dict(), cached)
    # the release's first cells, up to the first dataset load, and a report
    released = course_mod.read_notebook(
        built.path / "notebooks" / "tp3_scene15_svm" / "tp3_scene15_svm.ipynb"
    )
    first_load = next(
        i for i, c in enumerate(released.cells) if "fl.data.load_scene15(" in c.source
    )
    notebook = nbformat.v4.new_notebook(metadata=released.metadata)
    notebook.cells = released.cells[: first_load + 1] + [
        nbformat.v4.new_code_cell(
            "import featurelab\n"
            "print('REPORT', profile, DOWNLOAD, featurelab.__file__, len(train_images))\n"
            "model, _, is_pretrained = fl.backbones.load_model('vgg16', profile)\n"
            "print('PRETRAINED', is_pretrained)"
        )
    ]
    solved = tmp_path / "student" / "colab.ipynb"
    students.write(notebook, solved)
    _edition_kernel(tmp_path, python, env)
    data_dir = tmp_path / "data"
    archive_sha = hashlib.sha256((served / "15SceneData.zip").read_bytes()).hexdigest()
    env.update(
        FEATURELAB_DATA=str(data_dir),
        TORCH_HOME=str(torch_home),
        FEATURELAB_URL_SCENE15=f"http://127.0.0.1:{server.server_address[1]}/15SceneData.zip",
        FEATURELAB_SHA256_SCENE15=archive_sha,
        GIT_CONFIG_GLOBAL=str(gitconfig),
        PIP_NO_INDEX="1",
        PIP_NO_DEPS="1",
        PIP_NO_BUILD_ISOLATION="0",  # (pip reads this variable inverted: 0 = no isolation)
        PIP_IGNORE_INSTALLED="1",  # the main venv's featurelab is visible: never touch it
    )
    env.pop("FEATURELAB_PROFILE", None)
    try:
        executed = tmp_path / "student" / "executed.ipynb"
        result = run(
            str(python),
            str(tmp_path / "executor.py"),
            str(solved),
            str(executed),
            ".",
            check=False,
        )
    finally:
        server.shutdown()
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    cells = nbformat.read(executed, 4).cells
    text = "\n".join(o.get("text", "") for c in cells if c.cell_type == "code" for o in c.outputs)
    report = next(line for line in text.splitlines() if line.startswith("REPORT")).split()
    assert report[1:3] == ["full", "True"]  # the full profile; DOWNLOAD = None is yes on Colab
    assert Path(report[3]).resolve().is_relative_to(python.parent.parent.resolve())
    assert int(report[4]) == 1500  # the full training split, 100 images per class
    assert (data_dir / "scene15" / "15SceneData.zip").read_bytes() == (
        served / "15SceneData.zip"
    ).read_bytes()
    assert "PRETRAINED True" in text


@pytest.mark.slow
def test_cli_builds_a_placeholder_edition_only_when_allowed(tmp_path, capsys):
    """``release --student`` on the toy course: --allow-placeholder, --git, --force."""
    course_root = copy_toy_course(tmp_path / "course")
    _write_identity(course_root)  # the placeholder
    target = tmp_path / "edition"
    args = ["--course-root", str(course_root), "release", "--student", str(target)]
    assert cli.main([*args, "--allow-placeholder", "--git"]) == 0
    out = capsys.readouterr().out
    assert "tagged v0.1.0" in out and "WARNING" in out
    assert (target / "notebooks" / "toy" / "toy.ipynb").is_file()
    assert _git(target, "tag").split() == ["v0.1.0"]
    assert identity.PLACEHOLDER_URL in (target / "README.md").read_text()
    assert edition.scan(target, edition.secret_lines(course_root), allow_placeholder=True) == []
    assert any(
        "placeholder URL" in leak
        for leak in edition.scan(target, edition.secret_lines(course_root))
    )
    # a second build: refused into a non-empty folder, and --git never rewrites a repository
    assert cli.main([*args, "--allow-placeholder"]) == 1
    assert "is not empty" in capsys.readouterr().err
    assert cli.main([*args, "--allow-placeholder", "--force", "--git"]) == 1
    assert "already a git repository" in capsys.readouterr().err
    (target / "stray.txt").write_text("removed by --force")
    assert cli.main([*args, "--allow-placeholder", "--force"]) == 0
    assert not (target / "stray.txt").exists() and (target / ".git").is_dir()
    assert cli.main(["--course-root", str(course_root), "release", "--allow-placeholder"]) == 1
    assert "go with --student" in capsys.readouterr().err


@pytest.mark.slow
def test_single_lines_shared_with_the_package_are_listed_for_review(built, tmp_path):
    secrets = edition.secret_lines()
    line = max((s for s, where in secrets.items() if where.startswith("hidden test")), key=len)

    def plant(root):
        (root / "src" / "featurelab" / "helpers.py").write_text(f"def f():\n    {line}\n")

    assert _leaks_after(tmp_path, built, plant) == []  # one line in the package: not a leak
    shared = edition.shared_with_package(tmp_path / "copy", secrets)
    assert any("src/featurelab/helpers.py" in s and line in s for s in shared)
    assert edition.shared_with_package(built.path, secrets) == built.shared
