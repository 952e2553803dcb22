"""The course on disk and how nbgrader is run on it (shared by every autograder command).

Course root = the repository root by default (``solutions/<id>/<id>.ipynb`` are the nbgrader
sources, ``notebooks/<id>/<id>.ipynb`` the student releases); the tests point ``course_root``
at a toy course instead. nbgrader always runs as a subprocess of the venv's Python, with the
repository's ``autograder/nbgrader_config.py`` and an isolated Jupyter environment (our own
``python3`` kernelspec pointing at this interpreter, no user-level Jupyter config).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_FILE = REPO_ROOT / "autograder" / "nbgrader_config.py"
THRESHOLDS_FILE = REPO_ROOT / "autograder" / "thresholds.json"
SOURCE_DIR = "solutions"
RELEASE_DIR = "notebooks"
IGNORED_NAMES = (".ipynb_checkpoints", "__pycache__", ".DS_Store")
# Grading defaults (the command line and the Python API share them).
DEFAULT_PROFILE = "grading"
DEFAULT_TIMEOUT_S = 1800.0  # wall clock per submission
DEFAULT_MEMORY_MB = 6000.0  # RSS of a submission's process tree
DEFAULT_DISK_MB = 4000.0  # files a submission's sandbox writes (its scratch folder)


class AutograderError(RuntimeError):
    """A failure the user can act on; the CLI prints the message and exits 1."""


def assignments(course_root: Path = REPO_ROOT) -> list[str]:
    """Assignment ids of the course: folders ``solutions/<id>/`` holding ``<id>.ipynb``."""
    source = Path(course_root) / SOURCE_DIR
    if not source.is_dir():
        return []
    return sorted(path.name for path in source.iterdir() if (path / f"{path.name}.ipynb").is_file())


def resolve_assignments(course_root: Path, requested: list[str] | None) -> list[str]:
    """``requested`` checked against the course (all of them when empty)."""
    known = assignments(course_root)
    if not requested:
        if not known:
            raise AutograderError(
                f"no assignment in {Path(course_root) / SOURCE_DIR} "
                "(expected solutions/<id>/<id>.ipynb)"
            )
        return known
    unknown = [name for name in requested if name not in known]
    if unknown:
        raise AutograderError(
            f"unknown assignment(s) {', '.join(unknown)}; the course has: "
            f"{', '.join(known) or '(none)'}"
        )
    return list(dict.fromkeys(requested))


def source_notebook(course_root: Path, assignment: str) -> Path:
    return Path(course_root) / SOURCE_DIR / assignment / f"{assignment}.ipynb"


def release_notebook(course_root: Path, assignment: str) -> Path:
    return Path(course_root) / RELEASE_DIR / assignment / f"{assignment}.ipynb"


def read_notebook(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(str(path), as_version=4)


def copy_sources(course_root: Path, assignment_ids: list[str], target_root: Path) -> None:
    """Copy ``solutions/<id>/`` of each assignment into ``target_root/solutions/<id>/``."""
    for assignment in assignment_ids:
        shutil.copytree(
            Path(course_root) / SOURCE_DIR / assignment,
            Path(target_root) / SOURCE_DIR / assignment,
            ignore=shutil.ignore_patterns(*IGNORED_NAMES),
            dirs_exist_ok=True,
        )


def write_kernelspec(jupyter_data_dir: Path) -> Path:
    """A ``python3`` kernelspec running *this* interpreter (the venv), whatever else is installed.

    Put first on the Jupyter path (``JUPYTER_PATH`` and ``JUPYTER_DATA_DIR``) it shadows a
    user-level ``python3`` kernelspec that could point at a Python without torch.
    """
    spec_dir = Path(jupyter_data_dir) / "kernels" / "python3"
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
        "metadata": {"debugger": False},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1))
    return spec_dir


def base_env(work_dir: Path, *, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for nbgrader subprocesses (and the kernels they start).

    * the venv's ``bin`` first on ``PATH`` (nbgrader needs ``alembic``);
    * ``PYTHONPATH`` with the repository root (``autograder.checks``) and ``src``;
    * Jupyter isolated in ``work_dir``: our kernelspec, no user config, own runtime dir.
    """
    work_dir = Path(work_dir)
    jupyter_data = work_dir / "jupyter_data"
    if not (jupyter_data / "kernels" / "python3" / "kernel.json").is_file():
        write_kernelspec(jupyter_data)
    for sub in ("jupyter_config", "jupyter_runtime"):
        (work_dir / sub).mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([venv_bin, env.get("PATH", "")])
    python_path = [str(REPO_ROOT), str(REPO_ROOT / "src")]
    if env.get("PYTHONPATH"):
        python_path.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(python_path)
    env["JUPYTER_PATH"] = str(jupyter_data)
    env["JUPYTER_DATA_DIR"] = str(jupyter_data)
    env["JUPYTER_CONFIG_DIR"] = str(work_dir / "jupyter_config")
    env["JUPYTER_RUNTIME_DIR"] = str(work_dir / "jupyter_runtime")
    env["JUPYTER_PLATFORM_DIRS"] = "1"
    env.setdefault("MPLBACKEND", "Agg")
    env["PYTHONUNBUFFERED"] = "1"
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"  # silences a debugpy warning on stderr
    if extra:
        env.update(extra)
    return env


def nbgrader_command(subcommand: str, *args: str, course_root: Path) -> list[str]:
    """``python -m nbgrader SUBCOMMAND ... --CourseDirectory.root=ROOT``.

    nbgrader reads ``ROOT/nbgrader_config.py`` (nbgrader has no ``--config`` option: it warns
    "Unrecognized alias" and ignores it); temporary courses get one that loads the repository's
    ``autograder/nbgrader_config.py`` (see :func:`autograder.template.course_config_text`).
    """
    return [
        sys.executable,
        "-m",
        "nbgrader",
        subcommand,
        *args,
        f"--CourseDirectory.root={Path(course_root).resolve()}",
    ]


def run_nbgrader(
    subcommand: str,
    *args: str,
    course_root: Path,
    work_dir: Path,
    timeout: float = 600,
) -> subprocess.CompletedProcess:
    """Run an nbgrader command to completion; :class:`AutograderError` with its log on failure."""
    command = nbgrader_command(subcommand, *args, course_root=course_root)
    result = subprocess.run(
        command,
        cwd=course_root,
        env=base_env(work_dir),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-30:])
        raise AutograderError(f"nbgrader {subcommand} failed (exit {result.returncode}):\n{tail}")
    return result
