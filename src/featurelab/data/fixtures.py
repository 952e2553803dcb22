"""Fixtures: tiny deterministic datasets in the real on-disk layouts (smoke profile, CI)."""

from __future__ import annotations

import colorsys
import io
import math
import os
import pickle
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from .registry import CIFAR10_CLASSES, PETIMAGES_CLASSES, REGISTRY, SCENE15_CLASSES

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
the offline demo (smoke profile). Regenerate with:  python -m featurelab.data fixtures

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
    if fixtures_version(root) != FIXTURES_VERSION:
        root.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.building-", dir=root.parent))
        staging.chmod(0o755)  # mkdtemp's 0o700 would hide the fixtures from other users
        try:
            make_fixtures(staging)
            try:
                os.rename(staging, root)
            except OSError:  # root exists: another process won the race, or an old version
                if fixtures_version(root) != FIXTURES_VERSION:
                    old = root.with_name(f".{root.name}.old-{os.getpid()}")
                    os.rename(root, old)
                    os.rename(staging, root)
                    shutil.rmtree(old, ignore_errors=True)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return fixture_paths(root)


def fixtures_version(root: Path) -> str | None:
    """The ``VERSION`` of the fixture tree at ``root`` (None: not a fixture tree)."""
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
