"""``python -m autograder``: the instructor's command line (thin: parse, then call a function).

    python -m autograder release [ASSIGNMENT ...] [--check]
    python -m autograder release --student DIR [--git] [--force] [--allow-placeholder]
    python -m autograder grade SUBMISSIONS --out DIR [--jobs N] [--profile P] [--assignment A]
                               [--timeout-cell S] [--timeout S] [--memory-mb M] [--disk-mb D]
                               [--cache DIR]
                               [--accept-uncalibrated] [--insecure]
                               [--scheduler tcp://HOST:PORT | local:N]
    python -m autograder calibrate [--profile P] [--assignment A ...] [--margin M | metric=M ...]
    python -m autograder preflight [--assignment A ...] [--profile P] [--jobs N]
    python -m autograder demo [--out DIR] [--jobs N]
    python -m autograder gradebook OUT            (the nbgrader course formgrader opens)
    python -m autograder questions OUT [--port P] [--names]   (grade by question)
    python -m autograder export OUT [--to DIR]    (final grades: auto + hand points)

Every command works on the course at the repository root (``--course-root`` for another one).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from featurelab.profiles import PROFILES

from .course import (
    DEFAULT_DISK_MB,
    DEFAULT_MEMORY_MB,
    DEFAULT_PROFILE,
    DEFAULT_TIMEOUT_S,
    REPO_ROOT,
    AutograderError,
)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m autograder",
        description="featurelab instructor tools: release, grade, calibrate, preflight, demo.",
    )
    parser.add_argument(
        "--course-root",
        type=Path,
        default=REPO_ROOT,
        help="course root (solutions/, notebooks/); default: the repository",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    release = commands.add_parser("release", help="regenerate notebooks/ from solutions/")
    release.add_argument(
        "assignments", nargs="*", metavar="ASSIGNMENT", help="assignment ids (default: all)"
    )
    release.add_argument(
        "--check",
        action="store_true",
        help="do not write: exit 1 if notebooks/ is stale or leaks a solution",
    )
    release.add_argument(
        "--student",
        type=Path,
        default=None,
        metavar="DIR",
        help="instead of notebooks/: write the student edition (a repository "
        "students clone or pip-install) into DIR",
    )
    release.add_argument(
        "--git",
        action="store_true",
        help="with --student: make DIR a git repository, one commit tagged "
        "with the ref of autograder/course.toml",
    )
    release.add_argument(
        "--force",
        action="store_true",
        help="with --student: replace the content of a non-empty DIR (.git kept)",
    )
    release.add_argument(
        "--allow-placeholder",
        action="store_true",
        help="with --student: build even with the placeholder course identity "
        "(tests and demos only)",
    )

    grade = commands.add_parser("grade", help="autograde submissions in parallel")
    grade.add_argument(
        "submissions",
        type=Path,
        help="nbgrader submitted/ tree, a folder of .ipynb files, or a .zip",
    )
    grade.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output folder: grades.csv, feedback/, results/ (resumable)",
    )
    grade.add_argument(
        "--jobs",
        "-j",
        type=_positive_int,
        default=None,
        help="parallel submissions (default: the number of cores)",
    )
    grade.add_argument(
        "--profile",
        choices=PROFILES,
        default=DEFAULT_PROFILE,
        help=f"FEATURELAB_PROFILE of the grading kernels (default: {DEFAULT_PROFILE})",
    )
    grade.add_argument(
        "--assignment",
        default=None,
        help="grade every notebook as this assignment (default: from the "
        "folders, the file names, or the notebook itself)",
    )
    grade.add_argument(
        "--timeout-cell",
        type=_positive_int,
        default=None,
        metavar="S",
        help="per-cell time limit in seconds (default: Execute.timeout of "
        "autograder/nbgrader_config.py)",
    )
    grade.add_argument(
        "--timeout",
        type=_positive_float,
        default=DEFAULT_TIMEOUT_S,
        metavar="S",
        help=f"wall-clock limit per submission in seconds (default: {DEFAULT_TIMEOUT_S:g})",
    )
    grade.add_argument(
        "--memory-mb",
        type=_positive_float,
        default=DEFAULT_MEMORY_MB,
        metavar="M",
        help=f"memory limit per submission: RSS of its process tree (default: {DEFAULT_MEMORY_MB:g})",
    )
    grade.add_argument(
        "--disk-mb",
        type=_positive_float,
        default=DEFAULT_DISK_MB,
        metavar="D",
        help="disk limit per submission: the files its sandbox writes "
        f"(default: {DEFAULT_DISK_MB:g})",
    )
    grade.add_argument(
        "--cache",
        type=Path,
        default=None,
        metavar="DIR",
        help="feature cache shared by the workers (default: OUT/.cache)",
    )
    grade.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="grade on Dask: tcp://HOST:PORT (a running scheduler; --cache then on a folder "
        "every worker sees) or local:N (N worker processes here); default: this machine's "
        "threads (--jobs)",
    )
    grade.add_argument(
        "--no-resume",
        action="store_true",
        help="regrade everything, even submissions graded by an earlier run",
    )
    grade.add_argument(
        "--insecure",
        action="store_true",
        help="run student code WITHOUT the OS sandbox (only for code you trust, "
        "on a machine where bubblewrap cannot run)",
    )
    grade.add_argument(
        "--keep-work",
        action="store_true",
        help="keep the temporary course of each submission (debugging)",
    )
    grade.add_argument("--quiet", "-q", action="store_true", help="no progress bar, no table")
    grade.add_argument(
        "--accept-uncalibrated",
        action="store_true",
        help="grade in the grading/full profile even with thresholds never "
        "measured with pretrained weights (see `calibrate`)",
    )

    calibrate = commands.add_parser(
        "calibrate", help="run the solutions, record their metrics, write thresholds.json"
    )
    calibrate.add_argument("--profile", choices=PROFILES, default=DEFAULT_PROFILE)
    calibrate.add_argument(
        "--assignment",
        action="append",
        default=None,
        help="assignment id (repeatable; default: all)",
    )
    calibrate.add_argument(
        "--margin",
        action="append",
        default=None,
        metavar="M|METRIC=M",
        help="threshold = reference - margin; a number for every metric or "
        "METRIC=M for one (repeatable; default: 0.05)",
    )
    calibrate.add_argument("--jobs", "-j", type=_positive_int, default=None)
    calibrate.add_argument(
        "--thresholds",
        type=Path,
        default=None,
        help="thresholds file (default: autograder/thresholds.json)",
    )
    calibrate.add_argument("--dry-run", action="store_true", help="print, do not write")

    preflight = commands.add_parser(
        "preflight", help="check the sources, the release and per-cell times before grading"
    )
    preflight.add_argument(
        "--assignment",
        action="append",
        default=None,
        help="assignment id (repeatable; default: all)",
    )
    preflight.add_argument(
        "--profile",
        choices=PROFILES,
        default=DEFAULT_PROFILE,
        help=f"profile the solutions run in (default: {DEFAULT_PROFILE})",
    )
    preflight.add_argument("--jobs", "-j", type=_positive_int, default=None)
    preflight.add_argument("--timeout-cell", type=_positive_int, default=None, metavar="S")
    preflight.add_argument(
        "--static-only", action="store_true", help="only the checks that run nothing (fast)"
    )

    demo = commands.add_parser("demo", help="offline demo: fixtures, release, grade a class")
    demo.add_argument("--out", type=Path, default=REPO_ROOT / "demo")
    demo.add_argument("--jobs", "-j", type=_positive_int, default=None)
    _add_hand_grading_commands(commands)
    return parser


def _add_hand_grading_commands(commands) -> None:
    """``gradebook``, ``questions``, ``export``: the hand-graded answers and the final grades."""
    gradebook = commands.add_parser(
        "gradebook", help="write OUT/course, the nbgrader course formgrader opens"
    )
    gradebook.add_argument("out", type=Path, metavar="OUT", help="the --out folder of `grade`")
    questions = commands.add_parser(
        "questions", help="grade the free-text answers one question at a time (web page)"
    )
    questions.add_argument("out", type=Path, metavar="OUT", help="the --out folder of `grade`")
    questions.add_argument("--port", type=int, default=8800, help="default: 8800 (0: any)")
    questions.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1 (local only)")
    questions.add_argument(
        "--names", action="store_true", help="show the student ids (default: anonymised)"
    )
    export = commands.add_parser(
        "export", help="final grades.csv, LMS CSV, Gradescope results and feedback"
    )
    export.add_argument("out", type=Path, metavar="OUT", help="the --out folder of `grade`")
    export.add_argument("--to", type=Path, default=None, metavar="DIR", help="default: OUT/export")


def _terminate_as_interrupt(signum, frame):  # noqa: ARG001 - signal handler signature
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import signal
    import threading

    previous = None
    if threading.current_thread() is threading.main_thread():
        # SIGTERM (kill, a batch scheduler) takes the same clean path as Ctrl-C: running
        # submissions are stopped, finished ones stay recorded for the resumed run.
        previous = signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    try:
        return _dispatch(args)
    except AutograderError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _dispatch(args: argparse.Namespace) -> int:
    course_root = args.course_root.resolve()
    commands = {
        "release": _release,
        "grade": _grade,
        "calibrate": _calibrate,
        "preflight": _preflight,
        "gradebook": _dispatch_hand_grading,
        "questions": _dispatch_hand_grading,
        "export": _dispatch_hand_grading,
        "demo": _demo,
    }
    return commands[args.command](args, course_root)


def _release(args: argparse.Namespace, course_root: Path) -> int:
    if args.student is not None:
        if args.check:
            raise AutograderError("--check and --student do not go together")
        from . import edition

        return edition.main(
            target=args.student,
            course_root=course_root,
            assignments=args.assignments or None,
            git=args.git,
            force=args.force,
            allow_placeholder=args.allow_placeholder,
        )
    if args.git or args.force or args.allow_placeholder:
        raise AutograderError("--git, --force and --allow-placeholder go with --student DIR")
    from . import release

    return release.main(
        course_root=course_root, assignments=args.assignments or None, check_only=args.check
    )


def _grade(args: argparse.Namespace, course_root: Path) -> int:
    if not args.accept_uncalibrated:
        from .calibrate import require_calibrated

        require_calibrated(
            course_root, args.profile, [args.assignment] if args.assignment else None
        )
    from . import batch

    return batch.main(
        args.submissions,
        out=args.out,
        course_root=course_root,
        assignment=args.assignment,
        profile=args.profile,
        jobs=args.jobs,
        timeout_cell=args.timeout_cell,
        timeout=args.timeout,
        memory_mb=args.memory_mb,
        disk_mb=args.disk_mb,
        cache_dir=args.cache,
        resume=not args.no_resume,
        keep_work=args.keep_work,
        insecure=args.insecure,
        quiet=args.quiet,
        scheduler=args.scheduler,
    )


def _calibrate(args: argparse.Namespace, course_root: Path) -> int:
    from . import calibrate

    return calibrate.main(
        course_root=course_root,
        profile=args.profile,
        assignments=args.assignment,
        margins=args.margin,
        jobs=args.jobs,
        thresholds_file=args.thresholds,
        dry_run=args.dry_run,
    )


def _preflight(args: argparse.Namespace, course_root: Path) -> int:
    from . import preflight

    return preflight.main(
        course_root=course_root,
        assignments=args.assignment,
        profile=args.profile,
        jobs=args.jobs,
        timeout_cell=args.timeout_cell,
        static_only=args.static_only,
    )


def _demo(args: argparse.Namespace, course_root: Path) -> int:
    from . import demo

    return demo.main(out=args.out, jobs=args.jobs, course_root=course_root)


def _dispatch_hand_grading(args: argparse.Namespace, course_root: Path) -> int:
    if args.command == "gradebook":
        from . import gradebook

        return gradebook.main(out=args.out, course_root=course_root)
    if args.command == "questions":
        from . import questions

        return questions.main(out=args.out, host=args.host, port=args.port, names=args.names)
    from . import export

    return export.main(out=args.out, target=args.to)
