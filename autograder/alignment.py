"""Step 5 of :mod:`autograder.repair`: a submission's cells aligned with the release.

Cells with a known grade id, then locked and narrative cells by source, are matched in order;
answer cells of the release are matched by position (and similarity to the release stub)
between those anchors; release cells the student deleted are put back.
"""

from __future__ import annotations

import copy
import uuid
from difflib import SequenceMatcher

from nbformat.notebooknode import NotebookNode

from .cells import Release, grade_id, is_locked, nbgrader_meta, normalise_source


def _similarity(a: str, b: str) -> float:
    return SequenceMatcher(None, a, b, autojunk=False).ratio()


def _release_copy(cell: NotebookNode) -> NotebookNode:
    fresh = copy.deepcopy(cell)
    if fresh.cell_type == "code":
        fresh.outputs = []
        fresh.execution_count = None
    fresh["id"] = uuid.uuid4().hex[:12]
    return fresh


def _assign_in_order(
    solutions: list[NotebookNode], candidates: list[NotebookNode]
) -> list[int | None]:
    """Order-preserving assignment of release answer cells to candidate cells (max similarity).

    Returns, per release cell, the index of its candidate or ``None``. Dynamic programming over
    (release cell, candidate): a cell matches a candidate of the same cell type or none.
    """
    m, k = len(solutions), len(candidates)
    sim = [
        [
            (0.001 + _similarity(normalise_source(s.source), normalise_source(c.source)))
            if s.cell_type == c.cell_type
            else None
            for c in candidates
        ]
        for s in solutions
    ]
    best = [[0.0] * (k + 1) for _ in range(m + 1)]
    for i in range(m - 1, -1, -1):
        for j in range(k - 1, -1, -1):
            options = [best[i + 1][j], best[i][j + 1]]
            if sim[i][j] is not None:
                options.append(sim[i][j] + best[i + 1][j + 1])
            best[i][j] = max(options)
    result: list[int | None] = [None] * m
    i = j = 0
    while i < m and j < k:
        if sim[i][j] is not None and abs(best[i][j] - (sim[i][j] + best[i + 1][j + 1])) < 1e-12:
            result[i] = j
            i += 1
            j += 1
        elif abs(best[i][j] - best[i + 1][j]) < 1e-12:
            i += 1
        else:
            j += 1
    return result


def align(cells: list[NotebookNode], release: Release) -> tuple[list[NotebookNode], dict]:
    """Align ``cells`` with the release; see step 5 of the docstring of :mod:`autograder.repair`.

    Returns the new cell list (metadata set on matched cells, missing cells inserted) and
    counters for the notes.
    """
    rel_cells = release.notebook.cells
    present = {gid for gid in (grade_id(c) for c in cells) if gid}
    pairs = _matching_pairs(rel_cells, cells, present)
    counts = {"anchored_by_source": 0, "answers_matched": 0, "restored": []}
    out: list[NotebookNode] = []
    previous_rel, previous_sub = -1, -1
    for rel_index, sub_index in [*pairs, (len(rel_cells), len(cells))]:
        gap_rel = list(range(previous_rel + 1, rel_index))
        gap_sub = range(previous_sub + 1, sub_index)
        out.extend(_fill_gap(rel_cells, cells, gap_rel, gap_sub, present, counts))
        if rel_index < len(rel_cells):
            cell = cells[sub_index]
            rel_cell = rel_cells[rel_index]
            gid = grade_id(rel_cell)
            if gid and grade_id(cell) is None:
                cell.metadata["nbgrader"] = copy.deepcopy(rel_cell.metadata["nbgrader"])
                counts["anchored_by_source"] += 1
            out.append(cell)
        previous_rel, previous_sub = rel_index, sub_index
    return out, counts


def _release_key(j: int, cell: NotebookNode, present: set[str]) -> tuple:
    """What release cell ``j`` is matched on: its grade id when the student's notebook has
    it, else the source of a locked or unmarked cell, else nothing (release only)."""
    gid = grade_id(cell)
    if gid and gid in present:
        return ("id", gid)
    source = normalise_source(cell.source)
    if (gid is None or is_locked(nbgrader_meta(cell))) and source:
        return ("src", cell.cell_type, source)
    return ("release-only", j)


def _submission_key(i: int, cell: NotebookNode) -> tuple:
    """What the student's cell ``i`` is matched on: its grade id, else its source."""
    gid = grade_id(cell)
    if gid:
        return ("id", gid)
    source = normalise_source(cell.source)
    return ("src", cell.cell_type, source) if source else ("student-only", i)


def _matching_pairs(
    rel_cells: list[NotebookNode], cells: list[NotebookNode], present: set[str]
) -> list[tuple[int, int]]:
    """``(release index, student index)`` of the cells matched by grade id or source, in order
    (the longest matching sequence of :class:`difflib.SequenceMatcher`)."""
    rel_keys = [_release_key(j, c, present) for j, c in enumerate(rel_cells)]
    sub_keys = [_submission_key(i, c) for i, c in enumerate(cells)]
    matcher = SequenceMatcher(None, rel_keys, sub_keys, autojunk=False)
    pairs: list[tuple[int, int]] = []
    for block in matcher.get_matching_blocks():
        pairs.extend((block.a + n, block.b + n) for n in range(block.size))
    return pairs


def _fill_gap(
    rel_cells: list[NotebookNode],
    cells: list[NotebookNode],
    gap_rel: list[int],
    gap_sub: range,
    present: set[str],
    counts: dict,
) -> list[NotebookNode]:
    """The cells between two matched pairs: the student's cells ``gap_sub`` in order, answer
    cells of the release ``gap_rel`` given to the unmarked student cells that match them, and
    graded release cells missing from the notebook restored in their place (``counts``
    updated)."""
    # answer cells of the release in this gap, matched to the student's unmarked cells
    answers = [
        j
        for j in gap_rel
        if grade_id(rel_cells[j])
        and not is_locked(nbgrader_meta(rel_cells[j]))
        and grade_id(rel_cells[j]) not in present
    ]
    candidates = [i for i in gap_sub if grade_id(cells[i]) is None]
    chosen = _assign_in_order([rel_cells[j] for j in answers], [cells[i] for i in candidates])
    match_of = {answers[a]: candidates[c] for a, c in enumerate(chosen) if c is not None}
    out: list[NotebookNode] = []
    pointer = gap_sub.start
    for j in gap_rel:
        rel_cell = rel_cells[j]
        gid = grade_id(rel_cell)
        if j in match_of:
            target = match_of[j]
            out.extend(cells[pointer:target])
            cell = cells[target]
            cell.metadata["nbgrader"] = copy.deepcopy(rel_cell.metadata["nbgrader"])
            out.append(cell)
            counts["answers_matched"] += 1
            pointer = target + 1
        elif gid and gid not in present:
            out.append(_release_copy(rel_cell))
            counts["restored"].append(gid)
        # a release cell without grade id that the student deleted: narrative, not needed
    out.extend(cells[pointer : gap_sub.stop])
    return out
