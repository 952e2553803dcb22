"""On-disk cache of extracted features: the file format, and where the cache folders are.

A cache entry is one file ``<cache dir>/<key>.features`` holding a ``(N, *D)`` float32 array
and the ``(N,)`` int64 labels; ``<key>`` is 64 hex digits computed by the caller
(:func:`featurelab.fingerprint.make_key`: what the features depend on). This module only
reads and writes such files: :func:`store`, :func:`load` (:func:`lookup` over several
folders), :func:`cache_info`, :func:`clear_cache`.

Two folders:

* the **read-write cache**: ``$FEATURELAB_CACHE`` if set (``0``/``off``/``false``/``none``
  disable caching everywhere), else ``featurelab.data.data_root() / "cache"``. New entries
  are written here only. If it cannot be written (read-only, full, a file in the way),
  extraction still works: one warning per folder through the ``featurelab`` logger.
* the optional **shared cache**: ``$FEATURELAB_SHARED_CACHE`` names a folder that is only
  ever READ (e.g. a cache an instructor built once, mounted read-only into the grading
  sandbox). :func:`lookup` tries it first. A missing, unreadable, corrupt or half-written
  entry there is a miss, never an error; nothing is ever written, renamed or deleted in it.

Writes are atomic and safe with concurrent writers (several grading workers, several
machines sharing a folder over NFS): each writer writes its own uniquely named temporary file
in the same folder, ``fsync``s it and renames it into place (``os.replace``, see
:mod:`featurelab._io`); the last complete write wins and every version is complete. A reader
never trusts a file it has not checked: each file carries a header with its key, shapes, byte
offsets, total size and a CRC-32 of the payload; a truncated, corrupt or foreign file is
treated as absent (and rewritten in the read-write cache), never returned. Reads are
memory-mapped (copy-on-write: the returned tensors are writable and leave the file untouched).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import struct
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import _io
from ._log import get_logger, warn_once

log = get_logger(__name__)

CACHE_ENV = "FEATURELAB_CACHE"
SHARED_CACHE_ENV = "FEATURELAB_SHARED_CACHE"
CACHE_FORMAT = 1
SUFFIX = ".features"
_MAGIC = b"FLFEAT01"
_ALIGN = 64
_MAX_HEADER = 1 << 20
_DISABLED_VALUES = {"0", "off", "false", "no", "none", "disabled"}
_KEY = r"[0-9a-f]{64}"


# ---------------------------------------------------------------------------------------------
# Where the cache lives
# ---------------------------------------------------------------------------------------------


def cache_disabled_by_env() -> bool:
    """True when ``$FEATURELAB_CACHE`` is one of ``0 off false no none disabled``."""
    return os.environ.get(CACHE_ENV, "").strip().lower() in _DISABLED_VALUES


def default_cache_dir() -> Path:
    """``$FEATURELAB_CACHE``, else ``featurelab.data.data_root() / "cache"`` (absolute).

    Falls back to ``<repo>/data/cache`` (or ``~/.cache/featurelab/data/cache`` outside a
    checkout) if ``featurelab.data`` cannot be imported.
    """
    from_env = os.environ.get(CACHE_ENV, "").strip()
    if from_env and from_env.lower() not in _DISABLED_VALUES:
        return Path(from_env).expanduser().absolute()
    try:
        from .data import data_root
    except ImportError:  # featurelab.data missing or broken: same rule, written out here
        repo = Path(__file__).resolve().parents[2]
        if (repo / "pyproject.toml").is_file():
            return repo / "data" / "cache"
        return Path.home() / ".cache" / "featurelab" / "data" / "cache"
    return data_root() / "cache"


def shared_cache_dir() -> Path | None:
    """The read-only shared cache folder, ``$FEATURELAB_SHARED_CACHE`` (None when unset/off)."""
    from_env = os.environ.get(SHARED_CACHE_ENV, "").strip()
    if not from_env or from_env.lower() in _DISABLED_VALUES:
        return None
    return Path(from_env).expanduser().absolute()


# ---------------------------------------------------------------------------------------------
# Entries on disk
# ---------------------------------------------------------------------------------------------


def entry_path(directory: str | os.PathLike, key: str) -> Path:
    """The file of entry ``key`` in ``directory``."""
    if not re.fullmatch(_KEY, key):
        raise ValueError(f"a cache key is 64 hex digits, not {key!r}")
    return Path(directory) / f"{key}{SUFFIX}"


def _aligned(offset: int) -> int:
    return -(-offset // _ALIGN) * _ALIGN


def _crc(arrays: list[np.ndarray]) -> int:
    crc = 0
    for array in arrays:
        view = memoryview(array).cast("B") if array.nbytes else b""
        crc = zlib.crc32(view, crc)
    return crc


def store(
    directory: str | os.PathLike,
    key: str,
    features: torch.Tensor,
    labels: torch.Tensor,
    info: dict[str, Any] | None = None,
) -> Path | None:
    """Write entry ``key`` atomically; return its path, or None if it could not be written.

    ``features``: ``(N, *D)`` float32; ``labels``: ``(N,)`` int64 (both on CPU). Failures
    (read-only or full disk, permissions, a file in the way) are reported once per folder and
    process (a WARNING of the ``featurelab.cache`` logger) and otherwise ignored: the cache is
    an optimisation, extraction results are returned either way.
    """
    path = entry_path(directory, key)
    feature_array = np.ascontiguousarray(features.detach().cpu().numpy())
    label_array = np.ascontiguousarray(labels.detach().cpu().numpy())
    header: dict[str, Any] = {
        "format": CACHE_FORMAT,
        "key": key,
        "created": time.time(),
        "info": info or {},
        "arrays": {},
        "crc32": _crc([feature_array, label_array]),
    }
    # Offsets depend on the header length, which depends on the offsets' digits: fix point.
    offset_guess = 0
    for _ in range(4):
        offset = _aligned(16 + offset_guess)
        arrays = {}
        for name, array in (("features", feature_array), ("labels", label_array)):
            arrays[name] = {
                "dtype": array.dtype.str,
                "shape": list(array.shape),
                "offset": offset,
                "nbytes": array.nbytes,
            }
            offset = _aligned(offset + array.nbytes)
        header["arrays"] = arrays
        header["size"] = arrays["labels"]["offset"] + label_array.nbytes
        encoded = json.dumps(header).encode()
        if len(encoded) <= offset_guess:
            break
        offset_guess = len(encoded) + 64
    encoded = encoded.ljust(offset_guess, b" ")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _io.atomic_writer(path) as file:
            file.write(_MAGIC + struct.pack("<Q", len(encoded)) + encoded)
            for name, array in (("features", feature_array), ("labels", label_array)):
                file.seek(header["arrays"][name]["offset"])
                if array.nbytes:
                    file.write(memoryview(array).cast("B"))
            file.truncate(header["size"])
        return path
    except OSError as error:
        warn_once(
            log,
            str(Path(directory).absolute()),
            "feature cache: cannot write to %s (%s); features are computed but not saved. "
            "Set FEATURELAB_CACHE to a writable folder (or to off).",
            Path(directory).absolute(),
            f"{type(error).__name__}: {error}",
        )
        return None


def read_header(path: str | os.PathLike) -> dict[str, Any] | None:
    """The header of a cache file, or None if the file is not a readable cache entry."""
    try:
        with open(path, "rb") as file:
            start = file.read(16)
            if len(start) != 16 or start[:8] != _MAGIC:
                return None
            (length,) = struct.unpack("<Q", start[8:])
            if length > _MAX_HEADER:
                return None
            header = json.loads(file.read(length))
    except (OSError, ValueError):
        return None
    return header if isinstance(header, dict) else None


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a folder we may not look into (permissions, stale NFS handle)
        return False


def load(directory: str | os.PathLike, key: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Entry ``key`` as ``(features (N, *D) float32, labels (N,) int64)``, or None.

    None when the entry is absent or invalid (wrong magic, key, size, shapes or checksum):
    an invalid file is never returned; the caller recomputes and overwrites it. The arrays
    are memory-mapped copy-on-write (writing to the tensors does not touch the file).
    """
    path = entry_path(directory, key)
    header = read_header(path)
    if header is None:
        if _exists(path):
            log.debug("feature cache: %s is not a valid entry; recomputing", path)
        return None
    try:
        if header.get("key") != key or header.get("format") != CACHE_FORMAT:
            return None
        if os.path.getsize(path) != header["size"]:
            log.debug("feature cache: %s is truncated; recomputing", path)
            return None
        arrays = []
        for name in ("features", "labels"):
            spec = header["arrays"][name]
            dtype, shape = np.dtype(spec["dtype"]), tuple(spec["shape"])
            if spec["nbytes"] != dtype.itemsize * int(np.prod(shape, dtype=np.int64)):
                return None
            if spec["nbytes"] == 0:
                arrays.append(np.empty(shape, dtype))
            else:
                arrays.append(
                    np.memmap(path, dtype=dtype, mode="c", offset=spec["offset"], shape=shape)
                )
        if _crc(arrays) != header["crc32"]:
            log.debug("feature cache: checksum mismatch in %s; recomputing", path)
            return None
    except (OSError, ValueError, KeyError, TypeError) as error:
        log.debug("feature cache: cannot read %s (%s); recomputing", path, error)
        return None
    features, labels = (torch.from_numpy(array) for array in arrays)
    if features.dtype != torch.float32 or labels.dim() != 1 or len(labels) != len(features):
        return None
    return features, labels


def lookup(
    key: str, directories: list[str | os.PathLike | None]
) -> tuple[torch.Tensor, torch.Tensor, Path] | None:
    """The first valid entry ``key`` in ``directories`` (in order; None items skipped), as
    ``(features, labels, folder it came from)``, or None.

    Only reads: an absent, unreadable, corrupt or half-written entry in one folder (or a
    folder that does not exist) is a miss there, and the next folder is tried.
    """
    for directory in directories:
        if directory is None:
            continue
        hit = load(directory, key)
        if hit is not None:
            log.debug("feature cache: hit %s in %s", key[:12], directory)
            return hit[0], hit[1], Path(directory)
    return None


# ---------------------------------------------------------------------------------------------
# Maintenance
# ---------------------------------------------------------------------------------------------


def _is_leftover(name: str) -> bool:
    """A temporary file of an interrupted :func:`store` (this version's or the previous one's)."""
    return _io.is_temporary_name(name, _KEY + re.escape(SUFFIX)) or bool(
        re.fullmatch(rf"\.{_KEY}\.\d+\.\w+\.tmp", name)
    )


def _resolve_dir(directory: str | os.PathLike | None) -> Path:
    return Path(directory).expanduser().absolute() if directory else default_cache_dir()


def cache_info(directory: str | os.PathLike | None = None) -> dict[str, Any]:
    """Summary of the cache folder: ``{"directory", "entries", "bytes", "items"}``.

    ``items``: one dict per entry (``file``, ``bytes``, ``created``, ``shape`` and the
    extraction settings recorded at write time), newest first; invalid files are counted in
    ``"invalid"`` and left alone.
    """
    folder = _resolve_dir(directory)
    items, invalid, total = [], 0, 0
    for path in sorted(folder.glob(f"*{SUFFIX}")) if folder.is_dir() else []:
        header = read_header(path)
        size = path.stat().st_size
        total += size
        if header is None or header.get("size") != size:
            invalid += 1
            continue
        items.append(
            {
                "file": path.name,
                "bytes": size,
                "created": header.get("created"),
                "shape": header.get("arrays", {}).get("features", {}).get("shape"),
                **header.get("info", {}),
            }
        )
    items.sort(key=lambda item: item.get("created") or 0, reverse=True)
    return {
        "directory": str(folder),
        "entries": len(items),
        "invalid": invalid,
        "bytes": total,
        "items": items,
    }


def clear_cache(directory: str | os.PathLike | None = None) -> int:
    """Delete the cache entries (``*.features``) and leftover temporary files; return how many.

    Only files this module writes are removed, never the folder or anything else in it.
    """
    folder = _resolve_dir(directory)
    if not folder.is_dir():
        return 0
    removed = 0
    for path in list(folder.glob(f"*{SUFFIX}")) + list(folder.glob(".*.tmp")):
        if path.name.endswith(".tmp") and not _is_leftover(path.name):
            continue
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            pass
    return removed


# ---------------------------------------------------------------------------------------------
# Names that moved to featurelab.fingerprint (kept importable from here)
# ---------------------------------------------------------------------------------------------

_MOVED = {
    "fingerprint_module",
    "fingerprint_dataset",
    "dataset_fingerprint_and_first_item",
    "make_key",
    "tensor_digests",
    "structure_token",
    "probe_output",
    "module_device",
    "is_training",
    "PROBE_BATCH",
    "PROBE_SEED",
}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        return getattr(importlib.import_module(f"{__package__}.fingerprint"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
