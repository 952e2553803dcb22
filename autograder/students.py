"""Simulated students: submissions built from the sources, for the demo, preflight and tests.

* :func:`solved_release`: the release with every answer cell filled with the solution (the
  ``### BEGIN/END SOLUTION`` marker lines removed), as a perfect student would submit it;
* :func:`blank_release`: the release untouched (nothing answered);
* :func:`edit_answer`: one answer cell of a notebook with a text replacement, failing loudly
  when the text is not there (so a mistake built for an old version of a notebook never
  silently becomes the solution).
"""

from __future__ import annotations

import copy

import nbformat

from . import cells


def strip_solution_markers(source: str) -> str:
    """The source without its ``### BEGIN SOLUTION`` / ``### END SOLUTION`` lines."""
    return "\n".join(line for _inside, line in cells.tagged_lines(source, "SOLUTION"))


def solved_release(source_nb, release_nb) -> nbformat.NotebookNode:
    """The release with the solution in every answer cell (code and markdown)."""
    solutions = {
        cells.grade_id(cell): cell
        for cell in source_nb.cells
        if cell.metadata.get("nbgrader", {}).get("solution")
    }
    notebook = copy.deepcopy(release_nb)
    for cell in notebook.cells:
        gid = cells.grade_id(cell)
        if gid in solutions:
            cell.source = strip_solution_markers(solutions[gid].source)
    return notebook


def blank_release(release_nb) -> nbformat.NotebookNode:
    return copy.deepcopy(release_nb)


def answer_cell(notebook, grade_id: str):
    for cell in notebook.cells:
        if cells.grade_id(cell) == grade_id:
            return cell
    raise KeyError(f"no cell with grade id {grade_id!r} in the notebook")


def edit_answer(notebook, grade_id: str, old: str, new: str, *, count: int = -1):
    """A copy of ``notebook`` where answer cell ``grade_id`` has ``old`` replaced by ``new``."""
    edited = copy.deepcopy(notebook)
    cell = answer_cell(edited, grade_id)
    if old not in cell.source:
        raise ValueError(f"{grade_id}: {old!r} not found in the cell:\n{cell.source}")
    cell.source = cell.source.replace(old, new, count)
    return edited


def write(notebook, path) -> None:
    import warnings
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nbformat.write(notebook, str(path))


def edit_cell(notebook, old: str, new: str, *, grade_id: str | None = None):
    """A copy of ``notebook`` where the one cell containing ``old`` has it replaced by ``new``.

    ``grade_id`` restricts the search to that cell. Raises ``ValueError`` unless exactly one
    cell contains ``old`` (a typical mistake is then applied where it was meant, or fails).
    """
    if grade_id is not None:
        return edit_answer(notebook, grade_id, old, new)
    edited = copy.deepcopy(notebook)
    matches = [cell for cell in edited.cells if old in cell.source]
    if len(matches) != 1:
        raise ValueError(f"{old!r} is in {len(matches)} cells, expected exactly one")
    matches[0].source = matches[0].source.replace(old, new)
    return edited
