"""Read, identify and repair a submitted notebook before nbgrader grades it.

nbgrader trusts the cell metadata of a submission: a notebook whose ``metadata.nbgrader`` was
stripped (some editors and converters drop it) silently scores 0, duplicated grade ids confuse
it, a deleted test cell is simply not graded. Here every submission is reconciled with the
release it was made from (the template's freshly generated release), and every repair is
reported in plain words (the ``reason`` column and the feedback):

1. **Reading**: an empty file, invalid JSON or something that is not a notebook is rejected
   with the reason (status ``invalid``).
2. **Identification**: the assignment the notebook belongs to, from its grade ids or (metadata
   stripped) from its instructor cells; the notebook of another assignment is rejected
   (status ``wrong_assignment``) rather than graded against the wrong tests.
3. **Unknown metadata**: nbgrader metadata with a grade id the release does not have is dropped
   (the cell stays, as an ordinary cell).
4. **Duplicates**: a grade id present several times (a copied cell) keeps its last copy, which
   is graded (what nbgrader's ``DeduplicateIds`` does, stated); earlier copies of an answer
   cell stay as ordinary cells (they still run, as in the student's notebook), earlier copies
   of a locked cell are removed.
5. **Missing cells and stripped metadata**: cells are aligned with the release: cells with a
   known grade id, then locked and narrative cells by source (instructor cells are identical
   in every copy of the release), then answer cells by position between those anchors (the
   best match by similarity to the release stub when the student added cells). Metadata is
   restored on the matched cells; a deleted test cell or answer cell is put back from the
   release (a test cell is then graded in full, nbgrader restoring its hidden part). When the
   metadata was stripped and fewer than half of the release's locked code cells can be found,
   the notebook is rejected with a reason instead of a silent 0.
6. **Metadata of matched cells** is replaced by the release's, so edited points, a test cell
   turned into an answer cell, or an unlocked test cell change nothing; an edited test cell is
   graded with the original (nbgrader restores locked cells by checksum), and it is reported.
"""

from __future__ import annotations

import copy
import json
import uuid

import nbformat
from nbformat.notebooknode import NotebookNode, from_dict

from .alignment import align
from .cells import Release, grade_id, is_locked, nbgrader_meta, normalise_source  # noqa: F401 (Release, normalise_source: API)

IDENTIFY_MIN_SCORE = 0.5
RECOVER_MIN_ANCHORS = 0.5


class Rejected(Exception):
    """The submission cannot be graded; ``status`` and a ``reason`` for the report."""

    def __init__(self, status: str, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


# --------------------------------------------------------------------------------------------
# 1. reading


def load_submission(data: bytes) -> NotebookNode:
    """Parse the bytes of a submitted file into a v4 notebook, or raise :class:`Rejected`.

    Whatever the bytes (truncated, not JSON, JSON nested thousands deep, a 10,000-digit
    number, fields of the wrong type), the outcome is a notebook or a ``Rejected("invalid",
    reason)`` that says what is wrong: never another exception (a grader error).
    """
    if not data.strip():
        raise Rejected("invalid", "empty file: nothing to grade (was the notebook saved?)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Rejected("invalid", "not a notebook: the file is not UTF-8 text") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as error:
        raise Rejected(
            "invalid",
            f"not a notebook: invalid JSON at line {error.lineno} column {error.colno} "
            f"({error.msg}); the file is damaged or was not saved as .ipynb",
        ) from None
    except RecursionError:
        raise Rejected(
            "invalid", "not a notebook: the JSON is nested too deeply to be a notebook"
        ) from None
    except ValueError as error:  # e.g. an integer with more digits than Python reads
        raise Rejected("invalid", f"not a notebook: unreadable JSON ({error})") from None
    if not isinstance(raw, dict) or not (
        isinstance(raw.get("cells"), list) or isinstance(raw.get("worksheets"), list)
    ):
        raise Rejected("invalid", "not a notebook: valid JSON but no list of cells")
    version = raw.get("nbformat", 4)
    if isinstance(version, bool) or not isinstance(version, (int, float)):
        if isinstance(raw.get("cells"), list):
            version = 4  # a v4 layout with a damaged version field: read it as v4
        else:
            raise Rejected(
                "invalid", f"not a notebook: its format version {version!r} is not a number"
            )
    if version < 4:
        try:
            raw = json.loads(nbformat.writes(nbformat.reads(text, as_version=4)))
        except Exception as error:  # noqa: BLE001 - any conversion failure is a reason
            raise Rejected(
                "invalid", f"old notebook format that cannot be read ({error})"
            ) from None
    try:
        return _coerce_v4(raw)
    except Exception as error:  # noqa: BLE001 - a malformed field is the file's problem
        raise Rejected(
            "invalid",
            f"not a notebook: malformed content ({type(error).__name__}: {str(error)[:200]})",
        ) from None


def _coerce_v4(raw: dict) -> NotebookNode:
    """A tolerant v4 reader: malformed cells are fixed rather than fatal."""
    cells = []
    for item in raw.get("cells", []):
        if not isinstance(item, dict):
            continue
        cell_type = item.get("cell_type")
        if cell_type not in ("code", "markdown", "raw"):
            cell_type = "raw"
        source = item.get("source", "")
        source = "".join(source) if isinstance(source, list) else str(source)
        metadata = item.get("metadata") if isinstance(item.get("metadata"), dict) else {}
        cell = {"cell_type": cell_type, "metadata": metadata, "source": source}
        cell_id = item.get("id")
        if isinstance(cell_id, str) and cell_id:
            cell["id"] = cell_id
        if cell_type == "code":
            cell["outputs"] = []  # outputs never matter for grading: nbgrader clears them
            cell["execution_count"] = None
        elif isinstance(item.get("attachments"), dict):
            cell["attachments"] = item["attachments"]
        cells.append(cell)
    metadata = raw.get("metadata") if isinstance(raw.get("metadata"), dict) else {}
    notebook = from_dict({"cells": cells, "metadata": metadata, "nbformat": 4, "nbformat_minor": 5})
    _unique_cell_ids(notebook)
    return notebook


def _unique_cell_ids(notebook: NotebookNode) -> None:
    seen: set[str] = set()
    for cell in notebook.cells:
        cell_id = cell.get("id")
        if not isinstance(cell_id, str) or not cell_id or cell_id in seen or len(cell_id) > 64:
            cell_id = uuid.uuid4().hex[:12]
        cell["id"] = cell_id
        seen.add(cell_id)


# --------------------------------------------------------------------------------------------
# 2. identification


def match_scores(notebook: NotebookNode, releases: dict[str, Release]) -> dict[str, float]:
    """Per assignment, how much of its release this notebook contains (0..1).

    The larger of: the fraction of the release's answer and test cell ids present in the
    notebook (read-only cells are left out: ids like ``setup`` or ``summary`` are common to
    every notebook), and the fraction of its locked (instructor) cells whose source is in it.
    """
    ids = {gid for gid in (grade_id(cell) for cell in notebook.cells) if gid}
    sources = {normalise_source(cell.source) for cell in notebook.cells}
    scores = {}
    for name, release in releases.items():
        by_id = len(ids & release.graded_ids) / max(1, len(release.graded_ids))
        by_source = len(release.locked_sources & sources) / max(1, len(release.locked_sources))
        scores[name] = max(by_id, by_source)
    return scores


def identify(
    notebook: NotebookNode, releases: dict[str, Release], expected: str | None
) -> tuple[str, list[str]]:
    """The assignment of ``notebook`` (``expected`` when it matches); notes; or :class:`Rejected`."""
    scores = match_scores(notebook, releases)
    best = max(scores, key=scores.get) if scores else None
    confident = best is not None and scores[best] >= IDENTIFY_MIN_SCORE
    if expected in releases:
        clearly_other = confident and best != expected and scores[best] > scores[expected] + 0.25
        if scores[expected] >= IDENTIFY_MIN_SCORE and not clearly_other:
            return expected, []
        if clearly_other:
            raise Rejected(
                "wrong_assignment",
                f"this is the notebook of {best}, not {expected} "
                f"({scores[best]:.0%} of {best}'s cells found, {scores[expected]:.0%} of "
                f"{expected}'s): submit {expected}.ipynb",
            )
        if scores[expected] > 0:
            return expected, []  # weak match: the repairs decide (and explain) what is possible
        if not any(nbgrader_meta(cell) for cell in notebook.cells):
            raise Rejected(
                "invalid",
                f"the nbgrader metadata of this notebook was removed and none of the instructor "
                f"cells of {expected} is in it unchanged, so it cannot be matched to the "
                "release: the student should copy their answers into a fresh copy of the release",
            )
        raise Rejected(
            "invalid",
            f"no cell of this notebook comes from the release of {expected}: "
            "it is not a copy of the assignment notebook",
        )
    if confident:
        notes = []
        if expected is not None:
            notes.append(
                f"named {expected!r}, which is not an assignment of this course: "
                f"graded as {best}, which it matches"
            )
        return best, notes
    if expected is not None:
        raise Rejected("invalid", f"unknown assignment {expected!r} and the notebook matches none")
    raise Rejected(
        "invalid",
        "cannot tell which assignment this notebook is (no known grade ids or instructor "
        "cells): pass --assignment or name the file after the assignment",
    )


# --------------------------------------------------------------------------------------------
# 3-6. repairs


def repair(notebook: NotebookNode, release: Release) -> tuple[NotebookNode, list[str], bool]:
    """Reconcile ``notebook`` with ``release`` (module docstring, steps 3-6).

    Returns ``(notebook, notes, repaired)``; ``notes`` explain every change (some are only
    informative, e.g. an edited test cell); ``repaired`` is True when the notebook was changed
    beyond the metadata refresh. Raises :class:`Rejected` when it cannot be graded.
    """
    notes: list[str] = []
    cells = list(notebook.cells)
    repaired = _forget_unknown_ids(cells, release, notes)  # 3.
    cells, deduplicated = _keep_last_copies(cells, release, notes)  # 4.
    cells, restored = _restore_missing(cells, release, notes)  # 5.
    _adopt_release_metadata(cells, release, notes)  # 6.
    notebook.cells = cells
    _unique_cell_ids(notebook)
    return notebook, notes, repaired or deduplicated or restored


def _forget_unknown_ids(cells: list, release: Release, notes: list[str]) -> bool:
    """Step 3: nbgrader metadata with a grade id the release does not have is removed (the
    cell is graded as an ordinary one). True when a cell changed."""
    unknown = []
    changed = False
    for cell in cells:
        if cell.metadata.get("nbgrader") is None:
            continue
        gid = grade_id(cell)
        if gid not in release.cells_by_id:
            del cell.metadata["nbgrader"]
            if gid:
                unknown.append(gid)
    if unknown:
        notes.append(
            f"unknown grade id(s) {', '.join(sorted(set(unknown)))}: graded as ordinary cells"
        )
        changed = True
    return changed


def _keep_last_copies(cells: list, release: Release, notes: list[str]) -> tuple[list, bool]:
    """Step 4: of a grade id present several times the last copy is graded (earlier copies of
    a locked cell are dropped, of an answer cell kept as ordinary cells)."""
    positions: dict[str, list[int]] = {}
    for index, cell in enumerate(cells):
        gid = grade_id(cell)
        if gid:
            positions.setdefault(gid, []).append(index)
    drop: set[int] = set()
    changed = False
    for gid, where in positions.items():
        if len(where) < 2:
            continue
        locked = is_locked(nbgrader_meta(release.cells_by_id[gid]))
        for index in where[:-1]:
            if locked:
                drop.add(index)
            else:
                del cells[index].metadata["nbgrader"]
        what = "locked cell" if locked else "answer cell"
        notes.append(
            f"{what} {gid} appears {len(where)} times: graded the last copy"
            + ("" if locked else " (earlier copies still run, as ordinary cells)")
        )
        changed = True
    return [cell for index, cell in enumerate(cells) if index not in drop], changed


def _restore_missing(cells: list, release: Release, notes: list[str]) -> tuple[list, bool]:
    """Step 5: grade ids the release has and the notebook lacks (metadata stripped by an
    editor, cells deleted) are found again by aligning with the release, or restored."""
    present = {gid for gid in (grade_id(c) for c in cells) if gid}
    missing = [gid for gid in release.grade_ids if gid not in present]
    if not missing:
        return cells, False
    stripped = not present
    cells, counts = align(cells, release)
    if stripped:
        locked_code = release.locked_code_ids()
        found = {gid for gid in (grade_id(c) for c in cells) if gid} - set(counts["restored"])
        anchors = len([gid for gid in locked_code if gid in found])
        if anchors < RECOVER_MIN_ANCHORS * max(1, len(locked_code)):
            raise Rejected(
                "invalid",
                "the nbgrader metadata of this notebook was removed and its cells cannot be "
                f"matched to the release of {release.assignment} (only {anchors} of "
                f"{len(locked_code)} instructor code cells found unchanged): the student "
                "should copy their answers into a fresh copy of the release",
            )
        notes.append(
            "nbgrader metadata was missing (removed by an editor or converter): recovered "
            f"it by matching the notebook to the release ({counts['anchored_by_source']} "
            f"instructor cells by source, {counts['answers_matched']} answer cells by "
            "position)"
        )
    restored = counts["restored"]
    meta = {g: release.cells_by_id[g].metadata["nbgrader"] for g in restored}
    tests = [g for g in restored if meta[g].get("grade") and is_locked(meta[g])]
    answers = [g for g in restored if not is_locked(meta[g])]
    others = [g for g in restored if g not in tests and g not in answers]
    if tests:
        notes.append(
            f"test cell(s) {', '.join(tests)} missing: restored from the release and graded"
        )
    if answers:
        notes.append(f"answer cell(s) {', '.join(answers)} missing: restored empty")
    if others and not stripped:
        notes.append(f"{len(others)} locked instruction cell(s) missing: restored")
    return cells, True


def _adopt_release_metadata(cells: list, release: Release, notes: list[str]) -> None:
    """Step 6: every graded cell takes the release's nbgrader metadata; an edited test cell is
    reported (it is graded with the original tests)."""
    edited_tests = []
    for cell in cells:
        gid = grade_id(cell)
        if not gid:
            continue
        rel_cell = release.cells_by_id[gid]
        cell.metadata["nbgrader"] = copy.deepcopy(rel_cell.metadata["nbgrader"])
        if (
            rel_cell.cell_type == "code"
            and rel_cell.metadata["nbgrader"].get("grade")
            and is_locked(rel_cell.metadata["nbgrader"])
            and normalise_source(cell.source) != normalise_source(rel_cell.source)
        ):
            edited_tests.append(gid)
    if edited_tests:
        notes.append(
            f"test cell(s) {', '.join(edited_tests)} edited: graded with the original tests"
        )
