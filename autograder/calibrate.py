"""``python -m autograder calibrate``: measure the solutions' metrics, write the thresholds.

How a notebook reports a metric: the solution calls
``featurelab.reporting.report_metric("accuracy", acc)`` (a no-op for students). Here every
solution is graded like a submission (the solution as a student would submit it: the release
with the answers filled in), in the requested profile, with ``FEATURELAB_METRICS_FILE`` set for
its kernel; the values it reported become the ``reference`` of
``autograder/thresholds.json[<assignment>][<profile>][<metric>]``, with
``threshold = reference - margin``. Entries of other profiles, assignments and metrics are
kept; the file is rewritten atomically.

Run it once per profile on the machine that matters: ``--profile full`` or ``grading`` with
the real pretrained weights and datasets (an instructor machine with internet), ``smoke`` in
CI (random-initialised weights on the fixtures: the values only check the pipeline).

Every threshold entry says whether it was measured: ``"calibrated": true`` is written by this
command for what it measured; the defaults shipped for ``full`` and ``grading`` (published
results, never measured with the pretrained weights) carry ``"calibrated": false``.
:func:`uncalibrated` lists them; ``grade --profile grading|full`` refuses to run while any is
left (unless ``--accept-uncalibrated``), ``preflight`` reports them. ``smoke`` thresholds are
measured on the fixtures, so smoke grading never refuses.
"""

from __future__ import annotations

import json
import platform
import tempfile
from datetime import date
from pathlib import Path

from . import course as course_mod
from .course import REPO_ROOT, AutograderError

DEFAULT_MARGIN = 0.05
# Profiles whose thresholds must be measured with the pretrained weights before grading.
CALIBRATED_PROFILES = ("grading", "full")


def uncalibrated(
    assignments: list[str] | None, profile: str, thresholds_file: Path | None = None
) -> list[str]:
    """One line per threshold of ``profile`` never measured by ``calibrate`` (empty: all measured).

    ``assignments``: the ones to look at (``None``: every assignment of the thresholds file).
    An entry counts as measured only with ``"calibrated": true`` (written by :func:`calibrate`).
    """
    thresholds_file = Path(thresholds_file or course_mod.THRESHOLDS_FILE)
    data = json.loads(thresholds_file.read_text()) if thresholds_file.is_file() else {}
    names = sorted(k for k in data if not k.startswith("_")) if assignments is None else assignments
    found = []
    for assignment in names:
        for metric, entry in sorted(data.get(assignment, {}).get(profile, {}).items()):
            if not isinstance(entry, dict) or entry.get("calibrated") is True:
                continue
            reference = entry.get("reference")
            found.append(
                f"{assignment} [{profile}] {metric}: threshold {entry.get('threshold')} "
                + (
                    "(no reference value)"
                    if reference is None
                    else f"(default reference {reference}, not measured here)"
                )
            )
    return found


def how_to_calibrate(profile: str) -> str:
    return (
        f"run `python -m autograder calibrate --profile {profile}` once, on a machine with "
        "the pretrained weights and the datasets (it grades the solutions and records their "
        "metrics in autograder/thresholds.json)"
    )


def require_calibrated(
    course_root: Path,
    profile: str,
    assignments: list[str] | None = None,
    thresholds_file: Path | None = None,
) -> None:
    """``AutograderError`` when grading ``assignments`` (default: the course's) in ``profile``
    would use thresholds never measured (``grade`` calls it unless ``--accept-uncalibrated``)."""
    if profile not in CALIBRATED_PROFILES:
        return
    if assignments is None:
        assignments = course_mod.assignments(course_root)
    missing = uncalibrated(assignments, profile, thresholds_file)
    if missing:
        raise AutograderError(
            f"refusing to grade in the {profile!r} profile: {len(missing)} threshold(s) were "
            "never measured with the pretrained weights:\n  "
            + "\n  ".join(missing)
            + f"\nCalibrate first: {how_to_calibrate(profile)}; or pass --accept-uncalibrated "
            "to grade with these defaults anyway."
        )


def parse_margins(values: list[str] | None) -> tuple[float, dict[str, float]]:
    """``["0.03", "accuracy=0.05"]`` -> (default 0.03, {"accuracy": 0.05})."""
    default, per_metric = DEFAULT_MARGIN, {}
    for value in values or []:
        name, sep, number = value.partition("=")
        try:
            if sep:
                per_metric[name.strip()] = float(number)
            else:
                default = float(name)
        except ValueError:
            raise AutograderError(
                f"--margin {value!r}: expected a number or METRIC=NUMBER"
            ) from None
    for margin in [default, *per_metric.values()]:
        if margin < 0:
            raise AutograderError(f"margins must be >= 0, got {margin}")
    return default, per_metric


def update_thresholds(
    data: dict,
    assignment: str,
    profile: str,
    metrics: dict[str, float],
    *,
    default_margin: float,
    margins: dict[str, float],
    source: str,
    calibrated: bool | None = None,
) -> dict:
    """``data`` (the thresholds file's content) with the measured ``metrics`` recorded
    (and ``"calibrated": calibrated`` in each entry unless it is ``None``)."""
    entry = data.setdefault(assignment, {}).setdefault(profile, {})
    for metric, reference in sorted(metrics.items()):
        margin = margins.get(metric, default_margin)
        entry[metric] = {
            "threshold": round(reference - margin, 4),
            "reference": round(reference, 4),
            "margin": margin,
            "source": source,
        }
        if calibrated is not None:
            entry[metric]["calibrated"] = calibrated
    return data


def calibrate(
    *,
    course_root: Path = REPO_ROOT,
    profile: str = "grading",
    assignments: list[str] | None = None,
    margins: list[str] | None = None,
    jobs: int | None = None,
    thresholds_file: Path | None = None,
    dry_run: bool = False,
    out: Path | None = None,
    progress: bool = True,
) -> dict:
    """Grade the solutions in ``profile`` and record their metrics; returns what was measured.

    Returns ``{assignment: {"metrics": {...}, "score": s, "max_score": m, "status": ...}}``.
    """
    default_margin, per_metric = parse_margins(margins)
    course_root = Path(course_root).resolve()
    assignment_ids = course_mod.resolve_assignments(course_root, assignments)
    thresholds_file = Path(thresholds_file or course_mod.THRESHOLDS_FILE)
    measured = _grade_solutions(course_root, assignment_ids, profile, jobs, out, progress)
    data = json.loads(thresholds_file.read_text()) if thresholds_file.is_file() else {}
    _record(data, measured, profile, default_margin, per_metric)
    if not dry_run and any(found["metrics"] for found in measured.values()):
        from .grading import atomic_write_text

        atomic_write_text(thresholds_file, json.dumps(data, indent=2) + "\n")
    return measured


def _grade_solutions(
    course_root: Path,
    assignment_ids: list[str],
    profile: str,
    jobs: int | None,
    out: Path | None,
    progress: bool,
) -> dict:
    """Grade the solution of each assignment (the release with the answers filled in) in
    ``profile``; ``{assignment: {"metrics", "score", "max_score", "status", "reason"}}``."""
    from . import batch as batching
    from . import students
    from .submissions import Submission

    with tempfile.TemporaryDirectory(prefix="featurelab-calibrate-") as tmp:
        out = Path(out) if out else Path(tmp) / "out"
        work = out / ".work"
        template = batching.build_template(course_root, course_mod.assignments(course_root), work)
        batch = []
        for assignment in assignment_ids:
            source = course_mod.read_notebook(course_mod.source_notebook(course_root, assignment))
            solved = students.solved_release(source, template.release(assignment).notebook)
            path = Path(tmp) / "submissions" / f"solution_{assignment}.ipynb"
            students.write(solved, path)
            batch.append(Submission("solution", assignment, path, path.name, "flat"))
        result = batching.grade_batch(
            batch,
            out=out,
            course_root=course_root,
            jobs=jobs,
            options=batching.Options(profile=profile),
            progress=progress,
            resume=False,
        )
    return {
        r.assignment: {
            "metrics": r.metrics,
            "score": r.score,
            "max_score": r.max_score,
            "status": r.status,
            "reason": r.reason,
        }
        for r in result.records
    }


def _record(
    data: dict, measured: dict, profile: str, default_margin: float, per_metric: dict[str, float]
) -> None:
    """Record in ``data`` (the thresholds file's content) the metrics each solution reported,
    as calibrated, with where and when they were measured."""
    import torch

    source = (
        f"python -m autograder calibrate --profile {profile} on {date.today().isoformat()}"
        f" ({platform.node() or 'unknown host'}, torch {torch.__version__}): the solution's "
        f"value minus the margin"
    )
    for assignment, found in measured.items():
        if found["metrics"]:
            update_thresholds(
                data,
                assignment,
                profile,
                found["metrics"],
                default_margin=default_margin,
                margins=per_metric,
                source=source,
                calibrated=True,
            )


def main(
    *,
    course_root: Path,
    profile: str,
    assignments: list[str] | None,
    margins: list[str] | None,
    jobs: int | None,
    thresholds_file: Path | None,
    dry_run: bool,
) -> int:
    """CLI entry point (exit code: 1 if a solution reported nothing or lost points)."""
    default_margin, per_metric = parse_margins(margins)
    measured = calibrate(
        course_root=course_root,
        profile=profile,
        assignments=assignments,
        margins=margins,
        jobs=jobs,
        thresholds_file=thresholds_file,
        dry_run=dry_run,
    )
    failures = 0
    print(f"{'assignment':28s} {'metric':14s} {'reference':>9s} {'threshold':>9s}  solution")
    for assignment, found in sorted(measured.items()):
        solution = f"{found['score']:g}/{found['max_score']:g} {found['status']}"
        if found["score"] < found["max_score"] or found["status"] not in ("ok", "repaired"):
            failures += 1
            solution += f" <- {found['reason']}"
        if not found["metrics"]:
            print(f"{assignment:28s} {'(none reported)':14s} {'':>9s} {'':>9s}  {solution}")
        for metric, value in sorted(found["metrics"].items()):
            margin = per_metric.get(metric, default_margin)
            print(f"{assignment:28s} {metric:14s} {value:9.4f} {value - margin:9.4f}  {solution}")
    target = thresholds_file or course_mod.THRESHOLDS_FILE
    print(
        "(dry run: nothing written)"
        if dry_run
        else f'thresholds written to {target} (measured entries marked "calibrated": true)'
    )
    if not dry_run:
        left = uncalibrated(assignments, profile, thresholds_file)
        if left:
            print(f"still not measured in {profile!r} (no value reported by the solution):")
            for line in left:
                print(f"  {line}")
    if failures:
        print(
            f"{failures} solution(s) did not get full marks: check the thresholds and the "
            "notebooks (the metrics were recorded anyway)"
        )
        return 1
    return 0
