"""Grade a batch: the template course, the trusted warm-up runs, N submissions in parallel,
resume from ``OUT/.state``, the ``grade`` command (per-submission grading: :mod:`autograder.grading`).
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from . import course as course_mod
from .course import REPO_ROOT, AutograderError
from .grading import (
    DEFAULT_MEMORY_MB,
    DEFAULT_PROFILE,
    DEFAULT_TIMEOUT_S,
    Cancelled,
    Options,
    RunContext,
    _grade,
    _state_path,
    grade_one,
    load_state,
    submission_key,
)
from .results import Record
from .submissions import Submission, collect
from .template import build_template

# --------------------------------------------------------------------------------------------
# the batch


@dataclass
class BatchResult:
    records: list[Record]
    out: Path
    graded: int  # graded in this run (the rest came from OUT/.state)
    interrupted: bool = False
    references: list[Record] = field(default_factory=list)  # the cache warm-up runs


# --------------------------------------------------------------------------------------------
# the shared feature cache: filled by trusted runs only


WARM_UP_MIN_SUBMISSIONS = 3  # warm the cache for an assignment with at least this many


def promote_cache_entries(source: Path, shared: Path) -> int:
    """Copy the valid feature-cache entries of a *trusted* run (the reference solution) into the
    shared cache that every sandbox reads (never a student's: that would let one student poison
    another's features). Atomic per entry; entries already there are kept. Returns the count."""
    from featurelab import cache

    promoted = 0
    if not source.is_dir():
        return 0
    shared.mkdir(parents=True, exist_ok=True)
    for path in source.glob(f"*{cache.SUFFIX}"):
        key = path.name[: -len(cache.SUFFIX)]
        target = cache.entry_path(shared, key)
        if target.exists() or path.is_symlink() or cache.load(source, key) is None:
            continue
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
        shutil.copyfile(path, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
        promoted += 1
    return promoted


def warm_up(assignment: str, context: RunContext) -> Record:
    """Grade the reference solution of ``assignment`` first, as a student would submit it, and
    promote the features it extracted into the shared cache (read-only for students).

    Its record is a check of the course itself: anything but full marks means the thresholds,
    the data or the solution are off for this profile, and the run says so.
    """
    from . import students

    folder = context.work_dir / "references"
    folder.mkdir(parents=True, exist_ok=True)
    source = course_mod.read_notebook(course_mod.source_notebook(context.template.root, assignment))
    solved = students.solved_release(source, context.template.release(assignment).notebook)
    path = folder / f"{assignment}.ipynb"
    nbformat.write(solved, str(path))
    submission = Submission("reference", assignment, path, f"reference/{assignment}", "flat")
    return _grade(
        submission,
        path.read_bytes(),
        context,
        promote=lambda run_cache: promote_cache_entries(run_cache, context.cache_dir),
    )


def _default_jobs() -> int:
    return max(1, os.cpu_count() or 1)


def grade_batch(
    submissions: list[Submission],
    *,
    out: Path,
    course_root: Path = REPO_ROOT,
    options: Options | None = None,
    jobs: int | None = None,
    cache_dir: Path | None = None,
    progress: bool = True,
    resume: bool = True,
    keep_work: bool = False,
    assignments: list[str] | None = None,
    work_dir: Path | None = None,
    warm_up_min: int = WARM_UP_MIN_SUBMISSIONS,
) -> BatchResult:
    """Grade ``submissions`` into ``out`` (state, logs; reports are written by the caller).

    An assignment with at least ``warm_up_min`` submissions to grade first gets a trusted run
    of its reference solution (:func:`warm_up`), which fills the shared feature cache.

    ``work_dir`` (default ``out/.work``) holds the template course (reused by any run with the
    same sources), the per-submission temporary courses and the kernels' IPython profile.
    """
    from tqdm.auto import tqdm

    options = options or Options()
    out = Path(out).resolve()
    work_dir = Path(work_dir).resolve() if work_dir else out / ".work"
    (work_dir / "runs").mkdir(parents=True, exist_ok=True)
    cache_dir = Path(cache_dir).resolve() if cache_dir else out / ".cache"
    cache_dir.mkdir(parents=True, exist_ok=True)
    assignment_ids = assignments or course_mod.assignments(course_root)
    if not assignment_ids:
        raise AutograderError(f"no assignment in {Path(course_root) / course_mod.SOURCE_DIR}")
    from . import jail, judge

    jail.require_jail(options.insecure)
    if not options.insecure:
        from featurelab.data import data_root

        torch_home = Path(os.environ.get("TORCH_HOME") or Path.home() / ".cache" / "torch")
        unreadable = jail.unreadable_for_sandbox([str(data_root()), str(torch_home)])
        if unreadable:
            raise AutograderError(
                "the grading sandbox runs as an unprivileged user that cannot read "
                + ", ".join(unreadable)
                + ": make them readable (chmod o+rx on the folder, "
                "o+r on the files), or move the data/weights elsewhere"
            )
    if options.insecure:
        import sys

        print(
            "WARNING: --insecure: student code runs WITHOUT the OS sandbox; it can read the "
            "references and change any grade. Only for code you trust.",
            file=sys.stderr,
        )
    if options.profile == "smoke":  # the sandbox sees the data read-only: build them first
        from featurelab.data import data_root, ensure_fixtures

        ensure_fixtures(data_root() / "fixtures")
    template = build_template(course_root, assignment_ids, work_dir)
    jobs = max(1, min(jobs or _default_jobs(), len(submissions) or 1))
    context = RunContext(
        template,
        options,
        out,
        work_dir,
        cache_dir,
        threads_per_job=max(1, (os.cpu_count() or 1) // jobs),
        cancel=threading.Event(),
        keep_work=keep_work,
        seed=judge.run_seed(),
    )

    records: dict[int, Record] = {}
    todo: list[int] = []
    for index, submission in enumerate(submissions):
        state = _state_path(out, submission)
        if resume and state.is_file():
            try:
                data = submission.path.read_bytes()
                saved = load_state(state, submission_key(data, submission, context))
                if saved is not None:
                    records[index] = saved
                    continue
            except OSError:
                pass
        todo.append(index)

    counts: dict[str, int] = {}
    for index in todo:
        if submissions[index].assignment:
            counts[submissions[index].assignment] = counts.get(submissions[index].assignment, 0) + 1
    to_warm = sorted(
        a for a, n in counts.items() if n >= warm_up_min and a in context.template.releases
    )
    references: list[Record] = []
    bar = tqdm(total=len(todo), desc="grading", unit="nb", disable=not progress or not todo)
    interrupted = False
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=jobs)
    futures: dict = {}
    try:
        # first the trusted reference runs that fill the shared feature cache, in parallel
        for future in concurrent.futures.as_completed(
            [executor.submit(warm_up, a, context) for a in to_warm]
        ):
            try:
                references.append(future.result())
            except Cancelled:
                continue
        futures = {executor.submit(grade_one, submissions[i], context): i for i in todo}
        for future in concurrent.futures.as_completed(futures):
            index = futures[future]
            try:
                records[index] = future.result()
            except Cancelled:
                continue
            bar.update(1)
            bar.set_postfix_str(f"{records[index].student}: {records[index].status}")
    except KeyboardInterrupt:
        interrupted = True
        context.cancel.set()
        for future in futures:
            future.cancel()
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
        context.close_workers()
        bar.close()
    ordered = [records[i] for i in sorted(records)]
    return BatchResult(
        ordered,
        out,
        graded=len([i for i in todo if i in records]),
        interrupted=interrupted,
        references=references,
    )


def grade(
    submissions: Path,
    *,
    out: Path,
    course_root: Path = REPO_ROOT,
    assignment: str | None = None,
    profile: str = DEFAULT_PROFILE,
    jobs: int | None = None,
    timeout_cell: int | None = None,
    timeout: float | None = DEFAULT_TIMEOUT_S,
    memory_mb: float | None = DEFAULT_MEMORY_MB,
    cache_dir: Path | None = None,
    progress: bool = True,
    resume: bool = True,
    keep_work: bool = False,
    insecure: bool = False,
    work_dir: Path | None = None,
) -> BatchResult:
    """``python -m autograder grade``: collect, grade in parallel, write every report.

    Writes ``out/grades.csv``, ``out/feedback/<student>/<assignment>.html`` and
    ``out/results/<student>.json`` (Gradescope schema); see :mod:`autograder.report`.
    """
    from . import report

    course_root = Path(course_root).resolve()
    known = course_mod.assignments(course_root)
    if assignment is not None and assignment not in known:
        raise AutograderError(
            f"unknown assignment {assignment!r}; the course has: {', '.join(known)}"
        )
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    batch = collect(
        Path(submissions),
        assignments=known,
        assignment=assignment,
        unpack_dir=out / ".work" / "unpacked",
    )
    options = Options(
        profile=profile,
        timeout_cell=timeout_cell,
        timeout=timeout,
        memory_mb=memory_mb,
        insecure=insecure,
    )
    result = grade_batch(
        batch,
        out=out,
        course_root=course_root,
        options=options,
        jobs=jobs,
        cache_dir=cache_dir,
        progress=progress,
        resume=resume,
        keep_work=keep_work,
        work_dir=work_dir,
    )
    report.write_reports(result.records, out, course_root=course_root)
    return result


def main(submissions: Path, *, out: Path, quiet: bool = False, **kwargs) -> int:
    """CLI entry point of ``grade`` (exit code: 0 done, 130 interrupted)."""
    import sys

    from . import report

    result = grade(submissions, out=out, progress=not quiet, **kwargs)
    for reference in result.references:
        full = reference.status in ("ok", "repaired") and reference.score >= reference.max_score
        print(
            f"reference solution of {reference.assignment} (cache warm-up): "
            f"{reference.score:g}/{reference.max_score:g}"
            + (
                ""
                if full
                else " -- NOT full marks: check the thresholds (calibrate), the "
                "data and the weights of this profile"
            ),
            file=sys.stderr,
        )
    course_root = Path(kwargs.get("course_root", REPO_ROOT))
    work = Path(kwargs.get("work_dir") or Path(out).resolve() / ".work")
    templates = sorted(work.glob("template-*/complete"), key=lambda p: p.stat().st_mtime)
    if templates:
        template_root = templates[-1].parent
        for assignment in course_mod.assignments(template_root):
            committed = course_mod.release_notebook(course_root, assignment)
            fresh = course_mod.release_notebook(template_root, assignment)
            if committed.is_file() and committed.read_bytes() != fresh.read_bytes():
                print(
                    f"note: {committed} differs from a fresh release of the source: students "
                    "may hold an older release (graded against the current source; run "
                    "`python -m autograder release --check`)",
                    file=sys.stderr,
                )
    if not quiet:
        print(report.format_table(result.records))
    out = Path(out)
    reused = len(result.records) - result.graded
    print(
        f"{len(result.records)} submission(s): {result.graded} graded now"
        + (f", {reused} from an earlier run" if reused else "")
        + f"\ngrades:   {out / 'grades.csv'}\nfeedback: {out / 'feedback'}/<student>/"
        f"<assignment>.html\nresults:  {out / 'results'}/<student>.json (Gradescope)"
    )
    if result.interrupted:
        print("interrupted: rerun the same command to grade the rest (finished ones are kept)")
        return 130
    return 0
