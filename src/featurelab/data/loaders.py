"""Images and datasets: decoding, the loaders, seeded stratified subsets, and the scan that
finds unreadable images (cached in a small JSON manifest)."""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch
from PIL import Image
from torchvision.datasets import CIFAR10
from tqdm.auto import tqdm

from .._io import atomic_write_json
from .._log import get_logger, report
from ..profiles import Profile
from .fixtures import fixtures_version
from .prepare import _get_profile, locate
from .registry import (
    IMAGE_SUFFIXES,
    PETIMAGES_CLASSES,
    SCENE15_CLASSES,
    VerificationError,
    data_root,
)

log = get_logger(__name__)


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


def _profile_subset(dataset, name: str, split: str, profile: str | Profile | None):
    """``dataset`` reduced to the profile's stratified subset for ``name``/``split`` (if any)."""
    prof = _get_profile(profile)
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
    profile: str | Profile | None = None,
    root: str | os.PathLike | None = None,
) -> ImageListDataset:
    """15 Scene ``split`` ("train": 1,500 images, "test": 2,985; 15 classes, alphabetical).

    Images are greyscale JPEGs converted to RGB. ``root``: None (:func:`dataset_dir` for
    ``profile``), the dataset folder itself (holding ``train/`` and ``test/``), its parent, or
    a data root. The grading profile keeps a seeded stratified subset.
    """
    _check_split(split)
    folder = locate("scene15", profile, root) / split
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
    profile: str | Profile | None = None,
    root: str | os.PathLike | None = None,
    seed: int = 0,
    *,
    progress: bool = True,
) -> ImageListDataset:
    """Microsoft PetImages ``split`` of a seeded stratified 80/20 split; Cat = 0, Dog = 1.

    Zero-byte and undecodable files are left out and counted in ``.skipped`` (over the whole
    folder). With ``progress=True`` a progress bar shows the first scan and a one-line summary
    (counts and the first unreadable files) goes to the ``featurelab`` logger (printed to
    stdout by default, see :mod:`featurelab._log`); ``progress=False``: silent. Finding them
    decodes every image once; the result is cached in a small JSON manifest (see
    :func:`scan_images`). ``root``: as for :func:`load_scene15` (a folder holding
    ``Cat/`` and ``Dog/``, its parent, or a data root).
    """
    _check_split(split)
    folder = locate("petimages", profile, root)
    readable, unreadable = scan_images(folder, PETIMAGES_CLASSES, progress=progress)
    shown = ", ".join(list(unreadable)[:5]) + (", ..." if len(unreadable) > 5 else "")
    report(
        log,
        "PetImages: %s readable images in %s; skipped %d unreadable (zero-byte or undecodable)%s",
        f"{len(readable):,}",
        folder,
        len(unreadable),
        ": " + shown if unreadable else "",
        progress=progress,
    )
    dataset = ImageListDataset(readable, PETIMAGES_CLASSES, transform, skipped=len(unreadable))
    train, test = stratified_split(dataset.targets, 0.8, seed)
    dataset = dataset.subset(train if split == "train" else test)
    return _profile_subset(dataset, "petimages", split, profile)


def load_cifar10(
    train: bool,
    transform: Callable | None = None,
    profile: str | Profile | None = None,
    root: str | os.PathLike | None = None,
) -> CIFAR10Batches | torch.utils.data.Subset:
    """CIFAR-10 train (50,000) or test (10,000) images, 32x32 RGB, torchvision's ``CIFAR10``.

    The grading profile returns a ``torch.utils.data.Subset`` (``.indices``) with ``.classes``
    and ``.targets`` set. ``root``: as for :func:`load_scene15` (the ``cifar-10-batches-py``
    folder, its parent, or a data root).
    """
    if not isinstance(train, bool):
        raise TypeError(f"train must be True or False, not {train!r}")
    dataset = CIFAR10Batches(locate("cifar10", profile, root), train=train, transform=transform)
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
    if folder.is_relative_to(base) or fixtures_version(folder.parent.parent) is not None:
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
        atomic_write_json(path, manifest, indent=1, sort_keys=True)
    except OSError:
        pass
