"""What a cell is to nbgrader, read defensively (submitted metadata can be anything): its grade
id, whether it is locked, the cells of one assignment's release (:class:`Release`), and the one
reader of its ``BEGIN``/``END SOLUTION`` and ``HIDDEN TESTS`` regions (release leak checks,
preflight, rubrics, feedback scrubbing and the solved notebooks all use it)."""

from __future__ import annotations

from dataclasses import dataclass, field

from nbformat.notebooknode import NotebookNode


def normalise_source(source) -> str:
    """The source as one string, line endings unified, trailing blanks and blank edges gone."""
    text = "".join(source) if isinstance(source, list) else str(source or "")
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return "\n".join(lines).strip("\n")


def nbgrader_meta(cell) -> dict | None:
    """The cell's nbgrader metadata when it is a dict, else None."""
    meta = cell.get("metadata", {}).get("nbgrader")
    return meta if isinstance(meta, dict) else None


def grade_id(cell) -> str | None:
    """The cell's grade id when it is a non-empty string, else None."""
    meta = nbgrader_meta(cell)
    grade_id = meta.get("grade_id") if meta else None
    return grade_id if isinstance(grade_id, str) and grade_id else None


def is_locked(meta: dict | None) -> bool:
    """nbgrader's notion: grade (test) cells and read-only cells are locked, answers are not."""
    if not meta or meta.get("solution"):
        return False
    return bool(meta.get("grade") or meta.get("locked"))


@dataclass
class Release:
    """What the repairs need to know about one assignment's release notebook."""

    assignment: str
    notebook: NotebookNode
    grade_ids: list[str] = field(default_factory=list)
    cells_by_id: dict[str, NotebookNode] = field(default_factory=dict)
    locked_sources: set[str] = field(default_factory=set)
    graded_ids: set[str] = field(default_factory=set)  # answer and test cells (distinctive)

    @classmethod
    def from_notebook(cls, assignment: str, notebook: NotebookNode) -> Release:
        release = cls(assignment, notebook)
        for cell in notebook.cells:
            gid = grade_id(cell)
            if gid:
                release.grade_ids.append(gid)
                release.cells_by_id[gid] = cell
                meta = nbgrader_meta(cell)
                if meta.get("grade") or meta.get("solution"):
                    release.graded_ids.add(gid)
            if is_locked(nbgrader_meta(cell)) and normalise_source(cell.source):
                release.locked_sources.add(normalise_source(cell.source))
        return release

    def locked_code_ids(self) -> list[str]:
        return [
            gid
            for gid, cell in self.cells_by_id.items()
            if cell.cell_type == "code" and is_locked(nbgrader_meta(cell))
        ]


def tagged_lines(source, region: str) -> list[tuple[bool, str]]:
    """The lines of ``source`` without its ``BEGIN <region>`` / ``END <region>`` marker lines,
    each with whether it lies inside such a region. ``region``: ``"SOLUTION"`` or
    ``"HIDDEN TESTS"``. A line is a marker when it contains those words, as nbgrader's own
    preprocessors decide (``### BEGIN SOLUTION``, ``# END HIDDEN TESTS`` ...)."""
    text = "".join(source) if isinstance(source, list) else str(source or "")
    tagged, inside = [], False
    for line in text.split("\n"):  # not splitlines(): joined again, the source is unchanged
        if f"BEGIN {region}" in line:
            inside = True
        elif f"END {region}" in line:
            inside = False
        else:
            tagged.append((inside, line))
    return tagged


def region_lines(source, region: str) -> tuple[list[str], list[str]]:
    """``(lines inside the region's markers, lines outside them)`` (see :func:`tagged_lines`)."""
    tagged = tagged_lines(source, region)
    return [line for inside, line in tagged if inside], [
        line for inside, line in tagged if not inside
    ]


def balanced(source: str, region: str) -> bool:
    """Every ``BEGIN <region>`` closed by an ``END <region>``, none nested."""
    depth = 0
    for line in source.splitlines():
        if f"BEGIN {region}" in line:
            depth += 1
            if depth > 1:
                return False
        elif f"END {region}" in line:
            depth -= 1
            if depth < 0:
                return False
    return depth == 0
