"""Atomic file writes: a reader sees the old file or the new one, never half of either.

Every writer goes through :func:`atomic_writer`: the content is written to a temporary file in
the target's own folder (same file system, so the final rename is atomic), flushed and
``fsync``-ed, then renamed over the target with ``os.replace`` (atomic on POSIX, on Windows
and on NFS, where the rename is one server operation). Two processes writing the same target
at once each write their own temporary file (unique ``mkstemp`` name, ``O_EXCL``): the last
rename wins and both versions are complete. On any error the temporary file is removed and
the target is left as it was.

Temporary files are named ``.<target name>.<random>.tmp`` (hidden, next to the target), so a
crashed writer's leftovers are easy to recognise and clean (:func:`is_temporary_name`).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

TEMP_SUFFIX = ".tmp"
# mkstemp's 0o600 would hide shared files (data manifests, cache entries) from other users.
DEFAULT_PERMISSIONS = 0o644


@contextmanager
def atomic_writer(
    path: str | os.PathLike,
    *,
    binary: bool = True,
    permissions: int | None = DEFAULT_PERMISSIONS,
    encoding: str = "utf-8",
) -> Iterator[IO]:
    """Open a temporary file next to ``path``; on a clean exit it replaces ``path`` atomically.

    Yields the open file (``binary``: bytes, else text in ``encoding``); the caller may write
    and seek freely. ``permissions``: mode given to the file (``None``: keep ``mkstemp``'s
    0o600). The parent folder must exist. Errors propagate (``OSError`` for an unwritable or
    full disk); the temporary file never survives an error.
    """
    path = Path(path)
    handle, temporary = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent
    )
    try:
        mode = "wb" if binary else "w"
        with os.fdopen(handle, mode, **({} if binary else {"encoding": encoding})) as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        if permissions is not None:
            os.chmod(temporary, permissions)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    """Make the rename durable (best effort: not every OS or file system supports it)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def atomic_write_bytes(
    path: str | os.PathLike, content: bytes, *, permissions: int | None = DEFAULT_PERMISSIONS
) -> None:
    """Write ``content`` to ``path`` atomically (see :func:`atomic_writer`)."""
    with atomic_writer(path, permissions=permissions) as stream:
        stream.write(content)


def atomic_write_text(
    path: str | os.PathLike,
    text: str,
    *,
    encoding: str = "utf-8",
    permissions: int | None = DEFAULT_PERMISSIONS,
) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_writer`)."""
    atomic_write_bytes(path, text.encode(encoding), permissions=permissions)


def atomic_write_json(
    path: str | os.PathLike,
    value: Any,
    *,
    permissions: int | None = DEFAULT_PERMISSIONS,
    **dumps_options: Any,
) -> None:
    """Write ``json.dumps(value, **dumps_options)`` to ``path`` atomically (UTF-8)."""
    atomic_write_text(path, json.dumps(value, **dumps_options), permissions=permissions)


def is_temporary_name(name: str, target_pattern: str = r".+") -> bool:
    """True if ``name`` is a temporary file of :func:`atomic_writer` for a target whose name
    matches the regular expression ``target_pattern``."""
    return re.fullmatch(rf"\.(?:{target_pattern})\.[^.]+{re.escape(TEMP_SUFFIX)}", name) is not None
