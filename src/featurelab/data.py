"""Datasets: one registry, resumable verified downloads, safe extraction, loaders, fixtures.

Three datasets, each in its own folder of the data root (:func:`data_root`): the archive
``<name>/<filename>`` and the extracted folder next to it::

    scene15/15SceneData.zip               scene15/15SceneData/{train,test}/<Class>/*.jpg
    petimages/kagglecatsanddogs_5340.zip  petimages/PetImages/{Cat,Dog}/<N>.jpg
    cifar10/cifar-10-python.tar.gz        cifar10/cifar-10-batches-py/
    fixtures/                             the same three layouts, tiny and generated
                                          (smoke profile, :func:`make_fixtures`)

``prepare(name)`` downloads (with a byte progress bar, resuming an interrupted download with an
HTTP ``Range`` request), verifies (checksum, or the archive's structure where no checksum is
published) and extracts (into a temporary folder renamed into place). ``dataset_dir(name,
profile)`` says where a dataset is, or raises :class:`DatasetMissingError` naming the command to
run. The loaders return map-style datasets with ``.classes`` (list[str]) and ``.targets``
(list[int]) whose items are ``(transform(image), label)`` with ``image`` a PIL RGB image.
"""

from __future__ import annotations

import colorsys
import hashlib
import http.client
import io
import json
import math
import os
import pickle
import random
import shutil
import struct
import tarfile
import tempfile
import urllib.request
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.error import HTTPError, URLError

import numpy as np
import torch
from PIL import Image
from torchvision.datasets import CIFAR10
from tqdm.auto import tqdm

from .profiles import get_profile

DATA_ENV = "FEATURELAB_DATA"
GET_DATA_SCRIPT = "data_scripts/get_data.py"
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png"})
USER_AGENT = "featurelab-data/0.1 (+urllib)"

SCENE15_CLASSES = (
    "Bedroom", "Coast", "Forest", "Highway", "Industrial", "InsideCity", "Kitchen", "LivingRoom",
    "Mountain", "Office", "OpenCountry", "Store", "Street", "Suburb", "TallBuilding",
)  # fmt: skip
# Images per class in the standard 15 Scene split (Lazebnik et al. 2006): 100 train, the rest test.
SCENE15_TEST_COUNTS = dict(
    zip(
        SCENE15_CLASSES,
        (116, 260, 228, 160, 211, 208, 110, 189, 274, 115, 310, 215, 192, 141, 256),
        strict=True,
    )
)
PETIMAGES_CLASSES = ("Cat", "Dog")
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
CIFAR10_FILES = (
    "data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
    "test_batch", "batches.meta",
)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


class DataError(RuntimeError):
    """Base class of the dataset errors; the message says what to do."""


class DownloadError(DataError):
    """A download failed (offline, refused, HTTP error, connection cut too often)."""


class VerificationError(DataError):
    """A file or folder does not have the expected checksum or structure."""


class ChecksumError(VerificationError):
    """A downloaded file's checksum differs from the registry's."""


class UnsafeArchiveError(VerificationError):
    """An archive member would land outside the extraction folder (or is a link/device)."""


class DatasetMissingError(DataError, FileNotFoundError):
    """A dataset is not on disk; the message names the command that fetches it."""


# ---------------------------------------------------------------------------------------------
# Data root and registry
# ---------------------------------------------------------------------------------------------


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The folder holding the datasets (absolute).

    ``root`` if given, else ``$FEATURELAB_DATA``, else ``<repo>/data`` when this package runs
    from a checkout of the project (git-ignored), else ``~/.cache/featurelab/data``.
    """
    if root is None:
        root = os.environ.get(DATA_ENV, "").strip() or None
    if root is not None:
        return Path(root).expanduser().absolute()
    repo = _repo_dir()
    if repo is not None:
        return repo / "data"
    return Path.home() / ".cache" / "featurelab" / "data"


def _repo_dir() -> Path | None:
    """The project checkout this module lives in (src layout), or None when installed."""
    candidate = Path(__file__).resolve().parents[2]
    pyproject = candidate / "pyproject.toml"
    if pyproject.is_file() and 'name = "featurelab"' in pyproject.read_text(encoding="utf-8"):
        return candidate
    return None


@dataclass(frozen=True)
class DatasetSpec:
    """One downloadable dataset.

    ``url`` is the default address; ``$FEATURELAB_URL_<NAME>`` overrides it (course mirrors
    move). ``md5``/``sha256`` are the archive's published checksum (None: none published);
    ``$FEATURELAB_SHA256_<NAME>`` pins a sha256 without editing the code. The archive is stored
    as ``<data root>/<name>/<filename>`` and holds one top-level ``folder`` extracted to
    ``<data root>/<name>/<folder>``. Its structure, checked in the archive listing before
    extraction (when no checksum is known) and always in the extracted folder:
    ``required_files`` (paths relative to ``folder``) must exist, and ``image_counts`` maps a
    folder (relative to ``folder``) to the ``(min, max)`` number of image files directly in it
    (``max`` None: no upper bound).
    """

    name: str
    title: str
    url: str
    filename: str
    folder: str
    md5: str | None = None
    sha256: str | None = None
    required_files: tuple[str, ...] = ()
    image_counts: Mapping[str, tuple[int, int | None]] = field(default_factory=dict)

    @property
    def url_env(self) -> str:
        return f"FEATURELAB_URL_{self.name.upper()}"

    @property
    def sha256_env(self) -> str:
        return f"FEATURELAB_SHA256_{self.name.upper()}"

    def resolved_url(self) -> str:
        """The URL in force: ``$FEATURELAB_URL_<NAME>`` or the registry's."""
        return os.environ.get(self.url_env, "").strip() or self.url

    def checksum(self) -> tuple[str, str] | None:
        """``(algorithm, hex digest)`` the archive must match, or None (structure check only)."""
        pinned = os.environ.get(self.sha256_env, "").strip().lower()
        if pinned:
            return "sha256", pinned
        if self.sha256:
            return "sha256", self.sha256
        if self.md5:
            return "md5", self.md5
        return None

    def markers(self) -> set[str]:
        """Entries directly inside ``folder`` that identify the layout (cheap existence test)."""
        return {PurePosixPath(d).parts[0] for d in self.image_counts} | set(self.required_files)


REGISTRY: dict[str, DatasetSpec] = {
    "scene15": DatasetSpec(
        name="scene15",
        title="15 Scene",
        # The zip the RDFIA course serves. No checksum is published for it, so the download is
        # verified by its structure: the 15 class folders with the standard split's exact
        # counts (100 train images per class, 2,985 test images).
        url="https://rdfia.github.io/data/15SceneData.zip",
        filename="15SceneData.zip",
        folder="15SceneData",
        image_counts={
            **{f"train/{c}": (100, 100) for c in SCENE15_CLASSES},
            **{f"test/{c}": (n, n) for c, n in SCENE15_TEST_COUNTS.items()},
        },
    ),
    "petimages": DatasetSpec(
        name="petimages",
        title="Microsoft PetImages (cats and dogs)",
        # Microsoft publishes no checksum for this zip, so it is verified by its structure:
        # two class folders of ~12,500 files each (a few of them broken, which the loader
        # skips). Once an instructor records the archive's sha256
        # (`get_data.py petimages --print-sha256`), pin it here or in $FEATURELAB_SHA256_PETIMAGES.
        url=(
            "https://download.microsoft.com/download/3/E/1/"
            "3E1C3F21-ECDB-4869-8368-6DEBA77B919F/kagglecatsanddogs_5340.zip"
        ),
        filename="kagglecatsanddogs_5340.zip",
        folder="PetImages",
        image_counts={"Cat": (12_000, None), "Dog": (12_000, None)},
    ),
    "cifar10": DatasetSpec(
        name="cifar10",
        title="CIFAR-10 (python version)",
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        filename="cifar-10-python.tar.gz",
        folder="cifar-10-batches-py",
        md5="c58f30108f718f92721af3b95e74349a",
        required_files=CIFAR10_FILES,
    ),
}


def get_spec(name: str) -> DatasetSpec:
    """The registry entry for ``name``, with a clear error for unknown names."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; choose one of {', '.join(REGISTRY)}") from None


def _get_data_command(name: str, base: Path) -> str:
    option = "" if base == data_root() else f" --root {base}"
    return f"python {GET_DATA_SCRIPT} {name}{option}"


def _how_to_get(spec: DatasetSpec, base: Path) -> str:
    archive = base / spec.name / spec.filename
    return (
        f"On a machine with internet run:  {_get_data_command(spec.name, base)}\n"
        f"or download {spec.resolved_url()}\n"
        f"save it as {archive} and run that command to verify and extract it\n"
        f"(set ${spec.url_env} to download from a mirror)."
    )


# ---------------------------------------------------------------------------------------------
# Verification
# ---------------------------------------------------------------------------------------------


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of the file at ``path`` (read in 1 MiB chunks)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_layout(spec: DatasetSpec, relpaths: Iterable[str], where: str) -> None:
    """Raise :class:`VerificationError` unless ``relpaths`` have ``spec``'s structure.

    ``relpaths``: POSIX paths of the files, relative to the dataset folder (``spec.folder``).
    ``where`` names what was listed (an archive or a folder), for the message.
    """
    present = set()
    images_per_dir: Counter[str] = Counter()
    for relpath in relpaths:
        present.add(relpath)
        path = PurePosixPath(relpath)
        if path.suffix.lower() in IMAGE_SUFFIXES:
            images_per_dir[str(path.parent)] += 1
    problems = [f"missing file {name}" for name in spec.required_files if name not in present]
    for folder, (low, high) in spec.image_counts.items():
        count = images_per_dir[folder]
        if count < low or (high is not None and count > high):
            expected = (
                f"at least {low}" if high is None else str(low) if low == high else f"{low}-{high}"
            )
            problems.append(f"{folder}/ has {count} images, expected {expected}")
    if problems:
        shown = "\n  ".join(problems[:10]) + ("\n  ..." if len(problems) > 10 else "")
        raise VerificationError(
            f"{where} does not have the layout of {spec.title} "
            f"({len(problems)} problems):\n  {shown}"
        )


def list_files(folder: str | os.PathLike) -> list[str]:
    """POSIX paths of every file under ``folder``, relative to it, sorted."""
    folder = Path(folder)
    return sorted(
        (Path(dirpath) / name).relative_to(folder).as_posix()
        for dirpath, _, names in os.walk(folder)
        for name in names
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


# ---------------------------------------------------------------------------------------------
# Download
# ---------------------------------------------------------------------------------------------


class _ConnectionCut(Exception):
    """The body ended early or the connection broke mid-transfer (resumable)."""


def download(name: str, root: str | os.PathLike | None = None, progress: bool = True) -> Path:
    """Download the archive of dataset ``name`` (if it does not already verify); return its path.

    The archive lands at ``<data root>/<name>/<filename>`` (see :func:`fetch` for resuming,
    verification and errors).
    """
    spec = get_spec(name)
    base = data_root(root)
    return fetch(
        spec.resolved_url(),
        base / spec.name / spec.filename,
        verify=lambda path: verify_archive(spec, path),
        progress=progress,
        how_to_get=_how_to_get(spec, base),
    )


def fetch(
    url: str,
    target: Path,
    *,
    verify: Callable[[Path], None],
    progress: bool = True,
    how_to_get: str = "",
    attempts: int = 5,
    chunk_size: int = 1 << 18,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to ``target`` through ``<target>.part``; return ``target``.

    * A ``target`` that already passes ``verify`` is returned without any network access.
    * An existing ``.part`` is resumed with an HTTP ``Range`` request; a server that ignores
      ``Range`` (answers 200) restarts it from byte 0. A connection cut mid-transfer is
      resumed, up to ``attempts`` requests in all; after that the ``.part`` is kept so that
      running the command again resumes it.
    * The complete ``.part`` must pass ``verify`` (raising :class:`VerificationError`); it is
      then renamed to ``target`` atomically. On a verification failure the ``.part`` is
      DELETED (resuming onto corrupt bytes cannot succeed) and ``target`` is left untouched.
    * Offline, refused, DNS or HTTP errors raise :class:`DownloadError` naming the URL, the
      target and ``how_to_get``.
    """
    target = Path(target)
    if target.is_file():
        try:
            verify(target)
            return target
        except VerificationError:
            pass  # stale or corrupt: fetch a fresh copy; this one stays until that one verifies
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    for _ in range(attempts):
        try:
            _fetch_once(url, part, progress, chunk_size, timeout)
            break
        except (URLError, OSError, http.client.HTTPException) as error:
            raise DownloadError(
                f"cannot download {url} ({_describe(error)}).\n"
                f"It is needed at {target}.\n{how_to_get}"
            ) from error
        except _ConnectionCut:
            continue
    else:
        raise DownloadError(
            f"the connection to {url} was cut {attempts} times; the partial download is kept "
            f"in {part} and resumes when you run the same command again.\n{how_to_get}"
        )
    try:
        verify(part)
    except VerificationError as error:
        part.unlink()
        kept = f"; {target} was left as it was" if target.exists() else ""
        raise type(error)(f"{error}\nThe download was deleted{kept}.") from error
    os.replace(part, target)
    return target


def _describe(error: Exception) -> str:
    """``HTTP 404 Not Found`` or ``ConnectionRefusedError: [Errno 111] Connection refused``."""
    if isinstance(error, HTTPError):
        return f"HTTP {error.code} {error.reason}"
    reason = error.reason if isinstance(error, URLError) else error
    return f"{type(reason).__name__}: {reason}"


def _fetch_once(url: str, part: Path, progress: bool, chunk_size: int, timeout: float) -> None:
    """Append the rest of ``url`` to ``part`` (all of it when ``part`` is absent).

    Connection errors propagate as raised by urllib; a body cut short raises ``_ConnectionCut``.
    """
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except HTTPError as error:
        if error.code == 416 and offset:  # nothing after `offset`: the .part is complete
            error.close()
            return
        raise
    with response:
        if not (offset and response.status == 206 and _range_start(response) == offset):
            offset = 0  # a full answer (server ignored Range): start again from byte 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        received = 0
        with (
            open(part, "ab" if offset else "wb") as out,
            tqdm(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=part.name.removesuffix(".part"),
                disable=not progress,
            ) as bar,
        ):
            while True:
                try:
                    chunk = response.read(chunk_size)
                except (OSError, http.client.HTTPException) as error:
                    raise _ConnectionCut(str(error)) from error
                if not chunk:
                    break
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if total is not None and offset + received < total:
        raise _ConnectionCut(f"got {offset + received} of {total} bytes")


def _range_start(response: http.client.HTTPResponse) -> int | None:
    """First byte of a 206 answer, from ``Content-Range: bytes START-END/TOTAL``."""
    content_range = response.headers.get("Content-Range", "")
    unit, _, spans = content_range.partition(" ")
    start = spans.partition("-")[0]
    return int(start) if unit == "bytes" and start.isdigit() else None


# ---------------------------------------------------------------------------------------------
# Extraction
# ---------------------------------------------------------------------------------------------


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


def _extract_dataset(spec: DatasetSpec, archive: Path, parent: Path) -> Path:
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
    return _extract_dataset(spec, archive, parent)


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
            f"{spec.title}: {state}{folder} is not there.\n{_how_to_get(spec, base)}"
        )
    check_layout(spec, list_files(folder), where=str(folder))
    return [*verified, folder]


def archive_sha256(name: str, root: str | os.PathLike | None = None, progress: bool = True) -> str:
    """sha256 of the verified archive of ``name`` (downloaded if needed), to pin in REGISTRY."""
    return file_digest(download(name, root, progress), "sha256")


# ---------------------------------------------------------------------------------------------
# Where a dataset is
# ---------------------------------------------------------------------------------------------


def dataset_dir(
    name: str, profile: str | None = None, root: str | os.PathLike | None = None
) -> Path:
    """The folder of dataset ``name`` (e.g. ``.../15SceneData``) for ``profile``.

    ``root`` is a data root (default :func:`data_root`). In the smoke profile: the fixture copy
    ``<root>/fixtures/<name>/<folder>``, generated on first use. Otherwise the extracted real
    dataset ``<root>/<name>/<folder>``; :class:`DatasetMissingError` (naming the command to
    run) when it is absent.
    """
    spec = get_spec(name)
    base = data_root(root)
    if get_profile(profile).name == "smoke":
        return ensure_fixtures(base / "fixtures")[name]
    folder = base / spec.name / spec.folder
    if not folder.is_dir():
        raise DatasetMissingError(
            f"{spec.title} is not in {folder}.\n{_how_to_get(spec, base)}\n"
            "(or use the tiny offline fixtures: FEATURELAB_PROFILE=smoke)"
        )
    return folder


def _locate(name: str, profile: str | None, root: str | os.PathLike | None) -> Path:
    """A loader's ``root``: the dataset folder itself, its parent, or else a data root."""
    spec = get_spec(name)
    if root is not None:
        root = Path(root).expanduser().absolute()
        for candidate in (root, root / spec.folder, root / spec.name):
            if all((candidate / marker).exists() for marker in spec.markers()):
                return candidate
    return dataset_dir(name, profile, root)


# ---------------------------------------------------------------------------------------------
# Images and datasets
# ---------------------------------------------------------------------------------------------


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Decode the image at ``path`` fully and return it as a PIL ``RGB`` image.

    Handles greyscale (``L``), ``CMYK``, palette (with transparency) and alpha images, and PNG
    files named ``.jpg`` (the format is read from the content). PIL's warnings (odd metadata in
    real photos, palette transparency dropped) are silenced: a notebook test cell must not
    write to stderr.
    Raises ``OSError`` for an undecodable or truncated file.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")


class ImageListDataset(torch.utils.data.Dataset):
    """A list of image files with labels, with the torchvision ``ImageFolder`` interface.

    ``samples``: list of ``(path, label)``, the exact ordered file list (a feature cache can
    hash it); ``targets``: list[int]; ``classes``: list[str] (``classes[label]``);
    ``class_to_idx``; ``transform``; ``skipped``: unreadable files left out when the list was
    built. ``dataset[i] -> (transform(image), label)`` where ``image`` is a PIL RGB image
    (``transform=None``: the image itself). Picklable (DataLoader workers) when ``transform``
    is.
    """

    # Items are independent (open, decode, transform): featurelab.features may decode a batch
    # in several threads.
    thread_safe = True

    def __init__(
        self,
        samples: Iterable[tuple[str | os.PathLike, int]],
        classes: Sequence[str],
        transform: Callable | None = None,
        skipped: int = 0,
    ):
        self.samples = [(str(path), int(label)) for path, label in samples]
        self.targets = [label for _, label in self.samples]
        self.classes = list(classes)
        self.class_to_idx = {name: index for index, name in enumerate(self.classes)}
        self.transform = transform
        self.skipped = skipped

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        image = load_rgb(path)
        return (self.transform(image) if self.transform is not None else image), label

    def subset(self, indices: Iterable[int]) -> ImageListDataset:
        """A new dataset with the samples at ``indices`` (in that order), same classes/transform."""
        return ImageListDataset(
            [self.samples[int(i)] for i in indices], self.classes, self.transform, self.skipped
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({len(self)} images, {len(self.classes)} classes, "
            f"skipped={self.skipped}, transform={self.transform!r})"
        )


class CIFAR10Batches(CIFAR10):
    """torchvision's ``CIFAR10`` reading the python batches in ``folder`` (any folder name).

    The archive's md5 is checked at download, so the per-file md5 check torchvision repeats at
    every construction (reading 180 MB) is dropped: missing files are still an error, and the
    generated fixtures (same format, other bytes) load too. ``data``: ``(N, 32, 32, 3)`` uint8.
    """

    train_list = [[filename, None] for filename, _ in CIFAR10.train_list]
    test_list = [[filename, None] for filename, _ in CIFAR10.test_list]
    meta = {**CIFAR10.meta, "md5": None}

    def __init__(
        self,
        folder: str | os.PathLike,
        train: bool = True,
        transform: Callable | None = None,
        target_transform: Callable | None = None,
    ):
        folder = Path(folder)
        self.base_folder = folder.name
        super().__init__(folder.parent, train, transform, target_transform, download=False)


# ---------------------------------------------------------------------------------------------
# Stratified, seeded selections
# ---------------------------------------------------------------------------------------------


def _indices_per_class(targets: Sequence[int]) -> dict[int, list[int]]:
    by_class: dict[int, list[int]] = {}
    for index, label in enumerate(targets):
        by_class.setdefault(int(label), []).append(index)
    return dict(sorted(by_class.items()))


def stratified_indices(targets: Sequence[int], per_class: int, seed: int = 0) -> list[int]:
    """Sorted indices of ``per_class`` items drawn at random (seeded) from each class.

    A class with fewer items keeps all of them. ``targets``: the label of each item, (N,).
    """
    rng = random.Random(seed)
    chosen: list[int] = []
    for indices in _indices_per_class(targets).values():
        chosen += rng.sample(indices, min(per_class, len(indices)))
    return sorted(chosen)


def stratified_split(
    targets: Sequence[int], train_fraction: float = 0.8, seed: int = 0
) -> tuple[list[int], list[int]]:
    """Seeded stratified split: ``(train indices, test indices)``, each sorted, disjoint.

    Each class contributes ``round(train_fraction * n_class)`` items (halves round up) to train.
    """
    rng = random.Random(seed)
    train: list[int] = []
    test: list[int] = []
    for indices in _indices_per_class(targets).values():
        shuffled = rng.sample(indices, len(indices))
        cut = math.floor(train_fraction * len(indices) + 0.5)
        train += shuffled[:cut]
        test += shuffled[cut:]
    return sorted(train), sorted(test)


def _profile_subset(dataset, name: str, split: str, profile: str | None):
    """``dataset`` reduced to the profile's stratified subset for ``name``/``split`` (if any)."""
    prof = get_profile(profile)
    per_class = prof.per_class(name, split)
    if per_class is None:
        return dataset
    indices = stratified_indices(dataset.targets, per_class, prof.seed)
    if isinstance(dataset, ImageListDataset):
        return dataset.subset(indices)
    subset = torch.utils.data.Subset(dataset, indices)
    subset.classes = dataset.classes
    subset.targets = [dataset.targets[i] for i in indices]
    return subset


def _check_split(split: str) -> None:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")


# ---------------------------------------------------------------------------------------------
# Loaders
# ---------------------------------------------------------------------------------------------


def _image_files(folder: Path) -> list[os.DirEntry]:
    """Image files directly in ``folder``, sorted by name (other files, e.g. Thumbs.db, ignored)."""
    with os.scandir(folder) as entries:
        images = [
            entry
            for entry in entries
            if entry.is_file() and os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES
        ]
    return sorted(images, key=lambda entry: entry.name)


def _class_folders(folder: Path, classes: Sequence[str]) -> list[Path]:
    missing = [name for name in classes if not (folder / name).is_dir()]
    if missing:
        raise VerificationError(f"{folder} lacks the class folders {', '.join(missing)}")
    return [folder / name for name in classes]


def load_scene15(
    split: str,
    transform: Callable | None = None,
    profile: str | None = None,
    root: str | os.PathLike | None = None,
) -> ImageListDataset:
    """15 Scene ``split`` ("train": 1,500 images, "test": 2,985; 15 classes, alphabetical).

    Images are greyscale JPEGs converted to RGB. ``root``: None (:func:`dataset_dir` for
    ``profile``), the dataset folder itself (holding ``train/`` and ``test/``), its parent, or
    a data root. The grading profile keeps a seeded stratified subset.
    """
    _check_split(split)
    folder = _locate("scene15", profile, root) / split
    samples = [
        (os.path.abspath(entry.path), label)
        for label, class_folder in enumerate(_class_folders(folder, SCENE15_CLASSES))
        for entry in _image_files(class_folder)
    ]
    dataset = ImageListDataset(samples, SCENE15_CLASSES, transform)
    return _profile_subset(dataset, "scene15", split, profile)


def load_petimages(
    split: str,
    transform: Callable | None = None,
    profile: str | None = None,
    root: str | os.PathLike | None = None,
    seed: int = 0,
    *,
    progress: bool = True,
) -> ImageListDataset:
    """Microsoft PetImages ``split`` of a seeded stratified 80/20 split; Cat = 0, Dog = 1.

    Zero-byte and undecodable files are left out and counted in ``.skipped`` (over the whole
    folder), and a one-line summary is printed to stdout. Finding them decodes every image
    once (progress bar unless ``progress=False``); the result is cached in a small JSON
    manifest (see :func:`scan_images`). ``root``: as for :func:`load_scene15` (a folder holding
    ``Cat/`` and ``Dog/``, its parent, or a data root).
    """
    _check_split(split)
    folder = _locate("petimages", profile, root)
    readable, unreadable = scan_images(folder, PETIMAGES_CLASSES, progress=progress)
    shown = ", ".join(list(unreadable)[:5]) + (", ..." if len(unreadable) > 5 else "")
    print(
        f"PetImages: {len(readable):,} readable images in {folder}; skipped {len(unreadable)} "
        f"unreadable (zero-byte or undecodable){': ' + shown if unreadable else ''}"
    )
    dataset = ImageListDataset(readable, PETIMAGES_CLASSES, transform, skipped=len(unreadable))
    train, test = stratified_split(dataset.targets, 0.8, seed)
    dataset = dataset.subset(train if split == "train" else test)
    return _profile_subset(dataset, "petimages", split, profile)


def load_cifar10(
    train: bool,
    transform: Callable | None = None,
    profile: str | None = None,
    root: str | os.PathLike | None = None,
) -> CIFAR10Batches | torch.utils.data.Subset:
    """CIFAR-10 train (50,000) or test (10,000) images, 32x32 RGB, torchvision's ``CIFAR10``.

    The grading profile returns a ``torch.utils.data.Subset`` (``.indices``) with ``.classes``
    and ``.targets`` set. ``root``: as for :func:`load_scene15` (the ``cifar-10-batches-py``
    folder, its parent, or a data root).
    """
    if not isinstance(train, bool):
        raise TypeError(f"train must be True or False, not {train!r}")
    dataset = CIFAR10Batches(_locate("cifar10", profile, root), train=train, transform=transform)
    return _profile_subset(dataset, "cifar10", "train" if train else "test", profile)


# ---------------------------------------------------------------------------------------------
# Scanning for unreadable images, with a manifest cache
# ---------------------------------------------------------------------------------------------

MANIFEST_FORMAT = 1


def scan_images(
    folder: Path, classes: Sequence[str], progress: bool = True
) -> tuple[list[tuple[str, int]], dict[str, str]]:
    """Sort the images of ``folder/<class>/`` into readable and unreadable ones.

    Returns ``(readable, unreadable)``: ``readable`` a list of ``(absolute path, label)`` in
    class then file-name order; ``unreadable`` maps each left-out file (relative POSIX path) to
    the reason (zero bytes, or the decoding error: every image is fully decoded once, so a
    truncated JPEG cannot crash an epoch later). The result is cached in a JSON manifest (see
    ``_manifest_path``), keyed by every file's name, size and mtime: any change rescans.
    """
    folder = Path(folder).absolute()
    files = [
        (Path(class_folder.name, entry.name).as_posix(), label, entry.stat())
        for label, class_folder in enumerate(_class_folders(folder, classes))
        for entry in _image_files(class_folder)
    ]
    signature = hashlib.sha256(
        "".join(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n" for rel, _, st in files).encode()
    ).hexdigest()
    manifest_path = _manifest_path(folder)
    manifest = _read_manifest(manifest_path, signature)
    if manifest is None:
        manifest = {"format": MANIFEST_FORMAT, "signature": signature, "unreadable": {}}
        for rel, _, st in tqdm(
            files, desc=f"Checking {folder.name}", unit="img", disable=not progress
        ):
            reason = _unreadable_reason(folder / rel, st.st_size)
            if reason is not None:
                manifest["unreadable"][rel] = reason
        _write_manifest(manifest_path, manifest)
    unreadable = manifest["unreadable"]
    readable = [(str(folder / rel), label) for rel, label, _ in files if rel not in unreadable]
    return readable, unreadable


def _unreadable_reason(path: Path, size: int) -> str | None:
    if size == 0:
        return "zero bytes"
    try:
        load_rgb(path)
    except Exception as error:  # any failure to decode (PIL raises many kinds) = unreadable
        return f"{type(error).__name__}: {error}"
    return None


def _manifest_path(folder: Path) -> Path:
    """``<folder>.manifest.json`` next to ``folder`` when featurelab owns the place (inside the
    data root, or a generated fixture tree), else ``<data root>/manifests/<folder>-<hash>.json``:
    featurelab never writes into a folder it was only pointed at (shared or read-only data)."""
    base = data_root()
    if folder.is_relative_to(base) or _fixtures_version(folder.parent.parent) is not None:
        return folder.parent / f"{folder.name}.manifest.json"
    key = hashlib.sha256(str(folder).encode()).hexdigest()[:16]
    return base / "manifests" / f"{folder.name}-{key}.json"


def _read_manifest(path: Path, signature: str) -> dict | None:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if manifest.get("format") == MANIFEST_FORMAT and manifest.get("signature") == signature:
        return manifest
    return None


def _write_manifest(path: Path, manifest: dict) -> None:
    """Write ``manifest`` atomically; a place that cannot be written means no cache, no error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(path, json.dumps(manifest, indent=1, sort_keys=True).encode("utf-8"))
    except OSError:
        pass


def _write_atomically(path: Path, content: bytes) -> None:
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(content)
        os.chmod(temporary, 0o644)  # mkstemp's 0o600 would hide it from other users
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


# ---------------------------------------------------------------------------------------------
# Fixtures: tiny deterministic datasets in the real on-disk layouts
# ---------------------------------------------------------------------------------------------

FIXTURES_VERSION = "2"
# Images per class in each fixture split. PetImages also holds 3 unreadable files (below).
FIXTURE_COUNTS = {
    "scene15": {"train": 4, "test": 2},
    "petimages": {"readable": 12},
    "cifar10": {"train": 8, "test": 4},
}
# PetImages fixture oddities: name -> what it is. The unreadable ones mirror the real archive's
# zero-byte Cat/666.jpg and Dog/11702.jpg.
FIXTURE_PETIMAGES_ODD = {
    "Cat/3.jpg": "greyscale (L) JPEG",
    "Cat/8.jpg": "palette PNG with alpha (tRNS bytes), named .jpg",
    "Dog/4.jpg": "CMYK JPEG",
    "Cat/666.jpg": "zero bytes (unreadable)",
    "Dog/11702.jpg": "zero bytes (unreadable)",
    "Dog/12.jpg": "truncated JPEG (unreadable)",
}
_JPEG = {"format": "JPEG", "quality": 90}

_ODDITIES = "\n".join(f"      {name:14} {what}" for name, what in FIXTURE_PETIMAGES_ODD.items())
_FIXTURE_README = f"""\
featurelab test fixtures (version {FIXTURES_VERSION}) -- GENERATED, NOT REAL DATA.

Tiny deterministic datasets in the exact on-disk layouts of the real ones, for tests, CI and
the offline demo (smoke profile). Regenerate with:  python data_scripts/make_fixtures.py

scene15/15SceneData/{{train,test}}/<Class>/image_NNNN.jpg
    15 classes, 4 train + 2 test greyscale JPEGs per class, 64-96 px. Class cue: stripe
    orientation (5 angles, 36 degrees apart) x stripe period (3 periods), plus noise.
petimages/PetImages/{{Cat,Dog}}/N.jpg
    12 readable images per class, 64-128 px. Cue: Cat orange with horizontal stripes, Dog blue
    with vertical stripes, plus noise. A Thumbs.db per class folder (not an image, ignored),
    as in the real archive, and these oddities:
{_ODDITIES}
cifar10/cifar-10-batches-py/
    data_batch_1..5, test_batch, batches.meta: pickles with the real keys and types (Python 2
    strings, b'data' uint8 (N, 3072)); 8 train (spread over the 5 batches) + 4 test 32x32
    images per class. Cue: one hue per class (36 degrees apart) and stripe orientation.
"""


def fixture_paths(root: str | os.PathLike) -> dict[str, Path]:
    """Dataset folders inside a fixture root: ``{name: root/<name>/<folder>}``."""
    root = Path(root)
    return {name: root / name / spec.folder for name, spec in REGISTRY.items()}


def make_fixtures(root: str | os.PathLike) -> dict[str, Path]:
    """Write the three fixture datasets (and a README.txt) under ``root``; return their folders.

    Deterministic: the same bytes on every run. See ``FIXTURE_COUNTS``, ``FIXTURE_PETIMAGES_ODD``
    and the README text for sizes and the visual cue of each class. Overwrites files in place;
    :func:`ensure_fixtures` builds them atomically.
    """
    root = Path(root)
    paths = fixture_paths(root)
    _make_scene15_fixture(paths["scene15"])
    _make_petimages_fixture(paths["petimages"])
    _make_cifar10_fixture(paths["cifar10"])
    (root / "README.txt").write_text(_FIXTURE_README, encoding="utf-8")
    (root / "VERSION").write_text(FIXTURES_VERSION, encoding="utf-8")
    return paths


def ensure_fixtures(root: str | os.PathLike) -> dict[str, Path]:
    """The fixture folders under ``root``, generated first if absent or from another version.

    Built in a temporary sibling folder and renamed into place, so two processes racing here
    both end up with one complete copy.
    """
    root = Path(root).absolute()
    if _fixtures_version(root) != FIXTURES_VERSION:
        root.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.building-", dir=root.parent))
        staging.chmod(0o755)  # mkdtemp's 0o700 would hide the fixtures from other users
        try:
            make_fixtures(staging)
            try:
                os.rename(staging, root)
            except OSError:  # root exists: another process won the race, or an old version
                if _fixtures_version(root) != FIXTURES_VERSION:
                    old = root.with_name(f".{root.name}.old-{os.getpid()}")
                    os.rename(root, old)
                    os.rename(staging, root)
                    shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return fixture_paths(root)


def _fixtures_version(root: Path) -> str | None:
    try:
        return (root / "VERSION").read_text(encoding="utf-8").strip()
    except OSError:
        return None


def _stripes(rng: np.random.Generator, height: int, width: int, angle: float, period: float):
    """Sinusoidal stripes in [0, 1], ``(height, width)`` float, random phase."""
    y, x = np.mgrid[0:height, 0:width]
    theta = math.radians(angle)
    phase = rng.uniform(0, 2 * math.pi)
    return 0.5 + 0.5 * np.sin(
        2 * math.pi * (x * math.cos(theta) + y * math.sin(theta)) / period + phase
    )


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(values * 255), 0, 255).astype(np.uint8)


def _coloured_stripes(rng, height, width, hue, angle, period, noise) -> np.ndarray:
    """RGB stripes of one hue plus Gaussian noise: ``(height, width, 3)`` uint8."""
    colour = np.array(colorsys.hsv_to_rgb(hue % 1.0, 0.75, 0.9))
    shade = 0.35 + 0.65 * _stripes(rng, height, width, angle, period)
    return _to_uint8(shade[..., None] * colour + rng.normal(0, noise, (height, width, 3)))


def _jpeg_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, **_JPEG)
    return buffer.getvalue()


def _make_scene15_fixture(folder: Path) -> None:
    rng = np.random.default_rng(15)
    number = 0
    for split in ("train", "test"):
        for label, name in enumerate(SCENE15_CLASSES):
            (folder / split / name).mkdir(parents=True, exist_ok=True)
            angle, period = (label % 5) * 36.0, (5.0, 9.0, 16.0)[label // 5]
            for _ in range(FIXTURE_COUNTS["scene15"][split]):
                height, width = (int(v) for v in rng.integers(64, 97, size=2))
                grey = 0.15 + 0.7 * _stripes(rng, height, width, angle, period)
                pixels = _to_uint8(grey + rng.normal(0, 0.08, (height, width)))
                number += 1
                Image.fromarray(pixels, "L").save(
                    folder / split / name / f"image_{number:04d}.jpg", **_JPEG
                )


def _make_petimages_fixture(folder: Path) -> None:
    rng = np.random.default_rng(5340)

    def photo(label: int) -> Image.Image:
        height, width = (int(v) for v in rng.integers(64, 129, size=2))
        hue, angle = ((0.07, 90.0), (0.6, 0.0))[
            label
        ]  # Cat: orange, horizontal; Dog: blue, vertical
        hue += rng.uniform(-0.03, 0.03)
        return Image.fromarray(
            _coloured_stripes(rng, height, width, hue, angle, rng.uniform(8, 16), 0.06), "RGB"
        )

    for label, name in enumerate(PETIMAGES_CLASSES):
        (folder / name).mkdir(parents=True, exist_ok=True)
        (folder / name / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0 Windows thumbnail cache\n")
        for number in range(FIXTURE_COUNTS["petimages"]["readable"]):
            image, path = photo(label), folder / name / f"{number}.jpg"
            odd = FIXTURE_PETIMAGES_ODD.get(f"{name}/{number}.jpg", "")
            if odd.startswith("greyscale"):
                image.convert("L").save(path, **_JPEG)
            elif odd.startswith("palette"):
                image.quantize(colors=32, method=Image.Quantize.MEDIANCUT).save(
                    path, format="PNG", transparency=bytes([0, 128] + [255] * 30)
                )
            elif odd.startswith("CMYK"):
                image.convert("CMYK").save(path, **_JPEG)
            else:
                image.save(path, **_JPEG)
    for relpath, what in FIXTURE_PETIMAGES_ODD.items():
        if what.startswith("zero bytes"):
            (folder / relpath).write_bytes(b"")
        elif what.startswith("truncated"):
            data = _jpeg_bytes(photo(PETIMAGES_CLASSES.index(relpath.split("/")[0])))
            (folder / relpath).write_bytes(data[: len(data) // 2])


class _Py2Str(bytes):
    """Bytes pickled as a Python 2 ``str``, as in the real CIFAR-10 batches: they load as
    ``str`` with ``encoding="latin1"`` (torchvision) and as ``bytes`` with ``encoding="bytes"``
    (the CIFAR-10 web page's recipe)."""


class _Py2Pickler(pickle._Pickler):  # the pure-Python pickler: its dispatch table is extensible
    dispatch = pickle._Pickler.dispatch.copy()

    def _save_py2_str(self, obj: _Py2Str) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[_Py2Str] = _save_py2_str


def _write_cifar_pickle(path: Path, entries: dict) -> None:
    buffer = io.BytesIO()
    _Py2Pickler(buffer, protocol=2).dump(
        {_Py2Str(key.encode()): value for key, value in entries.items()}
    )
    path.write_bytes(buffer.getvalue())


def _make_cifar10_fixture(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(10)
    batches = {"train": 5, "test": 1}
    for split, count in FIXTURE_COUNTS["cifar10"].items():
        labels = [label for label in range(10) for _ in range(count)]
        labels = [labels[i] for i in rng.permutation(len(labels))]
        images = np.stack(
            [
                _coloured_stripes(rng, 32, 32, label / 10, (label % 5) * 36.0, 6.0, 0.05)
                for label in labels
            ]
        )
        rows = images.transpose(0, 3, 1, 2).reshape(len(labels), 3072)  # R plane, G, B (row-major)
        names = [f"{CIFAR10_CLASSES[label]}_s_{i:06d}.png" for i, label in enumerate(labels)]
        size = len(labels) // batches[split]
        for number in range(batches[split]):
            part = slice(number * size, (number + 1) * size)
            filename = f"data_batch_{number + 1}" if split == "train" else "test_batch"
            description = "training batch" if split == "train" else "testing batch"
            _write_cifar_pickle(
                folder / filename,
                {
                    "batch_label": _Py2Str(
                        f"{description} {number + 1} of {batches[split]}".encode()
                    ),
                    "labels": labels[part],
                    "data": np.ascontiguousarray(rows[part]),
                    "filenames": [_Py2Str(name.encode()) for name in names[part]],
                },
            )
    _write_cifar_pickle(
        folder / "batches.meta",
        {
            "num_cases_per_batch": 10 * FIXTURE_COUNTS["cifar10"]["train"] // batches["train"],
            "label_names": [_Py2Str(name.encode()) for name in CIFAR10_CLASSES],
            "num_vis": 3072,
        },
    )
