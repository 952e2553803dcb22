"""A hostile class, graded in one batch on the toy course: every attack scores what the work
deserves (0: the attacks come with no answer) and touches nothing outside its sandbox.

Controls in the same batch: the solution (full marks), the blank release (0) and a victim
peer whose notebook the attackers try to read, rewrite and outlive (full marks, file intact).
Classes of attack (tests/data/hostile.py): in-kernel tampering (input and AST transformers,
published results, always-equal objects), forged evidence (files written into the evidence
folder, pickles), reading the answers (sources, references, gradebook, other submissions),
forging the grade (output folder, resume state, journal, a daemon that outlives the run),
attacking others (a peer's file, a loopback server standing for another kernel, signals to
the grader), and resource abuse (hundreds of processes).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from unittest import mock

import psutil
import pytest

from autograder import batch, jail, students
from tests.data import fixture_submissions as fx
from tests.data import hostile
from tests.data.toy import TOY_COURSE, TOY_POINTS, shared_work_dir, toy_template

pytestmark = pytest.mark.slow

if jail.unavailable_reason():
    pytest.skip(f"no OS sandbox here: {jail.unavailable_reason()}", allow_module_level=True)

ZERO = {gid: 0.0 for gid in TOY_POINTS}


class _Listener:
    """A TCP server on 127.0.0.1 that records whether anybody connected."""

    def __init__(self):
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(8)
        self.server.settimeout(0.5)
        self.port = self.server.getsockname()[1]
        self.connections = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.server.accept()
                self.connections += 1
                conn.close()
            except OSError:
                continue

    def close(self):
        self.stop.set()
        self.thread.join(timeout=5)
        self.server.close()


@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    template = toy_template()
    root = tmp_path_factory.mktemp("hostile")
    submissions = root / "submissions"
    submissions.mkdir()
    out = root / "out"
    sentinel = root / "checkout" / "checks.py"
    sentinel.parent.mkdir()
    sentinel.write_text("REFERENCE = 1\n")
    source = fx.source_of(TOY_COURSE, "toy")
    release = template.release("toy").notebook
    solved = fx._dumps(students.solved_release(source, release))
    (submissions / "solution_toy.ipynb").write_bytes(solved)
    (submissions / "blank_toy.ipynb").write_bytes(fx._dumps(students.blank_release(release)))
    victim = submissions / "victim_toy.ipynb"
    victim.write_bytes(solved)
    listener = _Listener()
    targets = hostile.Targets(
        out=str(out),
        submissions=str(submissions),
        victim=str(victim),
        sentinel=str(sentinel),
        course=str(TOY_COURSE / "solutions"),
        port=listener.port,
        grader_pid=os.getpid(),
    )
    for name, data in hostile.build_all(release, "ex1_square", targets).items():
        (submissions / f"{name}_toy.ipynb").write_bytes(data)
    try:
        result = batch.grade(
            submissions,
            out=out,
            course_root=TOY_COURSE,
            profile="smoke",
            jobs=2,
            timeout_cell=30,
            memory_mb=3000,
            disk_mb=300,  # a few times what the toy needs; fill_disk writes up to 3 GB
            timeout=240,
            progress=False,
            work_dir=shared_work_dir(),
        )
        time.sleep(6)  # longer than the daemon of forge_and_attack would live
    finally:
        listener.close()
    return {
        "result": result,
        "out": out,
        "victim": victim,
        "victim_bytes": solved,
        "sentinel": sentinel,
        "listener": listener,
    }


def _scores(record):
    return {c.grade_id: c.score for c in record.cells if c.kind == "auto"}


def _records(attacked):
    return {r.student: r for r in attacked["result"].records}


def test_controls(attacked):
    records = _records(attacked)
    assert _scores(records["solution"]) == TOY_POINTS
    assert _scores(records["victim"]) == TOY_POINTS
    assert _scores(records["blank"]) == ZERO
    # the trusted warm-up ran the reference solution first (and it scored full marks)
    assert [(r.assignment, r.score) for r in attacked["result"].references] == [("toy", 6.0)]


@pytest.mark.parametrize(
    "name",
    [
        "input_transformer_pass",
        "input_transformer_result",
        "ast_no_assert",
        "always_equal",
        "publish_result",
        "forged_evidence",
        "read_answers",
        "forge_and_attack",
        "spawn_many",
        "fill_disk",
        "fill_disk_unlinked",
    ],
)
def test_attack_scores_nothing(attacked, name):
    record = _records(attacked)[name]
    assert _scores(record) == ZERO, [(c.grade_id, c.outcome, c.message) for c in record.cells]
    assert record.score == 0


@pytest.mark.parametrize("name", ["fill_disk", "fill_disk_unlinked"])
def test_filling_the_disk_is_stopped_and_the_rest_graded(attacked, name):
    record = _records(attacked)[name]
    assert record.status == "limited", record.reasons
    assert any("more than 300 MB of files" in reason for reason in record.reasons), record.reasons
    assert record.attempts == 2  # stopped once, then graded without that cell
    # the cell is reported as stopped at the disk limit, the other tests ran (and failed)
    outcomes = {c.grade_id: c.outcome for c in record.cells if c.kind == "auto"}
    assert set(outcomes.values()) <= {"failed", "disk", "not_run"}, outcomes
    assert not list((shared_work_dir() / "runs").glob(f"{name}-*"))  # scratch removed


def test_nothing_outside_the_sandbox_changed(attacked):
    assert attacked["victim"].read_bytes() == attacked["victim_bytes"]
    assert attacked["sentinel"].read_text() == "REFERENCE = 1\n"
    assert "FORGED" not in (attacked["out"] / "grades.csv").read_text()
    for state in (attacked["out"] / ".state").glob("*.json"):
        assert "FORGED" not in state.read_text()
    assert attacked["listener"].connections == 0


def test_feedback_shows_only_the_judges_words(attacked):
    from autograder import report

    record = _records(attacked)["read_answers"]
    page = report.feedback_path(attacked["out"], record).read_text()
    assert "LEAKED" not in page


def test_nothing_left_running(attacked):
    """Nothing a sandbox started outlives it: no descendant of this process is left, and none
    of the hundreds of `sleep 60` of spawn_many (other grading runs may share the uids)."""
    leftovers = []
    for process in psutil.Process().children(recursive=True):
        try:
            leftovers.append(process.cmdline())
        except psutil.Error:
            continue
    for process in psutil.process_iter(["uids", "cmdline"]):
        try:
            uid, cmdline = process.info["uids"].real, process.info["cmdline"] or []
        except (psutil.Error, AttributeError, TypeError):
            continue
        if jail.BASE_UID < uid < jail.BASE_UID + 100 and cmdline[:1] == ["sleep"]:
            leftovers.append(cmdline)
    assert leftovers == []


NOBODY = 65534


def _sandboxed_shell(script: str, *, as_nobody: bool = False) -> str:
    """Run ``script`` with /bin/sh in a sandbox built as grading builds it: as this process
    runs (root: a dedicated uid) or, ``as_nobody``, by a non-root grader (user namespace)."""
    scratch = Path(tempfile.mkdtemp(prefix="featurelab-jail-"))
    scratch.chmod(0o755)
    try:
        env = {"PATH": "/usr/bin:/bin"}
        if as_nobody:
            os.chown(scratch, NOBODY, NOBODY)
            spec = jail.JailSpec(scratch=scratch / "sandbox", env=env)
            # the checkout may be private to root (a clone in a 0700 folder): the shell needs
            # no runner, so an empty stand-in nobody can read is bound in its place
            (scratch / "runner").mkdir()
            with (
                mock.patch.object(jail.os, "geteuid", return_value=NOBODY),
                mock.patch.object(jail, "RUNNER_DIR", scratch / "runner"),
            ):
                argv = jail.command(spec, ["/bin/sh", "-c", script])
            argv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv]
            (scratch / "sandbox").mkdir()
            os.chown(scratch / "sandbox", NOBODY, NOBODY)
        else:
            spec = jail.JailSpec(scratch=scratch / "sandbox", env=env)
            jail.prepare_scratch(spec)
            argv = jail.command(spec, ["/bin/sh", "-c", script])
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=scratch)
        return done.stdout + done.stderr
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


MEMORY_FILESYSTEMS = """
touch /dev/planted 2>/dev/null && echo DEV-WRITABLE
dd if=/dev/zero of=/dev/shm/fill bs=1M count=400 2>/dev/null
echo "shm $(du -m /dev/shm/fill | cut -f1)"
dd if=/dev/zero of=/tmp/fill bs=1M count=700 2>/dev/null
echo "tmp $(du -m /tmp/fill | cut -f1)"
echo ok > /dev/null && echo devices-work
"""


@pytest.mark.parametrize("as_nobody", [False, True], ids=["root-grader", "non-root-grader"])
def test_memory_filesystems_are_capped_and_dev_is_read_only(as_nobody):
    """tmpfs pages are memory no RSS shows: /dev (bubblewrap's tmpfs, the sandbox user's own
    under a non-root grader) is read-only, /dev/shm and /tmp are capped."""
    if as_nobody and os.geteuid() != 0:
        pytest.skip("needs root to run a grader as another user")
    shown = _sandboxed_shell(MEMORY_FILESYSTEMS, as_nobody=as_nobody)
    assert "devices-work" in shown, shown
    assert "DEV-WRITABLE" not in shown, shown
    sizes = dict(line.split() for line in shown.splitlines() if line.startswith(("shm", "tmp")))
    assert int(sizes["shm"]) <= jail.SHM_SIZE_MB, shown
    assert int(sizes["tmp"]) <= jail.TMP_SIZE_MB, shown
