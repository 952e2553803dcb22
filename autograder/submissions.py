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

import hashlib
import os
import re
import shutil
import stat
import time
import unicodedata
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from .course import AutograderError

SKIPPED_PARTS = {".ipynb_checkpoints", "__MACOSX"}
MAX_ID = 64  # longest id kept as given
ID_BASE = 48  # longest readable part of a changed id (then "-" and the hash)
HASH_DIGITS = 8

_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_HASHED = re.compile(r"-[0-9a-f]{8,16}$")
_COPY_MARKER = re.compile(r"\s*\(\d+\)$")
_WINDOWS_DEVICES = {
    "con",
    "prn",
    "aux",
    "nul",
    *(f"com{i}" for i in range(10)),
    *(f"lpt{i}" for i in range(10)),
}
_TRANSLITERATION = str.maketrans(
    {
        "ß": "ss",
        "æ": "ae",
        "Æ": "AE",
        "ø": "o",
        "Ø": "O",
        "œ": "oe",
        "Œ": "OE",
        "ł": "l",
        "Ł": "L",
        "đ": "d",
        "Đ": "D",
        "ð": "d",
        "Ð": "D",
        "þ": "th",
        "Þ": "Th",
        "ı": "i",
    }
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


@dataclass(frozen=True)
class ZipLimits:
    """Bounds on what a .zip may make the grader extract (a member over one is refused)."""

    max_members: int = 20_000  # entries considered, in archive order
    max_member_bytes: int = 64 * 2**20  # one notebook, uncompressed
    max_total_bytes: int = 4 * 2**30  # everything extracted
    max_ratio: float = 200.0  # uncompressed / compressed ...
    ratio_floor_bytes: int = 2**20  # ... for members larger than this


# --------------------------------------------------------------------------------------------
# names


def display_name(text: str) -> str:
    """``text`` as given, with what is not printable escaped the way :func:`ascii` does.

    A byte that was not UTF-8 (a ``surrogateescape`` surrogate) shows as ``\\xNN``; a backslash
    as ``\\\\``, so two different names never display the same.
    """
    out = []
    for char in text:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif char == "\\":
            out.append("\\\\")
        elif char.isprintable():
            out.append(char)
        else:
            out.append(ascii(char)[1:-1])
    return "".join(out)


def printable(text: str) -> str:
    """``text`` with surrogates and unprintable characters escaped (printable text unchanged)."""
    if all(char.isprintable() and not 0xD800 <= ord(char) <= 0xDFFF for char in text):
        return text
    return display_name(text)


def _encode(text: str) -> bytes:
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def digest(text: str, digits: int = HASH_DIGITS) -> str:
    return hashlib.sha256(_encode(text)).hexdigest()[:digits]


def transliterate(text: str) -> str:
    """A readable ASCII form of ``text`` (``Zoë`` -> ``Zoe``; what has none is dropped)."""
    text = text.translate(_TRANSLITERATION)
    decomposed = unicodedata.normalize("NFKD", text)
    return (
        "".join(c for c in decomposed if not unicodedata.combining(c))
        .encode("ascii", "ignore")
        .decode()
    )


def _reserved(name: str) -> bool:
    return name.split(".")[0].lower() in _WINDOWS_DEVICES


def _readable(text: str, limit: int) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", transliterate(text)).strip("._-")
    return cleaned[:limit].rstrip("._-") or "student"


def student_id(raw: str, digits: int = HASH_DIGITS) -> str:
    """The id of the student named ``raw`` (see the module docstring): unique and stable."""
    key = unicodedata.normalize("NFC", raw)
    if (
        _SAFE.fullmatch(key)
        and len(key) <= MAX_ID
        and not _HASHED.search(key)
        and not _reserved(key)
    ):
        return key
    return f"{_readable(key, ID_BASE)}-{digest(key, digits)}"


safe_id = student_id  # the former name


def report_name(text: str, limit: int = MAX_ID) -> str:
    """A short file-system-safe file name for ``text`` (an id stays as it is)."""
    if _SAFE.fullmatch(text) and len(text) <= limit and not _reserved(text):
        return text
    return f"{_readable(text, limit - HASH_DIGITS - 1)}-{digest(text)}"


def _split_flat_name(stem: str, assignments: list[str]) -> tuple[str, str | None]:
    """``alice_tp1_x`` -> (``alice``, ``tp1_x``): the raw student name (may be empty)."""
    stem = _COPY_MARKER.sub("", stem)
    for assignment in sorted(assignments, key=len, reverse=True):
        position = stem.rfind(assignment)
        if position >= 0:
            student = stem[:position].rstrip(" _-.") or stem[position + len(assignment) :].strip(
                " _-."
            )
            return _COPY_MARKER.sub("", student), assignment
    return stem.strip(), None


def _stem(name: str) -> str:
    return name[: -len(".ipynb")] if name.lower().endswith(".ipynb") else name


# --------------------------------------------------------------------------------------------
# listing the input: notebook entries, folders, other files (the same for a folder or a .zip)


@dataclass
class _Entry:
    parts: tuple[str, ...]  # path relative to the input (as given; zip: safe form)
    path: Path  # where to read it (problem entries: a folder, never read)
    mtime: float
    label: str
    problem: str | None = None


@dataclass
class _Listing:
    entries: list[_Entry] = field(default_factory=list)
    dirs: set[tuple[str, ...]] = field(default_factory=set)
    files: dict[tuple[str, ...], list[str]] = field(default_factory=dict)  # dir -> other files
    errors: dict[tuple[str, ...], str] = field(default_factory=dict)  # dir -> why unreadable

    def add_dirs(self, parts: tuple[str, ...]) -> None:
        for end in range(1, len(parts) + 1):
            self.dirs.add(parts[:end])


def _skipped(parts: tuple[str, ...]) -> bool:
    return bool(SKIPPED_PARTS & set(parts)) or parts[-1].startswith("._")


def _is_notebook_name(name: str) -> bool:
    return name.lower().endswith(".ipynb") and len(name) > len(".ipynb")


def _walk(root: Path) -> _Listing:
    listing = _Listing()
    base = os.fspath(root)

    def relative(path: str) -> tuple[str, ...]:
        rel = os.path.relpath(path, base)
        return () if rel == "." else tuple(rel.split(os.sep))

    def failed(error: OSError) -> None:
        listing.errors[relative(error.filename)] = f"cannot read the folder: {error.strerror}"

    for dirpath, dirnames, filenames in os.walk(base, onerror=failed):
        here = relative(dirpath)
        dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_PARTS)
        for name in dirnames:
            if os.path.islink(os.path.join(dirpath, name)):
                listing.errors[here + (name,)] = "a symbolic link to a folder: not followed"
            listing.add_dirs(here + (name,))
        for name in sorted(filenames):
            parts = here + (name,)
            if not _is_notebook_name(name):
                listing.files.setdefault(here, []).append(name)
                continue
            if _skipped(parts):
                continue
            full = os.path.join(dirpath, name)
            label = display_name("/".join(parts))
            try:
                info = os.lstat(full)
            except OSError as error:
                listing.entries.append(
                    _Entry(
                        parts, Path(dirpath), 0.0, label, f"cannot read the file: {error.strerror}"
                    )
                )
                continue
            problem = None
            if stat.S_ISLNK(info.st_mode):
                problem = "a symbolic link, not a notebook file: not graded"
            elif not stat.S_ISREG(info.st_mode):
                problem = "not a regular file: not graded"
            listing.entries.append(
                _Entry(
                    parts, Path(dirpath) if problem else Path(full), info.st_mtime, label, problem
                )
            )
    return listing


def _member_name(member: zipfile.ZipInfo) -> str:
    name = member.filename
    if not member.flag_bits & 0x800:  # no UTF-8 flag: zipfile read cp437; most tools wrote UTF-8
        try:
            name = name.encode("cp437").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            pass
    return name.replace("\\", "/")


def _unsafe(name: str) -> bool:
    parts = name.split("/")
    return (
        name.startswith("/")
        or ".." in parts
        or bool(re.match(r"^[A-Za-z]:", name))
        or "\x00" in name
    )


def _extract(bundle: zipfile.ZipFile, member: zipfile.ZipInfo, target: Path, cap: int) -> int:
    """Copy ``member`` to ``target``, at most ``cap`` bytes; returns the size, -1 if over."""
    written = 0
    with bundle.open(member) as source, open(target, "wb") as sink:
        while True:
            chunk = source.read(min(2**20, cap + 1 - written))
            if not chunk:
                return written
            written += len(chunk)
            if written > cap:
                return -1
            sink.write(chunk)


def _mib(size: float) -> str:
    return f"{size / 2**20:.1f} MiB" if size < 2**30 else f"{size / 2**30:.1f} GiB"


def _read_zip(archive: Path, target: Path, limits: ZipLimits) -> _Listing:
    listing = _Listing()
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    total = 0
    labels: set[str] = set()
    try:
        bundle = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise AutograderError(f"{archive} is not a valid .zip file ({error})") from None
    with bundle:
        for index, member in enumerate(bundle.infolist()):
            name = _member_name(member)
            unsafe = _unsafe(name)
            parts = tuple(p for p in name.split("/") if p not in ("", ".", ".."))
            if not parts:
                continue
            if member.is_dir():
                if not unsafe and not _skipped(parts):
                    listing.add_dirs(parts)
                continue
            if not unsafe:
                listing.add_dirs(parts[:-1])
            if not _is_notebook_name(parts[-1]):
                if not unsafe:
                    listing.files.setdefault(parts[:-1], []).append(parts[-1])
                continue
            if _skipped(parts):
                continue
            label = display_name(name)
            if label in labels:  # a .zip may hold one name twice: keep both, distinctly
                label = f"{label} [member {index + 1}]"
            labels.add(label)
            try:
                mtime = time.mktime((*member.date_time, 0, 0, -1))
            except (OverflowError, ValueError):
                mtime = 0.0
            mode = member.external_attr >> 16
            size, packed = member.file_size, member.compress_size
            problem = None
            if unsafe:
                problem = (
                    "unsafe path in the .zip (it leads outside the folder it is "
                    "extracted to): not extracted"
                )
            elif stat.S_ISLNK(mode):
                problem = "a symbolic link in the .zip, not a notebook: not extracted"
            elif member.flag_bits & 0x1:
                problem = "an encrypted member of the .zip: not extracted"
            elif index >= limits.max_members:
                problem = (
                    f"the .zip holds more than {limits.max_members} members: this one "
                    "(and the following ones) not extracted"
                )
            elif size > limits.max_member_bytes:
                problem = (
                    f"too large: {_mib(size)} uncompressed (limit "
                    f"{_mib(limits.max_member_bytes)}): not extracted"
                )
            elif size > limits.ratio_floor_bytes and size > limits.max_ratio * max(packed, 1):
                problem = (
                    f"compressed {size / max(packed, 1):.0f}:1 ({_mib(size)} from "
                    f"{packed} bytes; limit {limits.max_ratio:g}:1), a zip bomb?: not "
                    "extracted"
                )
            elif total + size > limits.max_total_bytes:
                problem = (
                    f"the .zip's total uncompressed size limit "
                    f"({_mib(limits.max_total_bytes)}) is reached: not extracted"
                )
            if problem:
                listing.entries.append(_Entry(parts, target, mtime, label, problem))
                continue
            destination = target / f"{index:06d}.ipynb"
            cap = min(limits.max_member_bytes, limits.max_total_bytes - total)
            try:
                written = _extract(bundle, member, destination, cap)
            except (
                zipfile.BadZipFile,
                zlib.error,
                EOFError,
                OSError,
                NotImplementedError,
                RuntimeError,
                ValueError,
            ) as error:
                destination.unlink(missing_ok=True)
                listing.entries.append(
                    _Entry(
                        parts,
                        target,
                        mtime,
                        label,
                        f"a damaged member of the .zip ({error}): not extracted",
                    )
                )
                continue
            if written < 0:
                destination.unlink(missing_ok=True)
                listing.entries.append(
                    _Entry(
                        parts,
                        target,
                        mtime,
                        label,
                        f"larger than its .zip header says (over {_mib(cap)}): not extracted",
                    )
                )
                continue
            total += written
            listing.entries.append(_Entry(parts, destination, mtime, label))
    return listing


def extract_zip(archive: Path, target: Path, limits: ZipLimits = ZipLimits()) -> Path:
    """Extract the safe ``.ipynb`` members of ``archive`` into ``target`` (see :func:`collect`)."""
    _read_zip(Path(archive), Path(target), limits)
    return Path(target)


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
    items: list[_Item] = []
    flat: list[_Entry] = []

    def first_assignment(parts: tuple[str, ...], after: int) -> int | None:
        return next((i for i in range(after + 1, len(parts) - 1) if parts[i] in assignments), None)

    # the level of the students' folders: the shallowest one that holds an assignment folder
    # (``submitted/``: its children), so that ``alice/backup/tp1/tp1.ipynb`` stays Alice's
    levels = [
        i - 1 for i in (first_assignment(e.parts, 0) for e in listing.entries) if i is not None
    ]
    level = 0 if submitted_root else min(levels, default=0)
    for entry in listing.entries:
        parts = entry.parts
        student_at = level
        tree_at = first_assignment(parts, level)
        if tree_at is None:
            tree_at = first_assignment(parts, 0)
            student_at = tree_at - 1 if tree_at is not None else level
        if tree_at is None and submitted_root and len(parts) >= 3:
            tree_at = 1
        if tree_at is not None:
            folder = parts[tree_at]
            depth = len(parts) - student_at - 2  # folders between the student and the file
            exact = tree_at == student_at + 1 and depth == 1 and _stem(parts[-1]) == folder
            wrong = 1 if forced and folder != forced else 0
            items.append(
                _Item(
                    entry,
                    parts[student_at],
                    folder,
                    "tree",
                    parts[: student_at + 1],
                    parts[:student_at],
                    (wrong, depth, 0 if exact else 1),
                )
            )
        elif submitted_root and len(parts) == 2:
            _, named = _split_flat_name(_stem(parts[1]), assignments)
            items.append(_Item(entry, parts[0], named, "tree", parts[:1], (), (0, 0, 1)))
        else:
            flat.append(entry)
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
    zip_limits: ZipLimits = ZipLimits(),
) -> list[Submission]:
    """All submissions under ``source`` (a folder, a .zip or one .ipynb); see the module doc.

    ``assignments``: the course's assignment ids; ``assignment``: forced for every notebook
    (``--assignment``; a tree's folder or a file name naming another one is then reported as
    the wrong assignment by the grader, not silently renamed). The result is sorted by label.
    """
    source = Path(source)
    if not source.exists():
        raise AutograderError(f"no submissions at {printable(os.fspath(source))}")
    if source.is_file():
        if source.suffix.lower() == ".zip":
            if unpack_dir is None:
                raise AutograderError("internal: unpack_dir is needed to read a .zip")
            listing = _read_zip(source, Path(unpack_dir), zip_limits)
            root_name = ""
        elif source.suffix.lower() == ".ipynb":
            raw, named = _split_flat_name(_stem(source.name), assignments)
            return [
                Submission(
                    student_id(raw or _stem(source.name)),
                    assignment or named,
                    source,
                    display_name(source.name),
                    "flat",
                )
            ]
        else:
            raise AutograderError(
                f"{printable(os.fspath(source))}: expected a folder, a .zip or an .ipynb file"
            )
    else:
        listing = _walk(source)
        root_name = source.resolve().name

    submitted_root = root_name == "submitted"
    items = _classify(listing, assignments, assignment, submitted_root)
    empty = _empty_folders(listing, items, assignments, assignment, submitted_root)
    ids = _assign_ids(
        {unicodedata.normalize("NFC", item.raw) for item in items}
        | {unicodedata.normalize("NFC", raw) for raw, *_ in empty}
    )
    groups: dict[tuple[str, str | None], list[_Item]] = {}
    submissions: list[Submission] = []
    for item in items:
        item.id = ids[unicodedata.normalize("NFC", item.raw)]
        chosen = assignment or item.assignment
        if chosen is None:  # the assignment is read from the notebook: grade each one
            groups[(item.id, f"\0{item.entry.label}")] = [item]
        else:
            groups.setdefault((item.id, chosen), []).append(item)
    for group in groups.values():
        item, notes = _choose(group)
        entry = item.entry
        submissions.append(
            Submission(
                item.id,
                assignment or item.assignment,
                entry.path,
                entry.label,
                item.origin,
                entry.problem,
                notes,
            )
        )
    for raw, chosen, label, problem in empty:
        folder = source if source.is_dir() else Path(unpack_dir or source)
        submissions.append(
            Submission(
                ids[unicodedata.normalize("NFC", raw)], chosen, folder, label, "tree", problem
            )
        )
    if not submissions:
        raise AutograderError(f"no .ipynb file found in {printable(os.fspath(source))}")
    return sorted(submissions, key=lambda s: s.label)
