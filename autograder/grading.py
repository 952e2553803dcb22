"""Grade one submission with nbgrader in its own isolated course (the batch around it, the
warm-up and the ``grade`` command: :mod:`autograder.batch`).

nbgrader's ``autograde`` cannot run in parallel on one gradebook, and a bad submission can
hang, crash or eat the machine. So:

* **Template, once per run**: the sources are copied into a template course and released
  there (``generate_assignment``), which writes the gradebook (hidden tests, checksums) and
  the release notebooks the repairs align submissions with. Cached in ``OUT/.work`` by a hash
  of the sources, so a resumed run reuses it.
* **One course per submission**: a temporary course with a *copy* of the template gradebook
  and the repaired notebook in ``submitted/<student>/<id>/<id>.ipynb``; ``nbgrader autograde``
  runs there as a subprocess under a wall-clock and a process-tree memory limit
  (:mod:`autograder.sandbox`), with the per-cell ``Execute.timeout``. N submissions run at once
  (threads that each supervise one process tree).
* **Sandbox and judge**: nbgrader's execute step is replaced by
  :class:`autograder.judged_execute.JudgedExecute`: the notebook runs in an OS sandbox
  (:mod:`autograder.jail`: own user, PID/network/mount namespaces, no access to the
  repository, the output folder or other submissions) with ``FEATURELAB_PROFILE`` (default
  ``grading``), the data and the shared feature cache read-only, and ``OMP_NUM_THREADS`` =
  cores / jobs. Hidden test cells only collect evidence; the judge
  (:mod:`autograder.judge`, outside the sandbox) scores it with the references of
  ``autograder/checks/`` and probes seeded per run.
* **Crashes**: a cell that kills the kernel (segfault, ``os._exit``) or exceeds the memory
  limit is skipped on a second attempt (the sandbox runner skips it) so the rest of the notebook
  is still graded; a submission over the wall clock is graded from the cells that finished.
  Nothing in one submission can stop the batch.
* **Resume**: each result is written atomically to ``OUT/.state/`` with a key hashing the
  submitted file, the assignment's sources (notebook, checks, thresholds, config, this code)
  and the grading options; a rerun regrades only what is missing or changed.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from . import course as course_mod
from . import repair as repair_mod
from .attempts import MAX_ATTEMPTS, _Tries, _try_again
from .course import (  # noqa: F401 (API)
    DEFAULT_DISK_MB,
    DEFAULT_MEMORY_MB,
    DEFAULT_PROFILE,
    DEFAULT_TIMEOUT_S,
)
from .judged_execute import (
    COURSE_ROOT_ENV,
    JAIL_ENV,
    JOURNAL_ENV,
    JUDGE_FILE_ENV,
    RUN_DIR_ENV,
    SKIP_ENV,
)
from .results import (
    Record,
    _graded_cells,
    _score_from_gradebook,
    _worst,
    read_journal,
    read_metrics,
    score_record,
)
from .sandbox import Limits, Worker
from .state import (  # noqa: F401 (the API of a grading run)
    _record_digest,
    _state_path,
    atomic_write_json,
    atomic_write_text,
    load_state,
    save_record,
    submission_key,
)
from .submissions import Submission
from .template import Template, course_config_text


class Cancelled(Exception):
    """The run was interrupted (Ctrl-C): the submission is left ungraded, to be resumed."""


@dataclass(frozen=True)
class Options:
    """Everything that changes how a submission is graded (part of the resume key)."""

    profile: str = DEFAULT_PROFILE
    timeout_cell: int | None = None  # None: Execute.timeout of nbgrader_config.py
    timeout: float | None = DEFAULT_TIMEOUT_S
    memory_mb: float | None = DEFAULT_MEMORY_MB
    disk_mb: float | None = DEFAULT_DISK_MB  # what the sandbox may write (scratch folder)
    insecure: bool = False  # run student code without the OS sandbox (explicit choice only)


def _notebook_text(notebook) -> str:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return nbformat.writes(notebook)


# --------------------------------------------------------------------------------------------
# one submission


@dataclass
class RunContext:
    template: Template
    options: Options
    out: Path
    work_dir: Path
    cache_dir: Path
    threads_per_job: int
    cancel: threading.Event
    keep_work: bool = False
    _local: threading.local = field(default_factory=threading.local)
    _workers: list = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    seed: int = 1  # the judge's probe seed for this run (secret: never enters a sandbox)

    def jail_settings(self, slot: int) -> dict:
        """What the sandboxes of worker ``slot`` see and run as (see autograder.judged_execute)."""
        from featurelab.data import data_root

        torch_home = Path(os.environ.get("TORCH_HOME") or Path.home() / ".cache" / "torch")
        return {
            "profile": self.options.profile,
            "data": str(data_root()),
            "shared_cache": str(self.cache_dir),
            "torch_home": str(torch_home) if torch_home.is_dir() else None,
            "threads": self.threads_per_job,
            "slot": slot,
            "seed": self.seed,
            "insecure": self.options.insecure,
        }

    def worker_env(self, slot: int = 1) -> dict[str, str]:
        """Environment of grading worker ``slot`` (trusted; the sandbox gets its own)."""
        extra = {
            "FEATURELAB_PROFILE": self.options.profile,
            "MPLBACKEND": "Agg",
            COURSE_ROOT_ENV: str(self.template.course_root),
            JAIL_ENV: json.dumps(self.jail_settings(slot)),
        }
        env = course_mod.base_env(self.work_dir / "jupyter", extra=extra)
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env.setdefault(name, str(self.threads_per_job))
        return env

    def worker(self) -> Worker:
        """This thread's grading worker (started lazily, replaced when it dies)."""
        worker = getattr(self._local, "worker", None)
        if worker is None:
            with self._lock:
                number = len(self._workers) + 1
                worker = Worker(
                    self.worker_env(number),
                    self.work_dir,
                    self.out / "logs" / "workers" / f"worker-{number}.log",
                )
                self._workers.append(worker)
            self._local.worker = worker
        return worker

    def close_workers(self) -> None:
        for worker in self._workers:
            worker.close()


def grade_one(submission: Submission, context: RunContext) -> Record:
    """Grade one submission and save its record; never raises (except :class:`Cancelled`)."""
    record, key = grade_unsaved(submission, context)
    return record if key is None else save_record(context.out, submission, key, record)


def grade_unsaved(
    submission: Submission, context: RunContext, data: bytes | None = None
) -> tuple[Record, str | None]:
    """Grade one submission without saving it: ``(record, resume key)``, the key None when
    there is nothing to resume (refused at intake, unreadable). ``data``: the file's bytes,
    read by the caller (a Dask worker cannot read the grader's files)."""
    started = time.monotonic()
    if submission.problem:  # refused at intake (empty folder, zip bomb, link...): never read
        record = _rejected(
            submission,
            submission.assignment,
            repair_mod.Rejected("invalid", submission.problem),
            context,
        )
        record.reasons += list(submission.notes)
        return record, None
    try:
        data = submission.path.read_bytes() if data is None else data
    except OSError as error:
        reason = f"cannot read the file: {error.strerror}"
        record = Record(submission.student, submission.assignment, submission.label, "invalid")
        record.reasons = [reason, *submission.notes]
        return record, None
    key = submission_key(data, submission, context)
    try:
        record = _grade(submission, data, context)
    except Cancelled:
        raise
    except Exception as error:  # noqa: BLE001 - a grader bug must not stop the batch
        record = Record(
            submission.student,
            submission.assignment,
            submission.label,
            "error",
            [f"internal grader error: {type(error).__name__}: {error}"],
        )
        log = context.out / "logs" / f"{submission.student}__internal.log"
        atomic_write_text(log, traceback.format_exc())
        record.log = str(log.relative_to(context.out))
    record.reasons += [note for note in submission.notes if note not in record.reasons]
    record.seconds = round(time.monotonic() - started, 2)
    return record, key


def _rejected(submission: Submission, assignment: str | None, rejection, context) -> Record:
    record = Record(
        submission.student, assignment, submission.label, rejection.status, [rejection.reason]
    )
    if assignment in context.template.releases:
        release = context.template.release(assignment)
        record.max_score = sum(
            float(m.get("points", 0)) for _, m, k in _graded_cells(release) if k == "auto"
        )
    return record


def _grade(submission: Submission, data: bytes, context: RunContext, *, promote=None) -> Record:
    """Grade one submission's bytes; ``promote(run_cache)`` is called after a trusted run
    (the reference's warm-up) with the feature cache its sandbox filled."""
    template = context.template
    expected = submission.assignment
    try:
        notebook = repair_mod.load_submission(data)
        assignment, notes = repair_mod.identify(notebook, template.releases, expected)
        notebook, repair_notes, repaired = repair_mod.repair(notebook, template.release(assignment))
    except repair_mod.Rejected as rejection:
        return _rejected(
            submission, expected if expected in template.releases else None, rejection, context
        )
    notes += repair_notes
    student = submission.student

    run_dir = Path(tempfile.mkdtemp(prefix=f"{student}-", dir=context.work_dir / "runs"))
    try:
        record = _autograde(
            submission, student, assignment, notebook, notes, repaired, run_dir, context
        )
        if promote is not None:
            promote(run_dir / "sandbox" / "cache")
        return record
    finally:
        if not context.keep_work:
            shutil.rmtree(run_dir, ignore_errors=True)


def _prepare_course(run_dir: Path, student: str, assignment: str, notebook, context) -> Path:
    template = context.template
    course = run_dir / "course"
    if course.exists():
        shutil.rmtree(course)
    submitted = course / "submitted" / student / assignment
    submitted.mkdir(parents=True)
    shutil.copyfile(template.root / "gradebook.db", course / "gradebook.db")
    # extra (non-notebook) files of the assignment: nbgrader copies them next to the notebook
    source = template.root / course_mod.SOURCE_DIR / assignment
    for path in source.rglob("*"):
        if path.is_file() and path.suffix != ".ipynb":
            target = course / course_mod.SOURCE_DIR / assignment / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    (course / "nbgrader_config.py").write_text(course_config_text(course, context.options))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nbformat.write(notebook, str(submitted / f"{assignment}.ipynb"))
    return course


def _submission_env(run_dir: Path) -> dict[str, str]:
    """Environment of one submission's kernel, on top of the worker's (see RunContext)."""
    return {
        RUN_DIR_ENV: str(run_dir),
        JOURNAL_ENV: str(run_dir / "journal.jsonl"),
        JUDGE_FILE_ENV: str(run_dir / "judge.json"),
    }


def judge_leftovers(run_dir: Path, context: RunContext, assignment: str) -> dict:
    """The judge's verdicts on the evidence a run left when nbgrader did not finish (the
    worker was killed): the tests that passed before a time-out or a crash keep their points.
    Runs in the grader, outside the sandbox, with the run's probes (same secret seed)."""
    from . import judge

    evidence_dir = run_dir / "sandbox" / "evidence"
    if not evidence_dir.is_dir():
        return {}
    try:
        module = judge.judge_module(context.template.course_root, assignment)
        probes = judge.make_probes(module, context.seed, context.options.profile)
    except Exception:  # noqa: BLE001 - no judge, no verdicts: the cells score 0
        return {}
    judge_context = judge.Context(assignment, context.options.profile, context.seed)
    verdicts = {}
    for gid, _meta, kind in _graded_cells(context.template.release(assignment)):
        if kind == "auto":
            evidence = judge.load_evidence(evidence_dir, gid)
            verdicts[gid] = judge.judge_cell(module, gid, evidence, probes, judge_context)
    return verdicts


def _autograde(submission, student, assignment, notebook, notes, repaired, run_dir, context):
    """Grade ``notebook`` with nbgrader in a course of its own, at most ``MAX_ATTEMPTS`` times:
    a cell that crashes the kernel or goes over the memory / disk limit is skipped on the next
    attempt (the rest of the notebook is still graded). Returns the :class:`Record`."""
    options = context.options
    log_path = context.out / "logs" / student / f"{assignment}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text("")
    env = _submission_env(run_dir)
    tries = _Tries(notes=notes, statuses=["repaired" if repaired or notes else "ok"])
    deadline = time.monotonic() + options.timeout if options.timeout else None
    for attempt in range(1, MAX_ATTEMPTS + 1):
        tries.count = attempt
        course = _prepare_course(run_dir, student, assignment, notebook, context)
        for name in ("journal.jsonl", "judge.json"):
            (run_dir / name).unlink(missing_ok=True)
        env[SKIP_ENV] = json.dumps({str(k): v for k, v in tries.skips.items()})
        remaining = None if deadline is None else max(1.0, deadline - time.monotonic())
        with open(log_path, "a") as log:
            log.write(
                f"\n===== attempt {attempt}: nbgrader autograde {assignment} "
                f"--student={student} (course {course}, skipped cells {sorted(tries.skips)})\n"
            )
        request = {
            "course": str(course),
            "assignment": assignment,
            "student": student,
            "env": env,
            "log": str(log_path),
        }
        outcome, _reply = context.worker().run(
            request,
            limits=Limits(
                wall_s=remaining,
                memory_mb=options.memory_mb,
                disk_mb=options.disk_mb,
                disk_path=run_dir / "sandbox",
            ),
            cancel=context.cancel,
        )
        tries.peak_mb = max(tries.peak_mb, outcome.peak_rss_mb)
        tries.journal = read_journal(run_dir / "journal.jsonl")
        if outcome.killed == "cancelled":
            raise Cancelled()
        graded = course / "autograded" / student / assignment / f"{assignment}.ipynb"
        if outcome.killed is None and outcome.returncode == 0 and graded.is_file():
            tries.grades = _score_from_gradebook(course / "gradebook.db", assignment, student)
            tries.autograded_nb = course_mod.read_notebook(graded)
            break
        if not _try_again(tries, outcome, log_path, run_dir, options):
            break
    return _record(submission, student, assignment, notebook, tries, run_dir, log_path, context)


def _record(submission, student, assignment, notebook, tries: _Tries, run_dir, log_path, context):
    """The :class:`Record` of a submission from what its attempts left."""
    template = context.template
    status = _worst(tries.statuses)
    record = Record(student, assignment, submission.label, status, tries.notes)
    record.attempts, record.peak_rss_mb = tries.count, round(tries.peak_mb, 1)
    record.metrics = read_metrics(run_dir)
    record.timings = [
        {
            "index": e["index"],
            "grade_id": e.get("grade_id"),
            "seconds": e["seconds"],
            "error": e.get("error"),
            "stderr": e.get("stderr", False),
        }
        for e in tries.journal
        if e.get("event") == "end"
    ]
    # the graded notebook (the submitted one when nbgrader did not finish), for hand grading
    graded_nb = tries.autograded_nb
    record.notebook = _notebook_text(graded_nb if graded_nb is not None else notebook)
    record.log = str(log_path.relative_to(context.out))
    release = template.release(assignment)
    auto_max = sum(float(m.get("points", 0)) for _, m, k in _graded_cells(release) if k == "auto")
    record.max_score = auto_max
    grades = tries.grades
    verdicts = judge_leftovers(run_dir, context, assignment) if grades is None else None
    if (
        status == "error"
        and grades is None
        and not any(v is not None and v.passed for v in (verdicts or {}).values())
    ):
        record.score = 0.0
        return record
    timeout_s = context.options.timeout_cell or template.execute_timeout
    score_record(record, template, grades, graded_nb, tries.journal, timeout_s, verdicts)
    return record
