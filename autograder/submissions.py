"""Collect submissions: nbgrader's ``submitted/`` tree, a flat folder, or a .zip (LMS export).

Layouts
-------
* nbgrader tree: ``<root>/<student>/<assignment>/<name>.ipynb`` (``<root>`` is usually
  ``submitted/``); the student and the assignment come from the folders. A notebook deeper in
  the assignment folder (``alice/tp1/backup/tp1.ipynb``) is still Alice's, for tp1.
* flat folder or .zip of notebooks: the student comes from the file name. When the name
  contains a known assignment id (``alice_tp1_vgg16_architecture.ipynb``, or an LMS prefix like
  ``Alice Smith_1234_assignsubmission_file_tp1_vgg16_architecture.ipynb``) the part before it
  is the student and the id is the assignment; otherwise the whole stem is the student (a
  browser's `` (1)`` copy marker removed) and the assignment is ``--assignment`` or detected from
  the notebook itself. A file named after the assignment alone inside a folder
  (``Alice Smith_1234_assignsubmission_file_/tp1.ipynb``) belongs to that folder's student.

Identity (exact: nothing merges, nothing is renamed beyond recognition, nothing is dropped)
--------------------------------------------------------------------------------------------
* The *raw name* of a student is the folder or file-name part as given (bytes that are not
  UTF-8 decoded with ``surrogateescape``, like :func:`os.fsdecode`; Unicode normalised to NFC).
* Its id (:func:`student_id`) is the raw name itself when that is already a short, safe name
  (``[A-Za-z0-9._-]``, at most 64 characters, no leading punctuation, not a Windows device
  name, not ending like a hash suffix); otherwise a readable ASCII transliteration (``Zoë`` ->
  ``Zoe``, cut to 48 characters; ``student`` when nothing is left) plus ``-`` and 8 hex digits
  of the SHA-256 of the raw name: ``Zoë`` -> ``Zoe-<8 hex>``, ``Alice Smith`` ->
  ``Alice_Smith-<8 hex>``. So a changed name can never produce the id of a name that was kept
  (``Alice_Smith-2`` stays ``Alice_Smith-2``), and the id depends on the raw name only: the
  same input gets the same id on every run, in any listing order. (Two raw names whose 8-digit
  hashes collide get 16 digits.)
* ``Submission.label`` (the ``source`` column of ``grades.csv``) is the path of the file
  relative to the input, as given, with what is not printable shown as Python escapes
  (``\\xff`` for a byte that is not UTF-8, ``\\\\`` for a backslash): unique, stable, and it
  maps every id back to the name it came from. It is also the resume key.

One graded notebook per student and assignment
----------------------------------------------
When a student has several notebooks for one assignment, one is graded: the one at the
expected place (tree: directly in the assignment folder and named after it; then directly in
the folder; then the shallowest), else the newest (modification time), else the first by name.
The graded one's reasons say which was graded and why, and list every other file ("extra file
not graded: ... (why)"). Notebooks whose assignment must be read from the notebook are all
graded (they may be different assignments).

Rejected one at a time, with a reason (status ``invalid``), the rest of the class graded
----------------------------------------------------------------------------------------
A student folder with no notebook ("no notebook ..."), an assignment folder with none, a
symbolic link or special file posing as a notebook, and, in a .zip: members with unsafe paths
(``..``, absolute), symbolic links, encrypted members, members beyond the limits of
:class:`ZipLimits` (number of members, size of one member, total uncompressed size, compression
ratio) and damaged members. Such entries have ``Submission.problem`` set; the grader reports
them without reading them. Checkpoints and macOS resource forks are skipped silently.
"""

from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from .course import AutograderError
from .listing import SKIPPED_PARTS, ZipLimits, _Entry, _Listing, _read_zip, _walk, extract_zip  # noqa: F401
from .student_names import (  # noqa: F401 (digest, report_name: the API of ids)
    _split_flat_name,
    _stem,
    digest,
    display_name,
    printable,
    report_name,
    student_id,
)


@dataclass(frozen=True)
class Submission:
    """One notebook to grade (or, with ``problem``, one entry to report as ``invalid``)."""

    student: str
    assignment: str | None  # None: detect from the notebook (or --assignment)
    path: Path
    label: str  # where it came from, relative to the input (stable across runs: resume key)
    origin: str  # "tree" | "flat"
    problem: str | None = None  # not gradable: the reason (reported with status invalid)
    notes: tuple[str, ...] = ()  # reasons added to the record (extra files, choice made)

    @property
    def source(self) -> str:
        """The original name, as given (``grades.csv``'s ``source`` column)."""
        return self.label


# --------------------------------------------------------------------------------------------
# who and what each entry is


@dataclass
class _Item:
    entry: _Entry
    raw: str  # the student's raw name
    assignment: str | None
    origin: str
    student_dir: tuple[str, ...] | None  # the student's folder (None: named by the file)
    class_dir: tuple[str, ...] | None  # the folder holding the students' folders
    rank: tuple[int, ...]  # place: lower is more expected
    id: str = ""


def _common_dir(entries: list[_Entry]) -> tuple[str, ...]:
    prefix: tuple[str, ...] | None = None
    for entry in entries:
        folder = entry.parts[:-1]
        if prefix is None:
            prefix = folder
        else:
            size = 0
            while size < min(len(prefix), len(folder)) and prefix[size] == folder[size]:
                size += 1
            prefix = prefix[:size]
    return prefix or ()


def _classify(
    listing: _Listing, assignments: list[str], forced: str | None, submitted_root: bool
) -> list[_Item]:
    """Who and what each entry of ``listing`` is: an item per notebook, in a student's
    folder holding an assignment folder ("tree") or named after the student ("flat")."""
    items: list[_Item] = []
    flat: list[_Entry] = []
    level = _student_level(listing, assignments, submitted_root)
    for entry in listing.entries:
        item = _tree_item(entry, level, assignments, forced, submitted_root)
        if item is not None:
            items.append(item)
        else:
            flat.append(entry)
    items.extend(_flat_items(flat, assignments))
    return items


def _first_assignment(parts: tuple[str, ...], after: int, assignments: list[str]) -> int | None:
    """The index of the first folder of ``parts`` after ``after`` named as an assignment."""
    return next((i for i in range(after + 1, len(parts) - 1) if parts[i] in assignments), None)


def _student_level(listing: _Listing, assignments: list[str], submitted_root: bool) -> int:
    """The depth of the students' folders: the shallowest one that holds an assignment folder
    (``submitted/``: its children), so that ``alice/backup/tp1/tp1.ipynb`` stays Alice's."""
    levels = [
        i - 1
        for i in (_first_assignment(e.parts, 0, assignments) for e in listing.entries)
        if i is not None
    ]
    return 0 if submitted_root else min(levels, default=0)


def _tree_item(
    entry: _Entry, level: int, assignments: list[str], forced: str | None, submitted_root: bool
) -> _Item | None:
    """The item of an entry inside a student's folder (an assignment folder under it, or a
    notebook directly in it under ``submitted/``); None for a flat entry."""
    parts = entry.parts
    student_at = level
    tree_at = _first_assignment(parts, level, assignments)
    if tree_at is None:
        tree_at = _first_assignment(parts, 0, assignments)
        student_at = tree_at - 1 if tree_at is not None else level
    if tree_at is None and submitted_root and len(parts) >= 3:
        tree_at = 1
    if tree_at is not None:
        folder = parts[tree_at]
        depth = len(parts) - student_at - 2  # folders between the student and the file
        exact = tree_at == student_at + 1 and depth == 1 and _stem(parts[-1]) == folder
        wrong = 1 if forced and folder != forced else 0
        return _Item(
            entry,
            parts[student_at],
            folder,
            "tree",
            parts[: student_at + 1],
            parts[:student_at],
            (wrong, depth, 0 if exact else 1),
        )
    if submitted_root and len(parts) == 2:
        _, named = _split_flat_name(_stem(parts[1]), assignments)
        return _Item(entry, parts[0], named, "tree", parts[:1], (), (0, 0, 1))
    return None


def _flat_items(flat: list[_Entry], assignments: list[str]) -> list[_Item]:
    """The items of notebooks outside any student's folder: the student named by the file
    (``Alice_1234_tp1.ipynb``), else by its own folder, else by the folder holding them all,
    else by the file's stem."""
    items: list[_Item] = []
    wrapper = _common_dir(flat)
    for entry in flat:
        rest = entry.parts[len(wrapper) :]
        raw, named = _split_flat_name(_stem(rest[-1]), assignments)
        if raw:
            items.append(_Item(entry, raw, named, "flat", None, None, (0, len(rest), 1)))
        elif len(rest) >= 2:  # "Alice_1234_/tp1.ipynb": the folder names the student
            items.append(
                _Item(
                    entry,
                    rest[0],
                    named,
                    "flat",
                    wrapper + rest[:1],
                    wrapper,
                    (0, len(rest) - 1, 1),
                )
            )
        elif wrapper:
            items.append(_Item(entry, wrapper[-1], named, "flat", wrapper, wrapper[:-1], (0, 1, 1)))
        else:
            items.append(_Item(entry, _stem(rest[-1]), named, "flat", None, None, (0, 1, 1)))
    return items


def _assign_ids(raws: set[str]) -> dict[str, str]:
    ids = {raw: student_id(raw) for raw in raws}
    by_id: dict[str, list[str]] = {}
    for raw, sid in ids.items():
        by_id.setdefault(sid, []).append(raw)
    for same in by_id.values():
        if len(same) > 1:  # only an 8-digit hash collision can do that: lengthen the hashes
            for raw in same:
                ids[raw] = student_id(raw, digits=16)
    if len(set(ids.values())) != len(ids):
        raise AutograderError("internal: two students got the same id")
    return ids


def _why(chosen: _Item, other: _Item) -> str:
    if other.entry.problem:
        return other.entry.problem
    if other.rank > chosen.rank:
        return (
            "another assignment's folder"
            if other.rank[0] > chosen.rank[0]
            else "an extra copy, not at the expected place"
        )
    if other.entry.mtime < chosen.entry.mtime:
        return "an older copy"
    return "same place and age: the first by name was graded"


def _choose(group: list[_Item]) -> tuple[_Item, tuple[str, ...]]:
    ordered = sorted(
        group,
        key=lambda item: (
            item.entry.problem is not None,
            item.rank,
            -item.entry.mtime,
            item.entry.label,
        ),
    )
    chosen, others = ordered[0], ordered[1:]
    if not others:
        return chosen, ()
    gradable = [item for item in others if not item.entry.problem]
    if chosen.entry.problem:
        why = "none of them can be graded"
    elif not gradable:
        why = "the only one that can be graded"
    elif all(item.rank > chosen.rank for item in gradable):
        why = "the one at the expected place"
    elif all(
        item.entry.mtime < chosen.entry.mtime for item in gradable if item.rank == chosen.rank
    ):
        why = "the newest"
    else:
        why = "the first by name among copies of the same place and age"
    notes = [f"{len(group)} notebooks for {chosen.assignment}: graded {chosen.entry.label} ({why})"]
    notes += [
        f"extra file not graded: {item.entry.label} ({_why(chosen, item)})" for item in others
    ]
    return chosen, tuple(notes)


def _empty_folders(
    listing: _Listing,
    items: list[_Item],
    assignments: list[str],
    forced: str | None,
    submitted_root: bool,
) -> list[tuple[str, str | None, str, str]]:
    """(raw student, assignment, label, problem) of each student folder with no notebook."""
    class_dirs = {item.class_dir for item in items if item.class_dir is not None}
    if submitted_root:
        class_dirs.add(())
    claimed = {item.student_dir for item in items if item.student_dir is not None}
    claimed_assignment = {
        item.student_dir + (item.assignment,)
        for item in items
        if item.origin == "tree" and item.student_dir is not None
    }
    tree_students = {item.student_dir for item in items if item.origin == "tree"}

    def holds(folder: tuple[str, ...]) -> str:
        names = sorted(
            f"{display_name('/'.join(d[len(folder) :] + (n,)))}"
            for d, files in listing.files.items()
            if d[: len(folder)] == folder
            for n in files
        )
        error = next((e for d, e in listing.errors.items() if d[: len(folder)] == folder), None)
        if error:
            return f" ({error})"
        if not names:
            return " (no file in it)"
        more = f", and {len(names) - 5} more" if len(names) > 5 else ""
        return f" (it holds: {', '.join(names[:5])}{more})"

    found = []
    for folder in sorted(listing.dirs):
        name = folder[-1]
        if name.startswith(".") or name in SKIPPED_PARTS:
            continue
        label = display_name("/".join(folder)) + "/"
        if folder[:-1] in class_dirs and folder not in claimed:
            found.append(
                (name, forced, label, "no notebook in this student's folder" + holds(folder))
            )
        elif (
            folder[:-1] in tree_students
            and name in assignments
            and folder not in claimed_assignment
        ):
            found.append(
                (
                    folder[-2],
                    forced or name,
                    label,
                    "no notebook in this assignment's folder" + holds(folder),
                )
            )
    return found


def collect(
    source: Path,
    *,
    assignments: list[str],
    assignment: str | None = None,
    unpack_dir: Path | None = None,
    zip_limits: ZipLimits | None = None,
) -> list[Submission]:
    """All submissions under ``source`` (a folder, a .zip or one .ipynb); see the module doc.

    ``assignments``: the course's assignment ids; ``assignment``: forced for every notebook
    (``--assignment``; a tree's folder or a file name naming another one is then reported as
    the wrong assignment by the grader, not silently renamed). The result is sorted by label.
    """
    source = Path(source)
    if not source.exists():
        raise AutograderError(f"no submissions at {printable(os.fspath(source))}")
    if source.is_file() and source.suffix.lower() == ".ipynb":
        raw, named = _split_flat_name(_stem(source.name), assignments)
        student = student_id(raw or _stem(source.name))
        return [Submission(student, assignment or named, source, display_name(source.name), "flat")]
    listing, root_name = _listing_of(source, unpack_dir, zip_limits)
    submitted_root = root_name == "submitted"
    items = _classify(listing, assignments, assignment, submitted_root)
    empty = _empty_folders(listing, items, assignments, assignment, submitted_root)
    ids = _assign_ids(
        {unicodedata.normalize("NFC", item.raw) for item in items}
        | {unicodedata.normalize("NFC", raw) for raw, *_ in empty}
    )
    submissions = _chosen_submissions(items, ids, assignment)
    folder = source if source.is_dir() else Path(unpack_dir or source)
    for raw, chosen, label, problem in empty:
        student = ids[unicodedata.normalize("NFC", raw)]
        submissions.append(Submission(student, chosen, folder, label, "tree", problem))
    if not submissions:
        raise AutograderError(f"no .ipynb file found in {printable(os.fspath(source))}")
    return sorted(submissions, key=lambda s: s.label)


def _listing_of(source: Path, unpack_dir, zip_limits) -> tuple[_Listing, str]:
    """``(what is in source, the name of its root folder)`` for a folder or a .zip (unpacked
    into ``unpack_dir``; its root has no name)."""
    if source.is_dir():
        return _walk(source), source.resolve().name
    if source.suffix.lower() != ".zip":
        raise AutograderError(
            f"{printable(os.fspath(source))}: expected a folder, a .zip or an .ipynb file"
        )
    if unpack_dir is None:
        raise AutograderError("internal: unpack_dir is needed to read a .zip")
    return _read_zip(source, Path(unpack_dir), zip_limits or ZipLimits()), ""


def _chosen_submissions(items: list[_Item], ids: dict[str, str], assignment: str | None):
    """One :class:`Submission` per student and assignment (the file :func:`_choose` picks when
    a student handed in several); each notebook on its own when the assignment is read from
    the notebook itself."""
    groups: dict[tuple[str, str | None], list[_Item]] = {}
    for item in items:
        item.id = ids[unicodedata.normalize("NFC", item.raw)]
        chosen = assignment or item.assignment
        if chosen is None:  # the assignment is read from the notebook: grade each one
            groups[(item.id, f"\0{item.entry.label}")] = [item]
        else:
            groups.setdefault((item.id, chosen), []).append(item)
    submissions: list[Submission] = []
    for group in groups.values():
        item, notes = _choose(group)
        entry = item.entry
        chosen = assignment or item.assignment
        submissions.append(
            Submission(item.id, chosen, entry.path, entry.label, item.origin, entry.problem, notes)
        )
    return submissions
