"""Student ids and printable names: exact, stable, safe (see :mod:`autograder.submissions`)."""

from __future__ import annotations

import hashlib
import re
import unicodedata

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
