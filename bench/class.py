"""A whole simulated class, graded on the local pool and on a 2-worker Dask cluster.

    .venv/bin/python bench/class.py [--students 100] [--executors local,dask] [--json PATH]

``--students N`` students each hand in the six TPs (N x 6 notebooks), a seeded mix made from
the solutions: complete (60 %), partly wrong (20 %: one of the demo's typical mistakes where
the TP has one, else one exercise left unanswered), blank (10 %: the release untouched) and
broken (10 %: half of them a truncated upload, half a NameError at the top of the first
answer cell). The class is graded in the ``grading`` profile with a shared feature cache:

* cold: an empty cache (each TP's reference run, the warm-up, extracts its features first);
* warm: the same class again with the cache the cold run filled (every notebook regraded).

For each executor (``local``: ``--jobs 2`` threads; ``dask``: ``--scheduler local:2``, a
``distributed.LocalCluster`` of two worker processes on this machine, started inside the
timed run) and phase it prints the wall time of the whole ``grade`` run (template reused;
warm-up, cluster start and the reports' inputs included), notebooks per minute, and the median
and 95th percentile of the autograder's own seconds per notebook (kernel start, every cell,
nbgrader's bookkeeping, the judge; a truncated upload never runs and is left out).

Offline stand-ins as in ``bench/grading_warm.py``: the real images of ``../shared/realdata``
in the datasets' layouts and seeded random networks saved as the pretrained checkpoints (the
accuracy-threshold tests then fail on every notebook: a grading cost like any other).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

from extract import realdata_dir  # noqa: E402  (bench/extract.py, next to this file)
from grading_warm import build_data_root, stand_in_weights  # noqa: E402

from autograder import batch, course, demo, students  # noqa: E402
from autograder.submissions import Submission  # noqa: E402

MIX = {"complete": 0.6, "partly_wrong": 0.2, "blank": 0.1, "broken": 0.1}
EXECUTORS = {"local": None, "dask": "local:2"}


def kinds(count: int, seed: int) -> list[str]:
    """``count`` submission kinds in the proportions of :data:`MIX`, shuffled (seeded)."""
    numbers = {kind: round(count * share) for kind, share in MIX.items() if kind != "complete"}
    numbers["complete"] = count - sum(numbers.values())
    found = [kind for kind, n in numbers.items() for _ in range(n)]
    random.Random(seed).shuffle(found)
    return found


def _answer_cells(notebook) -> list:
    return [
        cell
        for cell in notebook.cells
        if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("solution")
    ]


def build(kind: str, number: int, source, release, assignment: str) -> bytes:
    """One submission of ``kind`` (``number`` picks the variant), as the file's bytes."""
    import nbformat

    solved = students.solved_release(source, release)
    notebook = solved
    if kind == "blank":
        notebook = students.blank_release(release)
    elif kind == "partly_wrong":
        mistakes = [m for m in demo.DEMO if m.assignment == assignment and m.edits]
        if mistakes:
            for grade_id, old, new in mistakes[number % len(mistakes)].edits:
                notebook = students.edit_cell(notebook, old, new, grade_id=grade_id)
        else:  # one exercise left as released (unanswered)
            cells = _answer_cells(notebook)
            released = {
                c.metadata["nbgrader"]["grade_id"]: c.source for c in _answer_cells(release)
            }
            cell = cells[number % len(cells)]
            cell.source = released[cell.metadata["nbgrader"]["grade_id"]]
    elif kind == "broken" and number % 2 == 0:
        text = nbformat.writes(solved).encode()
        return text[: len(text) // 2]  # an upload cut in half
    elif kind == "broken":
        cell = _answer_cells(notebook)[0]
        cell.source = "undefined_helper()  # a typo\n" + cell.source
    return nbformat.writes(notebook).encode()


def make_class(template, assignments: list[str], count: int, folder: Path, seed: int = 0):
    """``count`` students x ``assignments``: the files, and ``{label: kind}``."""
    submissions, kind_of = [], {}
    slots = [(s, a) for s in range(count) for a in assignments]
    for number, ((student, assignment), kind) in enumerate(
        zip(slots, kinds(len(slots), seed), strict=True)
    ):
        source = course.read_notebook(course.source_notebook(course.REPO_ROOT, assignment))
        release = template.release(assignment).notebook
        name = f"s{student:04d}"
        path = folder / f"{name}_{assignment}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(build(kind, number, source, release, assignment))
        submissions.append(Submission(name, assignment, path, path.name, "flat"))
        kind_of[path.name] = kind
    return submissions, kind_of


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def run_phase(work: Path, subs, kind_of, assignments, executor: str, phase: str) -> dict:
    options = batch.Options(profile="grading", timeout_cell=900)
    load = os.getloadavg()[0]
    started = time.monotonic()
    result = batch.grade_batch(
        subs,
        out=work / "out" / executor / phase,
        course_root=course.REPO_ROOT,
        assignments=assignments,
        options=options,
        jobs=2,
        cache_dir=work / f"cache-{executor}",  # cold: empty; warm: what the cold run filled
        progress=False,
        resume=False,
        work_dir=work / "grading-work",
        scheduler=EXECUTORS[executor],
    )
    wall = time.monotonic() - started
    rows = [
        {
            "student": r.student,
            "assignment": r.assignment,
            "kind": kind_of[r.label],
            "status": r.status,
            "score": r.score,
            "max_score": r.max_score,
            "seconds": r.seconds,
        }
        for r in result.records
    ]
    ran = [row["seconds"] for row in rows if row["status"] != "invalid"]
    # Complete submissions must keep their points (but the accuracy thresholds, which random
    # stand-in weights miss): a run where they score nothing measured failing setup cells.
    complete = [
        row["score"] / row["max_score"]
        for row in rows
        if row["kind"] == "complete" and row["max_score"]
    ]
    summary = {
        "executor": executor,
        "phase": phase,
        "notebooks": len(rows),
        "references": len(result.references),
        "wall_s": round(wall, 1),
        "notebooks_per_min": round(len(rows) / wall * 60, 2),
        "median_s": round(statistics.median(ran), 1) if ran else None,
        "p95_s": round(percentile(ran, 0.95), 1) if ran else None,
        "load_before": round(load, 2),
        "complete_score": round(statistics.median(complete), 2) if complete else None,
    }
    print(
        f"{executor:5s} {phase:4s} {summary['notebooks']:4d} nb  wall {wall:7.1f} s  "
        f"{summary['notebooks_per_min']:6.2f} nb/min  median {summary['median_s']} s  "
        f"p95 {summary['p95_s']} s  complete scored {summary['complete_score']}  "
        f"(load {load:.1f})",
        flush=True,
    )
    if complete and max(complete) == 0:
        print(
            "WARNING: every complete submission scored 0: the notebooks failed (is featurelab "
            "importable in the sandbox? run from the checkout the venv was installed from)",
            flush=True,
        )
    return {"summary": summary, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    available = course.assignments(course.REPO_ROOT)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=100)
    parser.add_argument("--assignments", default=",".join(available))
    parser.add_argument("--executors", default="local,dask", help="local, dask or both")
    parser.add_argument("--phases", default="cold,warm")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--realdata", default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    assignments = [a for a in args.assignments.split(",") if a]
    executors = [e for e in args.executors.split(",") if e]
    if set(executors) - set(EXECUTORS) or set(assignments) - set(available):
        sys.exit(f"executors: {', '.join(EXECUTORS)}; assignments: {', '.join(available)}")
    realdata = realdata_dir(args.realdata)
    with tempfile.TemporaryDirectory(prefix="featurelab-bench-class-") as tmp:
        work = Path(tmp)
        os.environ["FEATURELAB_DATA"] = str(build_data_root(realdata, work / "data"))
        stand_in_weights(work / "torch")
        template = batch.build_template(course.REPO_ROOT, assignments, work / "grading-work")
        subs, kind_of = make_class(
            template, assignments, args.students, work / "submissions", args.seed
        )
        counts = {k: list(kind_of.values()).count(k) for k in MIX}
        print(
            f"# {args.students} students x {len(assignments)} TPs = {len(subs)} notebooks "
            f"{counts}; grading profile, {os.cpu_count()} cores, shared cache",
            flush=True,
        )
        runs = [
            run_phase(work, subs, kind_of, assignments, executor, phase)
            for executor in executors
            for phase in args.phases.split(",")
        ]
    report = {
        "students": args.students,
        "assignments": assignments,
        "mix": counts,
        "cores": os.cpu_count(),
        "runs": runs,
    }
    print(json.dumps([run["summary"] for run in runs], indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":  # a Dask LocalCluster spawns processes that import this file
    sys.exit(main())
