"""Grade a batch: the template course, the trusted warm-up runs, N submissions in parallel,
resume from ``OUT/.state``, the ``grade`` command (per-submission grading: :mod:`autograder.grading`).
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
import shutil
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from . import course as course_mod
from .course import REPO_ROOT, AutograderError
from .gradebook import update_after_grade as report_course
from .grading import (
    DEFAULT_DISK_MB,
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
    from featurelab import _io, cache

    promoted = 0
    if not source.is_dir():
        return 0
    shared.mkdir(parents=True, exist_ok=True)
    for path in source.glob(f"*{cache.SUFFIX}"):
        key = path.name[: -len(cache.SUFFIX)]
        target = cache.entry_path(shared, key)
        if target.exists() or path.is_symlink() or cache.load(source, key) is None:
            continue
        # a unique temporary file, fsync-ed, renamed into place: safe with concurrent writers
        # (several workers, machines sharing the folder over NFS); readers check the CRC
        with open(path, "rb") as source_file, _io.atomic_writer(target) as target_file:
            shutil.copyfileobj(source_file, target_file)
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


def check_sandbox(options: Options) -> None:
    """Refuse to grade where the OS sandbox cannot run (unless ``--insecure``) or cannot read
    the data and the weights (run where the sandboxes run: here, or on each Dask worker)."""
    from . import jail

    jail.require_jail(options.insecure)
    if options.insecure:
        return
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


def prepare_data(options: Options) -> None:
    """The sandbox sees the data read-only: build the smoke profile's fixtures first."""
    if options.profile == "smoke":
        from featurelab.data import data_root, ensure_fixtures

        ensure_fixtures(data_root() / "fixtures")


# --------------------------------------------------------------------------------------------
# executors: where the submissions run (this machine's threads, or a Dask cluster)


@dataclass
class Plan:
    """One run for an executor: the context, the submissions, the indexes of those to grade
    now, and the assignments whose reference runs warm the shared cache first."""

    context: RunContext
    submissions: list[Submission]
    todo: list[int]
    to_warm: list[str]
    jobs: int


# executor(plan, on_reference(record), on_record(index, record)) -> interrupted?
Executor = Callable[[Plan, Callable[[Record], None], Callable[[int, Record], None]], bool]


def run_local(plan: Plan, on_reference, on_record) -> bool:
    """The embedded pool: ``plan.jobs`` threads, each supervising one grading worker; every
    record is saved in ``OUT/.state`` by :func:`grade_one` as it finishes."""
    context = plan.context
    interrupted = False
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=plan.jobs)
    futures: dict = {}
    try:
        # first the trusted reference runs that fill the shared feature cache, in parallel
        for future in concurrent.futures.as_completed(
            [executor.submit(warm_up, a, context) for a in plan.to_warm]
        ):
            try:
                on_reference(future.result())
            except Cancelled:
                continue
        futures = {executor.submit(grade_one, plan.submissions[i], context): i for i in plan.todo}
        for future in concurrent.futures.as_completed(futures):
            try:
                on_record(futures[future], future.result())
            except Cancelled:
                continue
    except KeyboardInterrupt:
        interrupted = True
        context.cancel.set()
        for future in futures:
            future.cancel()
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
        context.close_workers()
    return interrupted


def executor_for(scheduler: str | None) -> Executor:
    """No scheduler: :func:`run_local`; ``tcp://HOST:PORT`` or ``local:N``: Dask
    (:mod:`autograder.cluster`)."""
    if scheduler is None:
        return run_local
    from . import cluster

    return functools.partial(cluster.run, scheduler=cluster.parse_scheduler(scheduler))


# --------------------------------------------------------------------------------------------
# the batch


def _resumed(
    submissions: list[Submission], context: RunContext, resume: bool
) -> tuple[dict[int, Record], list[int]]:
    """The records saved by an earlier run with the same key, and the indexes still to grade."""
    records: dict[int, Record] = {}
    todo: list[int] = []
    for index, submission in enumerate(submissions):
        state = _state_path(context.out, submission)
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
    return records, todo


def _to_warm(plan_todo: list[Submission], context: RunContext, warm_up_min: int) -> list[str]:
    counts: dict[str, int] = {}
    for submission in plan_todo:
        if submission.assignment:
            counts[submission.assignment] = counts.get(submission.assignment, 0) + 1
    return sorted(
        a for a, n in counts.items() if n >= warm_up_min and a in context.template.releases
    )


def _before_grading(options: Options, scheduler: str | None) -> None:
    """On this machine: the sandbox checked and the datasets prepared (on a cluster each
    worker checks where its sandboxes run); the warning of ``--insecure``."""
    if scheduler is None:  # on a cluster, each worker checks where its sandboxes run
        check_sandbox(options)
    if options.insecure:
        print(
            "WARNING: --insecure: student code runs WITHOUT the OS sandbox; it can read the "
            "references and change any grade. Only for code you trust.",
            file=sys.stderr,
        )
    if scheduler is None:
        prepare_data(options)


def _execute(
    executor: Executor,
    context: RunContext,
    submissions: list[Submission],
    todo: list[int],
    to_warm: list[str],
    jobs: int,
    records: dict[int, Record],
    references: list[Record],
    progress: bool,
) -> bool:
    """Grade ``todo`` (after the reference runs of ``to_warm``) with ``executor`` and a
    progress bar, filling ``records`` and ``references``; the workers are closed after.
    True when interrupted."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo), desc="grading", unit="nb", disable=not progress or not todo)

    def on_record(index: int, record: Record) -> None:
        records[index] = record
        bar.update(1)
        bar.set_postfix_str(f"{record.student}: {record.status}")

    try:
        plan = Plan(context, submissions, todo, to_warm, jobs)
        return executor(plan, references.append, on_record) if todo else False
    finally:
        context.close_workers()
        bar.close()


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
    scheduler: str | None = None,
) -> BatchResult:
    """Grade ``submissions`` into ``out`` (state, logs; reports are written by the caller).

    An assignment with at least ``warm_up_min`` submissions to grade first gets a trusted run
    of its reference solution (:func:`warm_up`), which fills the shared feature cache.

    ``work_dir`` (default ``out/.work``) holds the template course (reused by any run with the
    same sources), the per-submission temporary courses and the kernels' IPython profile.
    ``scheduler``: None (this machine's threads, ``jobs`` of them), ``tcp://HOST:PORT`` (an
    existing Dask cluster) or ``local:N`` (N local Dask worker processes); see
    :mod:`autograder.cluster`. ``cache_dir`` must then be a folder every worker sees.
    """
    from . import judge

    options = options or Options()
    executor = executor_for(scheduler)
    out = Path(out).resolve()
    work_dir = Path(work_dir).resolve() if work_dir else out / ".work"
    (work_dir / "runs").mkdir(parents=True, exist_ok=True)
    cache_dir = Path(cache_dir).resolve() if cache_dir else out / ".cache"
    cache_dir.mkdir(parents=True, exist_ok=True)
    assignment_ids = assignments or course_mod.assignments(course_root)
    if not assignment_ids:
        raise AutograderError(f"no assignment in {Path(course_root) / course_mod.SOURCE_DIR}")
    _before_grading(options, scheduler)
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
    records, todo = _resumed(submissions, context, resume)
    to_warm = _to_warm([submissions[i] for i in todo], context, warm_up_min)
    references: list[Record] = []
    interrupted = _execute(
        executor, context, submissions, todo, to_warm, jobs, records, references, progress
    )
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
    disk_mb: float | None = DEFAULT_DISK_MB,
    cache_dir: Path | None = None,
    progress: bool = True,
    resume: bool = True,
    keep_work: bool = False,
    insecure: bool = False,
    work_dir: Path | None = None,
    scheduler: str | None = None,
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
        disk_mb=disk_mb,
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
        scheduler=scheduler,
    )
    report.write_reports(result.records, out, course_root=course_root)
    report_course(result.records, out, course_root=course_root, work_dir=work_dir)
    return result


def main(submissions: Path, *, out: Path, quiet: bool = False, **kwargs) -> int:
    """CLI entry point of ``grade`` (exit code: 0 done, 130 interrupted)."""
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
