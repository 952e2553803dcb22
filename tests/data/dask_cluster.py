"""A real Dask cluster for the tests: ``dask scheduler`` and ``dask worker`` processes on
127.0.0.1, started and stopped by the test (tests/test_dask.py), and a fault injector.

Each ``dask worker`` runs with its nanny (``--nworkers 1 --nthreads 1``): when the worker
process dies, the nanny starts a new one, as on a real cluster.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from distributed.diagnostics.plugin import WorkerPlugin

REPO = Path(__file__).resolve().parents[2]
DASK = str(Path(sys.executable).parent / "dask")


class DaskProcesses:
    """One scheduler and ``workers`` worker commands, each in a process group of its own."""

    def __init__(self, folder: Path, *, workers: int = 2, allowed_failures: int = 1):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": str(allowed_failures),
            "DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION": "1.0",
        }
        self.count = workers
        self.scheduler: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen] = []
        self.address = ""

    def _start(self, name: str, *args: str) -> subprocess.Popen:
        log = open(self.folder / f"{name}.log", "ab")  # noqa: SIM115 - owned by the process
        try:
            return subprocess.Popen(
                [DASK, *args],
                cwd=self.folder,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            log.close()

    def start(self, timeout: float = 120.0) -> DaskProcesses:
        from distributed import Client

        info = self.folder / "scheduler.json"
        info.unlink(missing_ok=True)
        self.scheduler = self._start(
            "scheduler",
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(info),
        )
        deadline = time.monotonic() + timeout
        while not info.is_file() and time.monotonic() < deadline:
            assert self.scheduler.poll() is None, self.log("scheduler")
            time.sleep(0.1)
        self.address = json.loads(info.read_text())["address"]
        for number in range(self.count):
            self.workers.append(
                self._start(
                    f"worker-{number}",
                    "worker",
                    self.address,
                    "--nworkers",
                    "1",
                    "--nthreads",
                    "1",
                    "--host",
                    "127.0.0.1",
                    "--no-dashboard",
                    "--name",
                    f"w{number}",
                    "--local-directory",
                    str(self.folder / f"worker-{number}"),
                )
            )
        with Client(self.address, timeout=30) as client:
            client.wait_for_workers(self.count, timeout=max(1.0, deadline - time.monotonic()))
        return self

    def log(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.is_file() else ""

    def kill_scheduler(self) -> None:
        os.killpg(self.scheduler.pid, signal.SIGKILL)
        self.scheduler.wait()

    def stop(self) -> None:
        """Stop every process this object started (their process groups), politely first."""
        processes = [p for p in (*self.workers, self.scheduler) if p is not None]
        for process in processes:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.wait()


class KillOnTask(WorkerPlugin):
    """Fault injection: the worker process kills itself (SIGKILL) as soon as it starts a task
    whose key contains ``marker``, i.e. a submission that takes down every worker it runs on."""

    def __init__(self, marker: str):
        self.marker = marker

    def transition(self, key, start, finish, **kwargs) -> None:  # noqa: ARG002
        if finish == "executing" and self.marker in str(key):
            os.kill(os.getpid(), signal.SIGKILL)
