"""Execute one notebook inside the grading sandbox (the only autograder code the sandbox sees).

    python run_notebook.py IN.ipynb CONFIG.json JOURNAL_FD RESULT_FD

Runs the notebook with nbclient, configured as nbgrader's ``Execute`` preprocessor (same
semantics as ``nbgrader autograde``: errors do not stop it, per-cell timeout, interrupt), with a kernel that talks to this process over Unix sockets (``ipc`` transport:
the sandbox has no network). Protocol with the trusted grader outside:

* ``JOURNAL_FD`` (write end of a pipe): one JSON line per event, ``{"event": "start" |
  "end", "index", "grade_id", ...}`` before and after every code cell (the grader writes its
  journal from them), then ``{"event": "done"}``;
* ``RESULT_FD``: the executed notebook (JSON), written once at the end.

Neither descriptor is inherited by the kernel, and this process makes itself non-dumpable,
so student code (same user) cannot open them through ``/proc``. ``CONFIG.json``:
``{"timeout": int, "interrupt_on_timeout": bool, "skip": {"<index>": {"ename", "evalue"}}}``
(cells to replace by that error instead of running them: they crashed an earlier attempt).
This file holds no reference answer and no hidden test: it is safe for students to read.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import time

# jsonschema (under nbformat) imports rfc3987_syntax, when installed, only to check "iri"
# strings, and that builds a grammar for 2-3 s at import: a third of this runner's start.
# No notebook schema uses the format; without the module jsonschema simply skips it.
sys.modules.setdefault("rfc3987_syntax", None)

import nbformat  # noqa: E402
from jupyter_client.manager import AsyncKernelManager  # noqa: E402
from nbclient import NotebookClient  # noqa: E402
from nbformat.notebooknode import NotebookNode  # noqa: E402


def _non_dumpable() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 4
    except (OSError, AttributeError):
        pass


def _first_error(cell) -> str | None:
    names = [
        o.get("ename") or "Error"
        for o in cell.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    if "CellTimeoutError" in names:
        return "CellTimeoutError"
    return names[0] if names else None


class IpcKernelManager(AsyncKernelManager):
    """A kernel reached over Unix sockets in ``$JUPYTER_RUNTIME_DIR`` (no network here)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("transport", "ipc")
        kwargs.setdefault(
            "ip", os.path.join(os.environ.get("JUPYTER_RUNTIME_DIR", "/tmp"), "kernel-ipc")
        )
        super().__init__(**kwargs)


class JournaledClient(NotebookClient):
    """nbclient with nbgrader's ``Execute`` settings, a journal and skipped cells.

    ``event(**data)`` writes one journal line; ``skip`` maps a cell index to the error that
    replaces running it (``{"ename", "evalue"}``).
    """

    def __init__(self, nb, *, event, skip: dict[int, dict], **kwargs):
        super().__init__(nb, **kwargs)
        self.journal_event = event
        self.skip = skip

    async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
        if cell.cell_type != "code":
            return cell
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        self.journal_event(event="start", index=cell_index, grade_id=grade_id)
        started = time.perf_counter()
        skipped = cell_index in self.skip
        if skipped:
            cell.outputs = [_error_output(self.skip[cell_index])]
            cell.execution_count = None
        else:
            await super().async_execute_cell(cell, cell_index, execution_count, store_history)
        self.journal_event(
            event="end",
            index=cell_index,
            grade_id=grade_id,
            seconds=round(time.perf_counter() - started, 4),
            error=_first_error(cell),
            skipped=skipped,
            stderr=any(
                o.get("output_type") == "stream" and o.get("name") == "stderr"
                for o in cell.get("outputs", [])
            ),
        )
        return cell


def _error_output(skip: dict) -> NotebookNode:
    """The error a skipped cell shows instead of running."""
    ename = str(skip.get("ename", "SkippedCell"))
    evalue = str(skip.get("evalue", ""))
    return NotebookNode(
        output_type="error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"]
    )


def _on_cell_executed(cell, cell_index, execute_reply):
    # as nbgrader's Execute: an error reply with no matching output (a timeout) is kept
    content = execute_reply["content"]
    if content["status"] != "error":
        return
    if any(o.output_type == "error" and o.ename == content["ename"] for o in cell.outputs):
        return
    cell.outputs.append(
        NotebookNode(
            output_type="error",
            ename=content["ename"],
            evalue=content["evalue"],
            traceback=content["traceback"]
            or ["ERROR: An error occurred while showtraceback was disabled"],
        )
    )


def _client(notebook, notebook_path: str, config: dict, event) -> JournaledClient:
    return JournaledClient(
        notebook,
        event=event,
        skip={int(k): v for k, v in (config.get("skip") or {}).items()},
        timeout=int(config.get("timeout", 600)),
        interrupt_on_timeout=bool(config.get("interrupt_on_timeout", True)),
        allow_errors=True,
        raise_on_iopub_timeout=True,
        error_on_timeout={
            "ename": "CellTimeoutError",
            "evalue": "",
            "traceback": ["CellTimeoutError: No reply from kernel before timeout"],
        },
        kernel_name="python3",
        # The sandbox is thrown away after this run: a graceful shutdown (the kernel tears down
        # torch, matplotlib ... for 1-2 s while the grader waits) would only add time.
        shutdown_kernel="immediate",
        kernel_manager_class=IpcKernelManager,
        resources={"metadata": {"path": os.path.dirname(os.path.abspath(notebook_path))}},
        on_cell_executed=_on_cell_executed,
    )


def main(argv: list[str]) -> int:
    _non_dumpable()
    for fd in (int(argv[3]), int(argv[4])):
        os.set_inheritable(fd, False)  # never passed on to the kernel
    journal = os.fdopen(int(argv[3]), "w", buffering=1)
    result = os.fdopen(int(argv[4]), "w")
    notebook_path, config_path = argv[1], argv[2]
    with open(config_path) as stream:
        config = json.load(stream)

    def event(**data) -> None:
        data["time"] = time.time()
        journal.write(json.dumps(data) + "\n")

    notebook = nbformat.read(notebook_path, as_version=4)
    error = None
    try:
        _client(notebook, notebook_path, config, event).execute()
    except Exception as exc:  # noqa: BLE001 - reported to the grader (e.g. the kernel died)
        error = f"{type(exc).__name__}: {str(exc)[:300]}"
        print(f"run_notebook: {error}", file=sys.stderr)
    result.write(nbformat.writes(notebook))
    result.close()
    event(event="done", error=error)
    journal.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
