"""nbgrader's ``Execute`` preprocessor plus a journal and cell skipping (runs inside nbgrader).

The autograder configures ``Autograde.autograde_preprocessors`` with :class:`JournaledExecute`
instead of nbgrader's ``Execute`` (same traits, same behaviour otherwise):

* before and after every code cell it appends one JSON line to the file named by
  ``$FEATURELAB_GRADING_JOURNAL``: ``{"event": "start", "index", "grade_id"}`` then
  ``{"event": "end", "index", "grade_id", "seconds", "error", "stderr"}``. When the grading
  process is killed (memory, wall clock) or the kernel dies, the journal says which cell was
  running, how long every finished cell took, and which test cells passed so far;
* cells listed in ``$FEATURELAB_GRADING_SKIP`` (JSON ``{"<index>": {"ename", "evalue"}}``) are
  not executed: they get that error as their only output. The autograder skips a cell that
  crashed the kernel or blew the memory limit on the previous attempt, so the rest of the
  notebook is still graded (a skipped test cell scores 0 like any failing test).
"""

from __future__ import annotations

import json
import os
import time

from nbformat.notebooknode import NotebookNode
from nbgrader.preprocessors import Execute

JOURNAL_ENV = "FEATURELAB_GRADING_JOURNAL"
SKIP_ENV = "FEATURELAB_GRADING_SKIP"


def _first_error(cell) -> str | None:
    """The error of a cell: ``CellTimeoutError`` when it timed out, else the first error."""
    names = [output.get("ename") or "Error" for output in cell.get("outputs", [])
             if output.get("output_type") == "error"]
    if "CellTimeoutError" in names:
        return "CellTimeoutError"
    return names[0] if names else None


def _wrote_stderr(cell) -> bool:
    return any(
        output.get("output_type") == "stream" and output.get("name") == "stderr"
        for output in cell.get("outputs", [])
    )


class JournaledExecute(Execute):
    """nbgrader ``Execute`` that journals each code cell and can skip cells (module docstring)."""

    def preprocess(self, nb, resources=None, km=None):
        self._journal_path = os.environ.get(JOURNAL_ENV) or None
        try:
            self._skip = {int(k): v for k, v in json.loads(os.environ.get(SKIP_ENV) or "{}").items()}
        except (ValueError, AttributeError):
            self._skip = {}
        return super().preprocess(nb, resources, km)

    def _journal(self, **event) -> None:
        if not self._journal_path:
            return
        event["time"] = time.time()
        with open(self._journal_path, "a", encoding="utf-8") as stream:
            stream.write(json.dumps(event) + "\n")
            stream.flush()

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type != "code":
            return super().preprocess_cell(cell, resources, index)
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        self._journal(event="start", index=index, grade_id=grade_id)
        started = time.perf_counter()
        skip = self._skip.get(index)
        if skip is not None:
            cell.outputs = [
                NotebookNode(
                    output_type="error",
                    ename=skip.get("ename", "SkippedCell"),
                    evalue=skip.get("evalue", ""),
                    traceback=[f"{skip.get('ename', 'SkippedCell')}: {skip.get('evalue', '')}"],
                )
            ]
            cell.execution_count = None
            result = (cell, resources)
        else:
            result = super().preprocess_cell(cell, resources, index)
        self._journal(
            event="end",
            index=index,
            grade_id=grade_id,
            seconds=round(time.perf_counter() - started, 4),
            error=_first_error(cell),
            stderr=_wrote_stderr(cell),
            skipped=skip is not None,
        )
        return result
