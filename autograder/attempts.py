"""The attempts at grading one submission (:func:`autograder.grading._autograde`): what each
unfinished attempt left, and whether another follows. A cell that crashes the kernel or goes
over the memory / disk limit is skipped on the next attempt, at most ``MAX_ATTEMPTS`` in all;
a submission over the wall clock is graded from the cells that finished."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .results import log_failure_reason, running_cell

MAX_ATTEMPTS = 3


@dataclass
class _Tries:
    """What the attempts at one submission have left so far (see
    :func:`autograder.grading._autograde`)."""

    notes: list[str]
    statuses: list[str]
    skips: dict[int, dict] = field(default_factory=dict)  # cell index -> the error it gets
    count: int = 0
    peak_mb: float = 0.0
    journal: list[dict] = field(default_factory=list)  # of the last attempt
    grades: dict | None = None  # nbgrader's, when an attempt finished
    autograded_nb: object = None


def _where(running: dict | None) -> str:
    """``"cell 7 (ex2_answer)"``: the cell an attempt was running when it stopped, or ``""``."""
    if not running:
        return ""
    return f"cell {running['index'] + 1}" + (
        f" ({running['grade_id']})" if running.get("grade_id") else ""
    )


def _try_again(tries: _Tries, outcome, log_path: Path, run_dir: Path, options) -> bool:
    """Read how an unfinished attempt ended into ``tries``; true when another should follow."""
    running = running_cell(tries.journal)
    where = _where(running)
    can_retry = running is not None and tries.count < MAX_ATTEMPTS
    if outcome.killed in ("memory", "disk"):
        memory = outcome.killed == "memory"
        what = (
            f"{options.memory_mb:.0f} MB of memory"
            if memory
            else f"{options.disk_mb:.0f} MB of files"
        )
        if can_retry:
            verb = "used" if memory else "wrote"
            tries.notes.append(
                f"{where} {verb} more than {what}: "
                "stopped and skipped; the rest of the notebook was graded"
            )
            tries.statuses.append("limited")
            tries.skips[running["index"]] = {
                "ename": "MemoryLimitExceeded" if memory else "DiskLimitExceeded",
                "evalue": f"this cell {verb} more than {what} "
                "and was stopped (not run when grading)",
            }
            if not memory:  # the next attempt starts from an empty scratch
                shutil.rmtree(run_dir / "sandbox", ignore_errors=True)
            return True
        tries.statuses.append("error")
        tries.notes.append(
            f"limit of {what} exceeded" + (f" in {where}" if where else "") + "; not graded"
        )
        return False
    if outcome.killed == "wall_clock":
        tries.statuses.append("timeout")
        tries.notes.append(
            f"grading exceeded the {options.timeout:.0f} s limit per submission"
            + (f" while running {where}" if where else "")
            + ": graded from the cells that finished"
        )
        return False
    log_text = log_path.read_text(errors="replace")
    died = "DeadKernelError" in log_text or "Kernel died" in log_text
    if died and can_retry:
        tries.notes.append(
            f"{where} crashed the Python kernel: skipped; the rest of the notebook was graded"
        )
        tries.statuses.append("crashed")
        tries.skips[running["index"]] = {
            "ename": "KernelDied",
            "evalue": "this cell crashed the Python kernel (segfault, os._exit(), killed "
            "process...) and was not run when grading",
        }
        return True
    tries.statuses.append("error")
    tries.notes.append(f"nbgrader could not grade it: {log_failure_reason(log_text)}")
    return False
