"""Downloads: ``<target>.part``, resumed with HTTP ``Range``, verified, renamed into place."""

from __future__ import annotations

import http.client
import os
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.error import HTTPError, URLError

from tqdm.auto import tqdm

from .archives import verify_archive
from .registry import (
    USER_AGENT,
    DownloadError,
    VerificationError,
    data_root,
    get_spec,
    how_to_get,
)


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
        how_to_get=how_to_get(spec, base),
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
