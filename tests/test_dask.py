"""Grading on Dask (``grade --scheduler``): a real scheduler and two worker processes over TCP
on 127.0.0.1, started here with the ``dask`` command line, grade the toy course.

* the same scores as the embedded local pool, logs and state written by the client, even
  with a worker process SIGKILLed in the middle of a notebook (its submission is graded again
  elsewhere: nothing lost, nothing recorded twice, nothing left running); a rerun resumes;
* a submission that kills every worker it runs on: recorded ``crashed``, the rest graded;
* ``--scheduler local:N`` from the command line; an unreachable scheduler; the scheduler
  dying mid-run (clear error, the finished records kept, a rerun resumes).
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest

from autograder import batch as batching
from autograder import cluster, cluster_worker, students
from autograder.course import REPO_ROOT, AutograderError
from tests.data import fixture_submissions as fx
from tests.data.dask_cluster import DaskProcesses, KillOnTask
from tests.data.toy import TOY_COURSE, TOY_MAX, TOY_TARGET, shared_work_dir, toy_template

pytest.importorskip("distributed")

# student -> (status, score) for the toy class of :func:`write_class`
EXPECTED = {
    "ann": ("ok", TOY_MAX),
    "ben": ("ok", TOY_MAX),
    "cid": ("ok", TOY_MAX),
    "dan": ("ok", 0.0),  # the blank release
    "eve": ("ok", TOY_MAX - 3.0),  # a wrong ex2 that passes the visible asserts
    "fay": ("invalid", 0.0),  # half a file: refused by the repairs
    "gus": ("ok", 1.0),  # the toy2 solution (1 point)
}


@pytest.fixture(scope="module")
def template():
    return toy_template()


def write_class(folder, template, names=tuple(EXPECTED)):
    """The toy class: ``<student>_<assignment>.ipynb`` files (see :data:`EXPECTED`)."""
    source = fx.source_of(TOY_COURSE, "toy")
    release = template.release("toy").notebook
    builders = {"dan": fx.blank, "eve": fx.monkeypatch, "fay": fx.invalid_json}
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        if name == "gus":
            toy2 = students.solved_release(
                fx.source_of(TOY_COURSE, "toy2"), template.release("toy2").notebook
            )
            fx.write_notebook(toy2, folder / "gus_toy2.ipynb")
            continue
        build = builders.get(name, fx.solution)
        (folder / f"{name}_toy.ipynb").write_bytes(build(source, release, TOY_TARGET))
    return folder


def grade(folder, out, **kwargs):
    return batching.grade(
        folder,
        out=out,
        course_root=TOY_COURSE,
        profile="smoke",
        progress=False,
        work_dir=shared_work_dir(),
        timeout_cell=60,
        **kwargs,
    )


def outcomes(result) -> dict:
    return {
        r.student: (r.status, r.score, {c.grade_id: c.score for c in r.cells})
        for r in result.records
    }


def grades_rows(out) -> list[dict]:
    with open(out / "grades.csv", newline="") as stream:
        return list(csv.DictReader(stream))


def check_class(result, names=tuple(EXPECTED)) -> None:
    """Every submission once, with its expected status and score; logs under OUT/logs."""
    got = {r.student: (r.status, r.score) for r in result.records}
    assert got == {name: EXPECTED[name] for name in names}, [r.reason for r in result.records]
    rows = grades_rows(result.out)
    assert sorted(row["student"] for row in rows) == sorted(names)
    for record in result.records:
        if record.status != "invalid":
            log = result.out / record.log
            assert log.is_file() and "nbgrader autograde" in log.read_text(), record.log


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    processes = DaskProcesses(tmp_path_factory.mktemp("dask-cluster"), workers=2)
    try:
        yield processes.start()
    finally:
        processes.stop()


# ----------------------------------------------------------------------------- units


def test_scheduler_addresses():
    assert cluster.parse_scheduler("tcp://10.0.0.5:8786").address == "tcp://10.0.0.5:8786"
    assert cluster.parse_scheduler("local:3").local_workers == 3
    for wrong in ("local:0", "10.0.0.5:8786", "local", "tcp://"):
        with pytest.raises(AutograderError, match="--scheduler"):
            cluster.parse_scheduler(wrong)


def test_sandbox_slots_are_unique_on_a_machine(tmp_path):
    """Concurrent sandboxes run as uid 64000 + slot: every claim on the machine, in this
    process or another, gets a slot nobody holds; a closed claim is free again."""
    first, first_lock = cluster_worker.claim_slot(tmp_path)
    second, second_lock = cluster_worker.claim_slot(tmp_path)
    code = (
        "import sys; from autograder.cluster_worker import claim_slot; "
        f"print(claim_slot({str(tmp_path)!r})[0])"
    )
    other = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert len({first, second, int(other.stdout)}) == 3
    assert first >= cluster_worker.SLOT_BASE
    first_lock.close()
    again, again_lock = cluster_worker.claim_slot(tmp_path)
    assert again == first
    again_lock.close()
    second_lock.close()


def test_an_unreachable_scheduler_is_a_clear_error(template, tmp_path, monkeypatch):
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_S", 3.0)
    folder = write_class(tmp_path / "class", template, names=("ann",))
    with pytest.raises(AutograderError, match="cannot reach the Dask scheduler at tcp://127"):
        grade(folder, tmp_path / "out", scheduler=f"tcp://127.0.0.1:{port}")
    assert not list((tmp_path / "out").glob(".state/*.json"))


# ----------------------------------------------------------------------------- a TCP cluster


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _running_notebook(pid: int) -> bool:
    for process in _descendants(pid):
        try:
            if "ipykernel" in " ".join(process.cmdline()):
                return True
        except psutil.Error:
            continue
    return False


def _kill_a_worker_mid_notebook(address: str, grading: threading.Thread) -> list[psutil.Process]:
    """SIGKILL the first Dask worker process seen running a student's kernel; its family."""
    from distributed import Client

    with Client(address, timeout=30) as watcher:
        deadline = time.monotonic() + 240
        while grading.is_alive() and time.monotonic() < deadline:
            for worker, pid in watcher.run(os.getpid).items():
                keys = watcher.processing(workers=[worker]).get(worker, [])
                if any(str(k).startswith("grade-") for k in keys) and _running_notebook(pid):
                    family = _descendants(pid)
                    os.kill(pid, signal.SIGKILL)
                    return family
            time.sleep(0.3)
    raise AssertionError("no worker was seen running a student's notebook")


@pytest.mark.slow
def test_a_tcp_cluster_grades_like_the_local_pool_even_when_a_worker_dies(
    template, dask_cluster, tmp_path
):
    """The toy class on the local pool, then on the cluster with one worker process SIGKILLed
    in the middle of a student's notebook: the same scores, each submission once in
    grades.csv, the killed worker's grading process and kernel gone; a rerun resumes."""
    folder = write_class(tmp_path / "class", template)
    local = grade(folder, tmp_path / "local", jobs=2)
    check_class(local)
    results, errors = [], []

    def run() -> None:
        try:
            results.append(grade(folder, tmp_path / "dask", scheduler=dask_cluster.address))
        except BaseException as error:  # noqa: BLE001 - reported by the assert below
            errors.append(error)

    grading = threading.Thread(target=run)
    grading.start()
    family = _kill_a_worker_mid_notebook(dask_cluster.address, grading)
    grading.join(timeout=400)
    assert not grading.is_alive() and not errors, errors
    [remote] = results
    check_class(remote)
    assert outcomes(remote) == outcomes(local)
    _, alive = psutil.wait_procs(family, timeout=20)
    assert alive == [], [p.cmdline() for p in alive]
    # the toy assignment had >= 3 submissions: its reference run warmed the shared cache
    assert [(r.student, r.score) for r in remote.references] == [("reference", TOY_MAX)]
    assert len(list((tmp_path / "dask" / ".state").glob("*.json"))) == len(EXPECTED)
    # a rerun resumes from the state the client saved: nothing is graded again
    again = grade(folder, tmp_path / "dask", scheduler=dask_cluster.address)
    assert again.graded == 0 and outcomes(again) == outcomes(remote)


@pytest.mark.slow
def test_a_submission_that_kills_every_worker_is_recorded_crashed(template, dask_cluster, tmp_path):
    from distributed import Client

    folder = write_class(tmp_path / "class", template, names=("ann", "ben"))
    (folder / "poison_toy.ipynb").write_bytes((folder / "ann_toy.ipynb").read_bytes())
    with Client(dask_cluster.address, timeout=30) as client:
        client.register_plugin(KillOnTask("grade-poison"), name="kill-poison")
        try:
            result = grade(folder, tmp_path / "out", scheduler=dask_cluster.address)
        finally:
            client.unregister_worker_plugin("kill-poison")
    by_student = {r.student: r for r in result.records}
    poison = by_student.pop("poison")
    assert poison.status == "crashed" and poison.score == 0 and poison.max_score == TOY_MAX
    assert "killed the grading worker process every time it ran" in poison.reason
    assert {name: (r.status, r.score) for name, r in by_student.items()} == {
        "ann": ("ok", TOY_MAX),
        "ben": ("ok", TOY_MAX),
    }
    assert [row["status"] for row in grades_rows(result.out) if row["student"] == "poison"] == [
        "crashed"
    ]


# ----------------------------------------------------------------------------- local:N, loss


@pytest.mark.slow
def test_local_cluster_from_the_command_line(template, tmp_path):
    folder = write_class(tmp_path / "class", template, names=("ann", "dan"))
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "autograder", "--course-root", str(TOY_COURSE), "grade"]
        + [str(folder), "--out", str(out), "--profile", "smoke", "--quiet"]
        + ["--scheduler", "local:2"],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 graded now" in done.stdout
    scores = {row["student"]: float(row["score"]) for row in grades_rows(out)}
    assert scores == {"ann": TOY_MAX, "dan": 0.0}


@pytest.mark.slow
def test_the_scheduler_dying_stops_the_run_and_a_rerun_resumes(template, tmp_path):
    names = ("ann", "dan", "gus")  # fewer than 3 of an assignment: no warm-up run
    folder = write_class(tmp_path / "class", template, names=names)
    out = tmp_path / "out"
    processes = DaskProcesses(tmp_path / "cluster", workers=1).start()
    errors = []

    def run() -> None:
        try:
            grade(folder, out, scheduler=processes.address)
        except BaseException as error:  # noqa: BLE001 - checked below
            errors.append(error)

    grading = threading.Thread(target=run)
    try:
        grading.start()
        deadline = time.monotonic() + 300
        while not list(out.glob(".state/*.json")) and time.monotonic() < deadline:
            time.sleep(0.2)
        processes.kill_scheduler()
        grading.join(timeout=120)
    finally:
        processes.stop()
    assert not grading.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], AutograderError), errors
    assert "lost the Dask scheduler" in str(errors[0]) and "run the same command" in str(errors[0])
    saved = len(list(out.glob(".state/*.json")))
    assert 1 <= saved < len(names)
    rerun = grade(folder, out, jobs=2)  # resumes, here on the local pool
    assert rerun.graded == len(names) - saved
    check_class(rerun, names)
