"""Where the seconds of one warm graded notebook go (grading profile, shared warm cache).

    .venv/bin/python bench/notebook_profile.py [--assignment tp3_scene15_svm] [--repeat 2]

Grades the solution of one TP with one grading worker: once to start the worker and fill the
shared feature cache (the reference run of a class), then ``--repeat`` warm times, each split
by the timestamps the run leaves (the temporary course is kept):

* ``prepare``: repairs, the temporary course, the request to the long-lived grading worker;
* ``nbgrader setup``: nbgrader's Autograde up to the sandbox (gradebook, test cells restored,
  the judge's probes written) -- until ``runner.json`` is written;
* ``kernel start``: bubblewrap, the runner and the kernel, until the first cell starts;
* the cells, from the sandbox's journal: ``imports`` (cells that only import), ``model``
  (cells that build a network: ``load_model`` / ``torchvision.models``), ``tests`` (test
  cells: visible asserts and hidden evidence collectors), ``other cells`` (answers, feature
  extraction from the cache, classifiers, plots);
* ``sandbox exit + judge``: the last cell done -> the judge's verdicts written
  (``judge.json``): the kernel and the sandbox stop, the outputs merged, the judge runs;
* ``nbgrader after``: scoring, writing the graded notebook, the worker's reply;
* ``record``: the grader reads the gradebook and builds the record.

Offline stand-ins as in ``bench/grading_warm.py`` (real images, seeded random weights).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

from extract import realdata_dir  # noqa: E402
from grading_warm import build_data_root, stand_in_weights  # noqa: E402

from autograder import batch, course, grading, judge, sandbox, students  # noqa: E402
from autograder.submissions import Submission  # noqa: E402

MODEL_WORDS = ("load_model(", "torchvision.models", "models.vgg16(", "models.resnet18(")


def _kind(cell) -> str:
    grade_id = cell.metadata.get("nbgrader", {}).get("grade_id") or ""
    lines = [line.strip() for line in cell.source.splitlines() if line.strip()]
    code = [line for line in lines if not line.startswith(("#", "%"))]
    if grade_id.startswith("test_"):
        return "tests"
    if any(word in cell.source for word in MODEL_WORDS):
        return "model"
    if code and all(line.startswith(("import ", "from ")) for line in code):
        return "imports"
    return "other cells"


def _watch_journal(runs: Path, before: set, stop: threading.Event, seen: list) -> None:
    """Stamp each journal line with the time it arrived (the journal the grader keeps drops
    the sandbox's own clock: untrusted)."""
    journal, offset = None, 0
    while not stop.is_set():
        if journal is None:
            fresh = [p for p in runs.iterdir() if p not in before]
            journal = fresh[0] / "journal.jsonl" if fresh else None
        if journal is not None and journal.is_file():
            with open(journal) as stream:
                stream.seek(offset)
                for line in stream:
                    if line.endswith("\n"):
                        seen.append((time.time(), json.loads(line)))
                offset = stream.tell()
        time.sleep(0.01)


def profile_once(context, submission: Submission, notebook) -> dict:
    calls: list[float] = []
    original = sandbox.Worker.run

    def timed_run(self, *args, **kwargs):
        calls.append(time.time())
        try:
            return original(self, *args, **kwargs)
        finally:
            calls.append(time.time())

    runs = context.work_dir / "runs"
    before = set(runs.iterdir())
    seen: list = []
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_journal, args=(runs, before, stop, seen))
    sandbox.Worker.run = timed_run
    watcher.start()
    try:
        started = time.time()
        record, _ = grading.grade_unsaved(submission, context)
        ended = time.time()
    finally:
        sandbox.Worker.run = original
        stop.set()
        watcher.join()
    [run_dir] = set(runs.iterdir()) - before
    ends = [e for _, e in seen if e["event"] == "end"]
    first = min(at for at, e in seen if e["event"] == "start")
    last = max(at for at, e in seen if e["event"] == "end")
    runner = (run_dir / "sandbox" / "runner.json").stat().st_mtime
    judged = (run_dir / "judge.json").stat().st_mtime
    phases = {
        "prepare": calls[0] - started,
        "nbgrader setup": runner - calls[0],
        "kernel start": first - runner,
    }
    for kind in ("imports", "model", "other cells", "tests"):
        phases[kind] = sum(e["seconds"] for e in ends if _kind(notebook.cells[e["index"]]) == kind)
    phases["between cells"] = (last - first) - sum(e["seconds"] for e in ends)
    phases["sandbox exit + judge"] = judged - last
    phases["nbgrader after"] = calls[-1] - judged
    phases["record"] = ended - calls[-1]
    slowest = sorted(ends, key=lambda e: -e["seconds"])[:5]
    return {
        "total": round(ended - started, 2),
        "score": record.score,
        "max_score": record.max_score,
        "phases": {k: round(v, 2) for k, v in phases.items()},
        "slowest_cells": [
            [e["grade_id"] or f"cell {e['index']}", round(e["seconds"], 2)] for e in slowest
        ],
        "lost": [
            f"{c.grade_id}: {c.message.strip().splitlines()[-1][:100] if c.message.strip() else ''}"
            for c in record.cells
            if c.kind == "auto" and (c.score or 0) < c.points
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assignment", default="tp3_scene15_svm")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--realdata", default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    realdata = realdata_dir(args.realdata)
    with tempfile.TemporaryDirectory(prefix="featurelab-bench-profile-") as tmp:
        work = Path(tmp)
        os.environ["FEATURELAB_DATA"] = str(build_data_root(realdata, work / "data"))
        stand_in_weights(work / "torch")
        options = grading.Options(profile="grading", timeout_cell=900)
        batch.check_sandbox(options)
        template = batch.build_template(course.REPO_ROOT, [args.assignment], work / "w")
        context = grading.RunContext(
            template,
            options,
            work / "out",
            work / "w",
            work / "cache",
            threads_per_job=os.cpu_count() or 1,
            cancel=threading.Event(),
            keep_work=True,
            seed=judge.run_seed(),
        )
        (work / "w" / "runs").mkdir(parents=True, exist_ok=True)
        source = course.read_notebook(course.source_notebook(course.REPO_ROOT, args.assignment))
        solved = students.solved_release(source, template.release(args.assignment).notebook)
        path = work / "submission.ipynb"
        students.write(solved, path)
        try:
            started = time.monotonic()
            batch.warm_up(args.assignment, context)  # starts the worker, fills the cache
            print(f"cold (worker start, cache filled): {time.monotonic() - started:.1f} s")
            runs = []
            for number in range(args.repeat):
                who = f"warm{number}"
                submission = Submission(who, args.assignment, path, f"{who}.ipynb", "flat")
                runs.append(profile_once(context, submission, solved))
                print(json.dumps(runs[-1]), flush=True)
        finally:
            context.close_workers()
    if args.json:
        Path(args.json).write_text(json.dumps({"assignment": args.assignment, "runs": runs}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
