"""Listing a submissions input, a folder or a .zip (safe extraction within :class:`ZipLimits`),
into notebook entries, folders and other files (see :mod:`autograder.submissions`)."""

from __future__ import annotations

import os
import re
import shutil
import stat
import time
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from .course import AutograderError
from .student_names import display_name

SKIPPED_PARTS = {".ipynb_checkpoints", "__MACOSX"}


@dataclass(frozen=True)
class ZipLimits:
    """Bounds on what a .zip may make the grader extract (a member over one is refused)."""

    max_members: int = 20_000  # entries considered, in archive order
    max_member_bytes: int = 64 * 2**20  # one notebook, uncompressed
    max_total_bytes: int = 4 * 2**30  # everything extracted
    max_ratio: float = 200.0  # uncompressed / compressed ...
    ratio_floor_bytes: int = 2**20  # ... for members larger than this


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
            problem = _refusal(member, index, unsafe, total, limits)
            if problem:
                listing.entries.append(_Entry(parts, target, mtime, label, problem))
                continue
            destination = target / f"{index:06d}.ipynb"
            cap = min(limits.max_member_bytes, limits.max_total_bytes - total)
            written, problem = _extract_checked(bundle, member, destination, cap)
            if problem:
                listing.entries.append(_Entry(parts, target, mtime, label, problem))
                continue
            total += written
            listing.entries.append(_Entry(parts, destination, mtime, label))
    return listing


def _refusal(member: zipfile.ZipInfo, index: int, unsafe: bool, total: int, limits) -> str | None:
    """Why the notebook ``member`` (the ``index``-th of the .zip; ``total`` bytes extracted
    before it) is not extracted, judged from its header alone; None when it may be."""
    mode = member.external_attr >> 16
    size, packed = member.file_size, member.compress_size
    if unsafe:
        return (
            "unsafe path in the .zip (it leads outside the folder it is "
            "extracted to): not extracted"
        )
    if stat.S_ISLNK(mode):
        return "a symbolic link in the .zip, not a notebook: not extracted"
    if member.flag_bits & 0x1:
        return "an encrypted member of the .zip: not extracted"
    if index >= limits.max_members:
        return (
            f"the .zip holds more than {limits.max_members} members: this one "
            "(and the following ones) not extracted"
        )
    if size > limits.max_member_bytes:
        return (
            f"too large: {_mib(size)} uncompressed (limit "
            f"{_mib(limits.max_member_bytes)}): not extracted"
        )
    if size > limits.ratio_floor_bytes and size > limits.max_ratio * max(packed, 1):
        return (
            f"compressed {size / max(packed, 1):.0f}:1 ({_mib(size)} from "
            f"{packed} bytes; limit {limits.max_ratio:g}:1), a zip bomb?: not "
            "extracted"
        )
    if total + size > limits.max_total_bytes:
        return (
            f"the .zip's total uncompressed size limit "
            f"({_mib(limits.max_total_bytes)}) is reached: not extracted"
        )
    return None


def _extract_checked(bundle, member, destination: Path, cap: int) -> tuple[int, str | None]:
    """Extract ``member`` to ``destination``, at most ``cap`` bytes: ``(bytes written, None)``,
    or ``(0, why not)`` with nothing left behind (a damaged member, or one larger than its
    header said)."""
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
        problem = f"a damaged member of the .zip ({error}): not extracted"
    else:
        if written >= 0:
            return written, None
        problem = f"larger than its .zip header says (over {_mib(cap)}): not extracted"
    destination.unlink(missing_ok=True)
    return 0, problem


def extract_zip(archive: Path, target: Path, limits: ZipLimits = ZipLimits()) -> Path:
    """Extract the safe ``.ipynb`` members of ``archive`` into ``target`` (see :func:`collect`)."""
    _read_zip(Path(archive), Path(target), limits)
    return Path(target)
