"""Making a dataset ready and finding it: download + extract (:func:`prepare`, :func:`ensure`,
with a free-space check), offline verification, and where a dataset is for a profile."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..profiles import Profile
from .archives import extract_dataset, verify_archive
from .download import download
from .fixtures import ensure_fixtures
from .registry import (
    DatasetMissingError,
    DatasetSpec,
    InsufficientSpaceError,
    check_layout,
    data_root,
    file_digest,
    get_spec,
    how_to_get,
    list_files,
)


def _get_profile(profile: str | Profile | None):
    """``featurelab.profiles.get_profile``, looked up on the ``featurelab.data`` package at each
    call: that package attribute stays the one place to substitute a profile (tests do)."""
    from . import get_profile

    return get_profile(profile)


def prepare(name: str, root: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """Make dataset ``name`` ready: download and verify its archive, extract it; return its folder.

    Does nothing (no network) when the folder is already there: extraction renames a
    complete, checked folder into place, so an existing folder is a complete one.
    """
    spec = get_spec(name)
    parent = data_root(root) / spec.name
    folder = parent / spec.folder
    if folder.is_dir():
        return folder
    archive = download(name, root, progress)
    return extract_dataset(spec, archive, parent)


def ensure(
    name: str,
    *,
    root: str | os.PathLike | None = None,
    download: bool | None = None,
    progress: bool = True,
) -> Path:
    """The folder of the real dataset ``name`` (e.g. ``<data root>/scene15/15SceneData``).

    When it is missing: with ``download=True``, checks the free disk space first
    (:class:`InsufficientSpaceError` naming the space needed and the folder), then downloads
    (byte progress bar unless ``progress=False``), verifies the checksum or structure and
    extracts it (:func:`prepare`); with ``download=False``, raises
    :class:`DatasetMissingError` naming the command that fetches it. ``download=None``
    (default): the notebook's ``DOWNLOAD`` (:func:`featurelab.profiles.allow_downloads`), else
    ``False``. No network access when the folder is there.
    """
    from ..profiles import downloads_allowed

    spec = get_spec(name)
    base = data_root(root)
    folder = base / spec.name / spec.folder
    if folder.is_dir():
        return folder
    if download is None:
        download = downloads_allowed(default=False)
    if not download:
        raise _missing(
            spec, base, folder, f"\nor call featurelab.data.ensure({name!r}, download=True)"
        )
    check_free_space(spec, base)
    return prepare(name, root, progress)


def space_needed(spec: DatasetSpec, base: Path) -> int:
    """Approximate bytes a :func:`prepare` of ``spec`` still needs under data root ``base``:
    the rest of the archive (a verified archive or a ``.part`` counts as downloaded) plus the
    extracted folder (the archive is kept next to it)."""
    archive = base / spec.name / spec.filename
    have = 0
    for candidate in (archive, archive.with_name(archive.name + ".part")):
        try:
            have = max(have, candidate.stat().st_size)
        except OSError:
            pass
    return max(0, spec.archive_bytes - have) + spec.extracted_bytes


def check_free_space(spec: DatasetSpec, base: Path) -> None:
    """Raise :class:`InsufficientSpaceError` when the file system of ``<base>/<name>`` has less
    free space than :func:`space_needed`."""
    target = base / spec.name
    needed = space_needed(spec, base)
    probe = target
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < needed:
        raise InsufficientSpaceError(
            f"{spec.title} needs about {_human(needed)} of free disk space in {target} "
            f"(archive ~{_human(spec.archive_bytes)} + extracted ~{_human(spec.extracted_bytes)}), "
            f"but only {_human(free)} is free there.\nFree some space, or choose another data "
            f"root: --root DIR or $FEATURELAB_DATA."
        )


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # unreachable


def verify(name: str, root: str | os.PathLike | None = None) -> list[Path]:
    """Check what is on disk for ``name`` without any network access; return what verified.

    The archive (checksum or structure) when present, then the extracted folder's structure.
    Raises :class:`VerificationError` when something is wrong and :class:`DatasetMissingError`
    when the folder is not extracted (the message says whether the archive verified).
    """
    spec = get_spec(name)
    base = data_root(root)
    archive = base / spec.name / spec.filename
    folder = base / spec.name / spec.folder
    verified = []
    if archive.is_file():
        verify_archive(spec, archive)
        verified.append(archive)
    if not folder.is_dir():
        state = f"its archive {archive} verified but " if verified else ""
        raise DatasetMissingError(
            f"{spec.title}: {state}{folder} is not there.\n{how_to_get(spec, base)}"
        )
    check_layout(spec, list_files(folder), where=str(folder))
    return [*verified, folder]


def archive_sha256(name: str, root: str | os.PathLike | None = None, progress: bool = True) -> str:
    """sha256 of the verified archive of ``name`` (downloaded if needed), to pin in REGISTRY."""
    return file_digest(download(name, root, progress), "sha256")


# ---------------------------------------------------------------------------------------------
# Where a dataset is
# ---------------------------------------------------------------------------------------------


def _missing(spec: DatasetSpec, base: Path, folder: Path, extra: str = "") -> DatasetMissingError:
    return DatasetMissingError(
        f"{spec.title} is not in {folder}.\n{how_to_get(spec, base)}{extra}\n"
        "In a notebook: set DOWNLOAD = True in the parameters cell to fetch it (or PROFILE = "
        '"smoke" for the tiny offline fixtures).'
    )


def dataset_dir(
    name: str, profile: str | Profile | None = None, root: str | os.PathLike | None = None
) -> Path:
    """The folder of dataset ``name`` (e.g. ``.../15SceneData``) for ``profile``.

    ``root`` is a data root (default :func:`data_root`). In the smoke profile: the fixture copy
    ``<root>/fixtures/<name>/<folder>``, generated on first use. Otherwise the extracted real
    dataset ``<root>/<name>/<folder>``; :class:`DatasetMissingError` (naming the command to
    run) when it is absent, unless the notebook allowed downloads (``DOWNLOAD = True``, the
    default on Colab): then it is fetched (:func:`ensure`).
    """
    spec = get_spec(name)
    base = data_root(root)
    if _get_profile(profile).fixtures:
        return ensure_fixtures(base / "fixtures")[name]
    folder = base / spec.name / spec.folder
    if not folder.is_dir():
        return ensure(name, root=base)
    return folder


def locate(name: str, profile: str | Profile | None, root: str | os.PathLike | None) -> Path:
    """A loader's ``root``: the dataset folder itself, its parent, or else a data root."""
    spec = get_spec(name)
    if root is not None:
        root = Path(root).expanduser().absolute()
        for candidate in (root, root / spec.folder, root / spec.name):
            if all((candidate / marker).exists() for marker in spec.markers()):
                return candidate
    return dataset_dir(name, profile, root)
