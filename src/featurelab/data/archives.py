"""Archives: list members, verify a download (checksum or structure), extract safely."""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from .registry import (
    ChecksumError,
    DatasetSpec,
    UnsafeArchiveError,
    VerificationError,
    check_layout,
    file_digest,
    list_files,
)


def verify_archive(spec: DatasetSpec, path: Path) -> None:
    """Check a downloaded archive: its checksum if one is known, else its structure.

    Raises :class:`ChecksumError` or :class:`VerificationError` (also for a truncated or
    non-archive file, e.g. an HTML error page).
    """
    checksum = spec.checksum()
    if checksum is not None:
        algorithm, expected = checksum
        actual = file_digest(path, algorithm)
        if actual != expected:
            raise ChecksumError(
                f"{algorithm} of {path} is {actual}, expected {expected} ({spec.title}): the "
                f"file is corrupt or the server sent another file ({spec.resolved_url()})."
            )
        return
    prefix = spec.folder + "/"
    members = _archive_members(path)
    relpaths = [n[len(prefix) :] for n, kind in members if kind == "file" and n.startswith(prefix)]
    check_layout(spec, relpaths, where=f"archive {path}")


def _archive_members(path: Path) -> list[tuple[str, str]]:
    """``(name, kind)`` of every member of a zip or tar archive; kind: file, dir, link, other."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                return [(info.filename, _zip_kind(info)) for info in archive.infolist()]
        if tarfile.is_tarfile(path):
            with tarfile.open(path) as archive:
                return [(member.name, _tar_kind(member)) for member in archive.getmembers()]
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as error:
        raise VerificationError(f"{path} is a corrupt archive ({error})") from error
    raise VerificationError(f"{path} is not a zip or tar archive (truncated, or an error page?)")


def _zip_kind(info: zipfile.ZipInfo) -> str:
    if info.is_dir():
        return "dir"
    file_type = (info.external_attr >> 16) & 0o170000
    return "file" if file_type in (0, 0o100000) else "link" if file_type == 0o120000 else "other"


def _tar_kind(member: tarfile.TarInfo) -> str:
    if member.isfile():
        return "file"
    if member.isdir():
        return "dir"
    return "link" if member.issym() or member.islnk() else "other"


def safe_extract(archive: Path, destination: Path) -> None:
    """Extract a zip or tar(.gz) ``archive`` into ``destination`` after checking every member.

    Raises :class:`UnsafeArchiveError` (before writing anything) for an absolute path, a
    drive letter, a ``..`` component, a link or a device: nothing can land outside
    ``destination``.
    """
    members = _archive_members(archive)
    for name, kind in members:
        path = PurePosixPath(name.replace("\\", "/"))
        if (
            kind in ("link", "other")
            or path.is_absolute()
            or ".." in path.parts
            or (path.parts and ":" in path.parts[0])
        ):
            raise UnsafeArchiveError(
                f"{archive} holds an unsafe member {name!r} ({kind}): refusing to extract it"
            )
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as opened:
            opened.extractall(destination)
    else:
        with tarfile.open(archive) as opened:
            # The members were checked above; the "data" filter (Python >= 3.12 and recent
            # 3.10/3.11) adds its own checks and avoids the extraction-filter warning.
            extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            opened.extractall(destination, **extra)


def extract_dataset(spec: DatasetSpec, archive: Path, parent: Path) -> Path:
    """Extract ``archive`` into a temporary folder, check it, rename it to ``parent/folder``.

    An interrupted extraction leaves only a hidden ``.<folder>.extracting-*`` folder, which
    the next extraction deletes (one ``prepare`` per dataset at a time).
    """
    target = parent / spec.folder
    for stale in parent.glob(f".{spec.folder}.extracting-*"):
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{spec.folder}.extracting-", dir=parent))
    try:
        try:
            safe_extract(archive, staging)
        except (zipfile.BadZipFile, tarfile.TarError, EOFError) as error:
            raise VerificationError(f"cannot extract {archive}: {error}") from error
        extracted = staging / spec.folder
        if not extracted.is_dir():
            raise VerificationError(f"{archive} has no top-level folder {spec.folder}/")
        check_layout(spec, list_files(extracted), where=f"the extracted {spec.folder}/")
        os.rename(extracted, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
