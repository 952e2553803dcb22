"""Run one grading process under a wall-clock and a memory limit, and leave nothing behind.

The grading process (``python -m nbgrader autograde``) starts the student's kernel, which
jupyter_client puts in a session of its own, and student code can start processes too. So:

* the process is started in a new session (``start_new_session``), with a unique token in
  its environment (``FEATURELAB_SANDBOX_TOKEN``) that every descendant inherits;
* a watchdog polls the whole process tree every ``poll_s`` seconds: the sum of the resident
  set sizes (RSS) of all its processes, and the elapsed time. Over the memory limit or the
  wall clock, the whole tree is killed (SIGKILL, and the process groups they lead);
* at the end (normal or not) every process still carrying the token is killed, which also
  catches a process that escaped the tree (double fork, ``setsid``).

The memory limit counts RSS summed over the tree (nbgrader's own process included, about
200 MB); shared pages are counted once per process, so the figure errs on the high side.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psutil

TOKEN_ENV = "FEATURELAB_SANDBOX_TOKEN"


@dataclass(frozen=True)
class Limits:
    """Limits of one grading process: wall clock (s), tree RSS (MB) and the disk space used
    under ``disk_path`` (MB, checked every ``disk_poll_s``); ``None`` = no limit."""

    wall_s: float | None = None
    memory_mb: float | None = None
    poll_s: float = 0.1
    disk_mb: float | None = None
    disk_path: Path | None = None
    disk_poll_s: float = 1.0


@dataclass
class Outcome:
    """What happened to the process: exit code, or which limit killed it."""

    returncode: int | None
    killed: str | None  # None | "memory" | "disk" | "wall_clock" | "cancelled"
    seconds: float
    peak_rss_mb: float


def _tree(root: psutil.Process) -> list[psutil.Process]:
    try:
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return [root]


def _rss_mb(processes: list[psutil.Process]) -> float:
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.Error:
            pass
    return total / 2**20


def _with_token(token: str, since: float) -> list[psutil.Process]:
    """Processes of this user started after ``since`` whose environment carries ``token``."""
    found = []
    me = os.getpid()
    for process in psutil.process_iter(["create_time", "uids"]):
        try:
            if process.pid == me or process.info["create_time"] < since - 1:
                continue
            if process.environ().get(TOKEN_ENV) == token:
                found.append(process)
        except psutil.Error:
            continue
    return found


MAX_DISK_ENTRIES = 200_000  # more files than this under a scratch folder: over the limit


def disk_usage_mb(folder: Path) -> float:
    """Disk space used by the files under ``folder`` (allocated blocks: a sparse file counts what
    it really holds), in MB; ``inf`` past :data:`MAX_DISK_ENTRIES` entries (a flood of files)."""
    total, entries, stack = 0, 0, [str(folder)]
    while stack:
        try:
            with os.scandir(stack.pop()) as scan:
                for entry in scan:
                    entries += 1
                    if entries > MAX_DISK_ENTRIES:
                        return float("inf")
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        total += entry.stat(follow_symlinks=False).st_blocks * 512
                    except OSError:
                        pass
        except OSError:
            pass
    return total / 2**20


def unlinked_open_files_mb(processes: list[psutil.Process]) -> float:
    """Disk space held by files that ``processes`` keep open after deleting them (invisible to
    :func:`disk_usage_mb`'s walk, yet they fill the disk), in MB; each file counted once."""
    seen, total = set(), 0
    for process in processes:
        try:
            entries = list(os.scandir(f"/proc/{process.pid}/fd"))
        except OSError:
            continue
        for entry in entries:
            try:
                info = os.stat(entry.path)  # the open file itself, through the /proc link
            except OSError:
                continue
            key = (info.st_dev, info.st_ino)
            if stat.S_ISREG(info.st_mode) and info.st_nlink == 0 and key not in seen:
                seen.add(key)
                total += info.st_blocks * 512
    return total / 2**20


def _limit_reached(
    limits: Limits, rss_mb: float, elapsed_s: float, cancel: threading.Event | None
) -> str | None:
    """``"memory"``, ``"wall_clock"`` or ``"cancelled"`` when that limit is reached, else None."""
    if limits.memory_mb is not None and rss_mb > limits.memory_mb:
        return "memory"
    if limits.wall_s is not None and elapsed_s > limits.wall_s:
        return "wall_clock"
    if cancel is not None and cancel.is_set():
        return "cancelled"
    return None


def kill_processes(processes: list[psutil.Process]) -> None:
    """SIGKILL ``processes`` and the process groups they lead (never our own group)."""
    own_group = os.getpgrp()
    groups = set()
    for process in processes:
        try:
            group = os.getpgid(process.pid)
            if group != own_group and group == process.pid:
                groups.add(group)
        except (ProcessLookupError, PermissionError, OSError):
            pass
    for group in groups:
        try:
            os.killpg(group, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, OSError):
            pass
    for process in processes:
        try:
            process.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(processes, timeout=5)


class Worker:
    """A long-lived ``python -m autograder.worker`` process, run one request at a time under limits.

    :meth:`run` sends a request and supervises the worker's process tree (the worker, the
    kernel it starts, anything the student's code starts):
    tree RSS and wall clock per request, cancellation; over a limit the whole tree is killed and
    the next request starts a fresh worker. After every request, any process left behind
    (descendants of the worker, or carrying its token) is killed. A worker is also replaced
    after ``max_requests`` requests or when its own RSS exceeds ``max_own_rss_mb``.
    """

    def __init__(
        self,
        env: dict[str, str],
        cwd: Path,
        log_path: Path,
        *,
        max_requests: int = 100,
        max_own_rss_mb: float = 1500.0,
        start_timeout_s: float = 300.0,
    ):
        self.env = dict(env)
        self.cwd = Path(cwd)
        self.log_path = Path(log_path)
        self.max_requests = max_requests
        self.max_own_rss_mb = max_own_rss_mb
        self.start_timeout_s = start_timeout_s
        self.process: subprocess.Popen | None = None
        self.token = ""
        self.started_wall = 0.0
        self.requests = 0
        self.starts = 0

    # -- lifecycle ------------------------------------------------------------------------
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        import sys

        self.token = uuid.uuid4().hex
        self.started_wall = time.time()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "autograder.worker"],
                cwd=self.cwd,
                env={**self.env, TOKEN_ENV: self.token},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )
        finally:
            log.close()
        self.requests = 0
        self.starts += 1
        reply = self._read_line(time.monotonic() + self.start_timeout_s)
        if reply is None or not reply.get("ready"):
            self.kill()
            raise RuntimeError(f"the grading worker did not start (see {self.log_path})")

    def kill(self) -> None:
        if self.process is None:
            return
        try:
            root = psutil.Process(self.process.pid)
            tree = _tree(root)
        except psutil.Error:
            tree = []
        kill_processes(tree + _with_token(self.token, self.started_wall))
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for stream in (self.process.stdin, self.process.stdout):
            try:
                stream.close()
            except OSError:
                pass
        self.process = None

    def close(self) -> None:
        """Stop the worker (politely: end of input; then by force)."""
        if self.process is None:
            return
        try:
            self.process.stdin.close()
            self.process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()

    # -- requests -------------------------------------------------------------------------
    def _read_line(self, deadline: float) -> dict | None:
        import json
        import select

        stdout = self.process.stdout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([stdout], [], [], 0.2)
            if ready:
                line = stdout.readline()
                if not line:
                    return None
                return json.loads(line)
            if self.process.poll() is not None:
                return None
        return None

    def _cleanup_leftovers(self) -> None:
        if not self.alive():
            return
        try:
            children = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.Error:
            children = []
        stray = [p for p in _with_token(self.token, self.started_wall) if p.pid != self.process.pid]
        leftovers = {p.pid: p for p in children + stray}
        if leftovers:
            kill_processes(list(leftovers.values()))

    def run(
        self, request: dict, *, limits: Limits, cancel: threading.Event | None = None
    ) -> tuple[Outcome, dict | None]:
        """Send ``request``; returns the outcome and the worker's reply (None if it died)."""
        if not self.alive():
            self.start()
        started = time.monotonic()
        root = self._send(request)
        self.requests += 1
        reply, killed, peak = self._supervise(root, limits, cancel, started)
        self._settle(root, killed, reply)
        if reply is None:
            returncode = 1
        else:
            returncode = 0 if reply.get("success") else 1
        outcome = Outcome(
            returncode=returncode,
            killed=killed,
            seconds=time.monotonic() - started,
            peak_rss_mb=peak,
        )
        return outcome, reply

    def _send(self, request: dict) -> psutil.Process:
        """Write ``request`` to the worker (a worker that died while idle is replaced, once);
        returns the worker's process, the root of the tree to supervise."""
        import json

        root = psutil.Process(self.process.pid)
        try:
            self.process.stdin.write((json.dumps(request) + "\n").encode())
            self.process.stdin.flush()
        except (BrokenPipeError, OSError):  # died while idle: start a fresh one, once
            self.kill()
            self.start()
            root = psutil.Process(self.process.pid)
            self.process.stdin.write((json.dumps(request) + "\n").encode())
            self.process.stdin.flush()
        return root

    def _supervise(
        self,
        root: psutil.Process,
        limits: Limits,
        cancel: threading.Event | None,
        started: float,
    ) -> tuple[dict | None, str | None, float]:
        """Wait for the reply while watching the tree's RSS, the wall clock, cancellation and
        disk use; returns ``(reply or None, the limit reached or None, peak RSS in MB)``."""
        import json
        import select

        peak = 0.0
        killed = None
        reply = None
        stdout = self.process.stdout
        next_disk_check = started + limits.disk_poll_s
        while True:
            ready, _, _ = select.select([stdout], [], [], limits.poll_s)
            if ready:
                line = stdout.readline()
                reply = json.loads(line) if line else None
                break
            if self.process.poll() is not None:
                break  # the worker died (killed from outside, or a crash of nbgrader itself)
            tree = _tree(root)
            rss = _rss_mb(tree)
            peak = max(peak, rss)
            killed = _limit_reached(limits, rss, time.monotonic() - started, cancel)
            if not killed and limits.disk_mb is not None and limits.disk_path is not None:
                if time.monotonic() >= next_disk_check:
                    next_disk_check = time.monotonic() + limits.disk_poll_s
                    used = disk_usage_mb(limits.disk_path) + unlinked_open_files_mb(tree)
                    if used > limits.disk_mb:
                        killed = "disk"
            if killed:
                break
        return reply, killed, peak

    def _settle(self, root: psutil.Process, killed: str | None, reply: dict | None) -> None:
        """After a request: kill the whole tree over a limit or without a reply; else kill
        what it left behind, and retire a worker past ``max_requests`` or ``max_own_rss_mb``."""
        if killed or reply is None:
            self.kill()
        else:
            self._cleanup_leftovers()
            try:
                own = root.memory_info().rss / 2**20
            except psutil.Error:
                own = 0.0
            if self.requests >= self.max_requests or own > self.max_own_rss_mb:
                self.close()
