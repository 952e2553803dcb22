"""Collect submissions: nbgrader's ``submitted/`` tree, a flat folder, or a .zip (LMS export).

* nbgrader tree: ``<root>/<student>/<assignment>/<name>.ipynb`` (``<root>`` is usually
  ``submitted/``); the student and the assignment come from the folders.
* flat folder or .zip of notebooks: the student id comes from the file name. When the name
  contains a known assignment id (``alice_tp1_vgg16_architecture.ipynb``, or an LMS prefix like
  ``Alice Smith_1234_assignsubmission_file_tp1_vgg16_architecture.ipynb``) the part before it
  is the student and the id is the assignment; otherwise the whole stem is the student and the
  assignment is ``--assignment`` or detected from the notebook itself (its nbgrader grade ids,
  or its instructor cells when the metadata was stripped).

Every file that ends in ``.ipynb`` is collected (checkpoints and macOS resource forks
excepted), unreadable ones included: they get a clear reason in the report, not silence.
"""

from __future__ import annotations

import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .course import AutograderError

SKIPPED_PARTS = {".ipynb_checkpoints", "__MACOSX"}


@dataclass(frozen=True)
class Submission:
    """One notebook to grade."""

    student: str
    assignment: str | None  # None: detect from the notebook (or --assignment)
    path: Path
    label: str  # where it came from, relative to the input (stable across runs: resume key)
    origin: str  # "tree" | "flat"


def safe_id(text: str) -> str:
    """A student id usable as a folder name and a CSV cell: ``[A-Za-z0-9._-]``, no leading dot."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", text.strip()).strip("._-")
    return cleaned or "student"


def _notebooks(root: Path) -> list[Path]:
    found = []
    for path in sorted(root.rglob("*.ipynb")):
        relative = path.relative_to(root)
        if SKIPPED_PARTS & set(relative.parts) or path.name.startswith("._"):
            continue
        if path.is_file():
            found.append(path)
    return found


def extract_zip(archive: Path, target: Path) -> Path:
    """Extract the ``.ipynb`` members of ``archive`` into ``target`` (safe against ``..`` paths)."""
    target.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(archive) as bundle:
            for member in bundle.infolist():
                name = PurePosixPath(member.filename.replace("\\", "/"))
                if member.is_dir() or not name.name.endswith(".ipynb"):
                    continue
                parts = [part for part in name.parts if part not in ("", ".", "..", "/")]
                if not parts or SKIPPED_PARTS & set(parts) or parts[-1].startswith("._"):
                    continue
                destination = target.joinpath(*parts)
                destination.parent.mkdir(parents=True, exist_ok=True)
                with bundle.open(member) as source, open(destination, "wb") as sink:
                    shutil.copyfileobj(source, sink)
    except zipfile.BadZipFile as error:
        raise AutograderError(f"{archive} is not a valid .zip file ({error})") from None
    return target


def _split_flat_name(stem: str, assignments: list[str]) -> tuple[str, str | None]:
    """``alice_tp1_x`` -> (``alice``, ``tp1_x``) when a known assignment id is in the name."""
    for assignment in sorted(assignments, key=len, reverse=True):
        position = stem.rfind(assignment)
        if position >= 0:
            student = stem[:position].rstrip(" _-.") or stem[position + len(assignment):].strip(
                " _-."
            )
            return safe_id(student or stem), assignment
    return safe_id(stem), None


def collect(
    source: Path,
    *,
    assignments: list[str],
    assignment: str | None = None,
    unpack_dir: Path | None = None,
) -> list[Submission]:
    """All submissions under ``source`` (a folder or a .zip); see the module docstring.

    ``assignments``: the course's assignment ids; ``assignment``: forced for every notebook
    (``--assignment``; a tree's folder or a file name naming another one is then reported as
    the wrong assignment by the grader, not silently renamed).
    """
    source = Path(source)
    if not source.exists():
        raise AutograderError(f"no submissions at {source}")
    if source.is_file():
        if source.suffix.lower() == ".zip":
            if unpack_dir is None:
                raise AutograderError("internal: unpack_dir is needed to read a .zip")
            if unpack_dir.exists():
                shutil.rmtree(unpack_dir)
            root = extract_zip(source, unpack_dir)
        elif source.suffix.lower() == ".ipynb":
            student, named = _split_flat_name(source.stem, assignments)
            return [Submission(student, assignment or named, source, source.name, "flat")]
        else:
            raise AutograderError(f"{source}: expected a folder, a .zip or an .ipynb file")
    else:
        root = source

    submissions: list[Submission] = []
    seen: dict[tuple[str, str | None], int] = {}
    found = _notebooks(root)
    in_tree_folder: dict[Path, list[Path]] = {}
    for path in found:
        in_tree_folder.setdefault(path.parent, []).append(path)
    for path in found:
        relative = path.relative_to(root)
        parts = relative.parts
        if len(parts) >= 3 and (parts[-2] in assignments or root.name == "submitted"):
            # nbgrader tree: the notebook named after the assignment is the submission; other
            # notebooks in the folder (scratch copies) are ignored when it is there.
            siblings = in_tree_folder[path.parent]
            if path.stem != parts[-2] and any(p.stem == parts[-2] for p in siblings):
                continue
            student, named, origin = safe_id(parts[-3]), parts[-2], "tree"
        else:
            student, named = _split_flat_name(path.stem, assignments)
            origin = "flat"
        chosen = assignment or named
        key = (student, chosen)
        seen[key] = seen.get(key, 0) + 1
        if seen[key] > 1:  # two files for one student and assignment: keep both, distinctly
            student = f"{student}-{seen[key]}"
        submissions.append(Submission(student, chosen, path, relative.as_posix(), origin))
    if not submissions:
        raise AutograderError(f"no .ipynb file found in {source}")
    return submissions
