"""Grading throughput: ``python -m autograder grade`` (--jobs 1, --jobs 2) vs plain nbgrader.

    .venv/bin/python bench/grading.py [--assignment tp6_resnet18_features] [--n 8]

The same N submissions of one TP (copies of the solution as a student would submit it, each
under its own student id) are graded three ways in the smoke profile, each with a fresh
feature cache and a fresh gradebook:

* ``plain``: nbgrader's own ``nbgrader autograde <id>`` over all students, one process,
  sequential (what an instructor runs without this project);
* ``jobs=1`` / ``jobs=2``: ``autograder.batching.grade_batch`` (template gradebook copied per
  submission, persistent workers, limits, repairs, journal), 1 then 2 workers.

Prints wall times and submissions per minute. Numbers, not pass/fail: the machine's load
matters (the load average is printed with them).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from autograder import batch as batching  # noqa: E402
from autograder import course, students, template  # noqa: E402
from autograder.submissions import Submission  # noqa: E402


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.1f}/{five:.1f}"


def plain_nbgrader(assignment: str, notebooks: list[Path], work: Path, env: dict) -> float:
    """``nbgrader autograde`` over every student in one process (sequential); wall seconds."""
    root = work / "plain-course"
    course.copy_sources(course.REPO_ROOT, [assignment], root)
    (root / "nbgrader_config.py").write_text(template.course_config_text(root, None))
    course.run_nbgrader(
        "generate_assignment",
        assignment,
        "--force",
        course_root=root,
        work_dir=work / "plain-jupyter",
    )
    for index, notebook in enumerate(notebooks):
        target = root / "submitted" / f"student{index:02d}" / assignment / f"{assignment}.ipynb"
        target.parent.mkdir(parents=True)
        shutil.copyfile(notebook, target)
    command = course.nbgrader_command("autograde", assignment, "--force", course_root=root)
    run_env = {**course.base_env(work / "plain-jupyter"), **env}
    started = time.monotonic()
    result = subprocess.run(command, cwd=root, env=run_env, capture_output=True, text=True)
    seconds = time.monotonic() - started
    if result.returncode != 0:
        print(result.stdout[-3000:], result.stderr[-3000:])
        raise SystemExit("plain nbgrader autograde failed")
    return seconds


def ours(assignment: str, notebooks: list[Path], work: Path, jobs: int, cache: Path) -> float:
    batch = [
        Submission(f"student{i:02d}", assignment, path, f"{i}/{path.name}", "flat")
        for i, path in enumerate(notebooks)
    ]
    started = time.monotonic()
    result = batching.grade_batch(
        batch,
        out=work / f"out-jobs{jobs}",
        course_root=course.REPO_ROOT,
        options=batching.Options(profile="smoke", timeout_cell=600),
        jobs=jobs,
        cache_dir=cache,
        progress=False,
        resume=False,
    )
    seconds = time.monotonic() - started
    bad = [r for r in result.records if r.score < r.max_score]
    if bad:
        raise SystemExit(f"unexpected scores: {[(r.student, r.score, r.reason) for r in bad]}")
    return seconds


def main() -> int:
    available = course.assignments(course.REPO_ROOT)
    default = next(
        (a for a in ("tp6_resnet18_features", "tp1_vgg16_architecture") if a in available), None
    )
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assignment", default=default)
    parser.add_argument("--n", type=int, default=8, help="number of submissions")
    parser.add_argument("--modes", default="plain,jobs1,jobs2")
    args = parser.parse_args()
    if args.assignment not in available:
        raise SystemExit(f"assignment {args.assignment!r} not in solutions/")
    from featurelab.data import ensure_fixtures

    with tempfile.TemporaryDirectory(prefix="featurelab-bench-grading-") as tmp:
        work = Path(tmp)
        data = work / "data"
        ensure_fixtures(data / "fixtures")
        os.environ["FEATURELAB_DATA"] = str(data)
        template = batching.build_template(course.REPO_ROOT, [args.assignment], work / "template")
        source = course.read_notebook(course.source_notebook(course.REPO_ROOT, args.assignment))
        solved = students.solved_release(source, template.release(args.assignment).notebook)
        notebooks = []
        for index in range(args.n):
            path = work / "submissions" / f"student{index:02d}_{args.assignment}.ipynb"
            students.write(solved, path)
            notebooks.append(path)
        print(f"{args.n} submissions of {args.assignment}, smoke profile, {os.cpu_count()} cores")
        rows = []
        for mode in args.modes.split(","):
            cache = work / f"cache-{mode}"
            before = _load()
            if mode == "plain":
                env = {
                    "FEATURELAB_PROFILE": "smoke",
                    "FEATURELAB_CACHE": str(cache),
                    "FEATURELAB_DATA": str(data),
                }
                seconds = plain_nbgrader(args.assignment, notebooks, work, env)
                label = "plain nbgrader autograde (sequential)"
            else:
                jobs = int(mode.removeprefix("jobs"))
                seconds = ours(args.assignment, notebooks, work, jobs, cache)
                label = f"python -m autograder grade --jobs {jobs}"
            rows.append((label, seconds, args.n / seconds * 60, f"{before} -> {_load()}"))
            print(
                f"  {label:42s} {seconds:7.1f} s  {rows[-1][2]:5.2f} submissions/min  ({rows[-1][3]})",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
