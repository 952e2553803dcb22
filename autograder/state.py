"""Resume state of a grading run: one JSON file per submission in ``OUT/.state``, written
atomically, keyed by everything that changes its grade and checked by a digest before reuse."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from .results import Record
from .submissions import Submission

if TYPE_CHECKING:
    from .grading import RunContext


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` atomically (the one helper of the project: :mod:`featurelab._io`)."""
    from featurelab._io import atomic_write_text as write

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write(path, text)


def atomic_write_json(path: Path, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True))


def _state_path(out: Path, submission: Submission) -> Path:
    name = hashlib.sha1(submission.label.encode()).hexdigest()[:16]
    return out / ".state" / f"{name}.json"


def submission_key(data: bytes, submission: Submission, context: RunContext) -> str:
    digest = hashlib.sha256(data)
    digest.update(
        json.dumps(
            {
                "assignment": submission.assignment,
                "student": submission.student,
                "notes": list(submission.notes),  # the extra files listed in the reasons
                "course": context.template.fingerprints,
                "options": asdict(context.options),
            },
            sort_keys=True,
        ).encode()
    )
    return digest.hexdigest()


def _record_digest(key: str, record: dict) -> str:
    return hashlib.sha256(json.dumps([key, record], sort_keys=True).encode()).hexdigest()


def save_record(out: Path, submission: Submission, key: str, record: Record) -> Record:
    """Save ``record`` atomically in ``OUT/.state`` (only the process that owns OUT does:
    the grader itself, never a Dask worker)."""
    if record.notebook is not None:  # the graded notebook, kept in OUT for the gradebook
        from .gradebook import keep_autograded

        keep_autograded(out, record)
    data = record.to_dict()
    atomic_write_json(
        _state_path(out, submission),
        {"key": key, "record": data, "digest": _record_digest(key, data)},
    )
    return record


def load_state(path: Path, key: str) -> Record | None:
    """The saved record of a submission, if it was graded with the same ``key`` and the file
    is intact (its digest matches); else None (it is graded again)."""
    try:
        saved = json.loads(path.read_text())
        if saved.get("key") != key or saved.get("digest") != _record_digest(key, saved["record"]):
            return None
        return Record.from_dict(saved["record"])
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None
