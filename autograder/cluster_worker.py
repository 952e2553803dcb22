"""The Dask worker's side of ``grade --scheduler`` (the client's side: :mod:`autograder.cluster`).

* :class:`GradingPlugin` carries one run's payload (the template course as a tar, the course's
  judges, the options, the secret probe seed, the shared cache's path) to every worker of the
  cluster, including a worker that joins or is restarted later; the payload is unpacked once
  per worker process, into the worker's local directory, on its first task.
* :func:`grade_task` grades one submission exactly as the local pool does
  (:func:`autograder.grading.grade_unsaved`: repairs, a long-lived grading worker under the
  same limits, the OS sandbox, the judge) and returns the record as a dict with the text of
  its log; it writes nothing the client owns. :func:`warm_up_task` is the trusted reference
  run that fills the shared feature cache (:func:`autograder.batch.warm_up`).
* Sandbox users: as root each concurrent sandbox runs as its own uid (``64000 + slot``, see
  :mod:`autograder.jail`). Several worker processes share a machine, so a slot is claimed
  host-wide with an exclusive ``flock`` on ``/tmp/featurelab-sandbox-slots/slot-N.lock``
  (held while the process lives, released by the kernel when it dies); Dask runs use the
  slots from :data:`SLOT_BASE` on, apart from the local pool's ``1..jobs``.
* When the run ends (the client removes the plugin) or the worker closes, the plugin's
  teardown cancels what still runs (the grading worker's tree is killed) and cleans up.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import io
import os
import shutil
import socket
import tarfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from distributed.diagnostics.plugin import WorkerPlugin

from .course import REPO_ROOT, AutograderError
from .grading import Cancelled, RunContext
from .results import Record
from .sandbox import Worker

SLOT_BASE = 101  # uids 64101.. (the local pool uses 64001..64000+jobs)
SLOT_COUNT = 800
SLOT_DIR_ENV = "FEATURELAB_SLOT_DIR"
LOG_LIMIT_BYTES = 4 * 2**20  # a log shipped back to the client keeps its last 4 MiB
TEARDOWN_WAIT_S = 60.0


def code_digest() -> str:
    """Hash of every file of the grader and of the student package (client and workers must
    run the same code: results are saved under the client's fingerprints)."""
    from .template import _code_files, _hash_files

    return _hash_files(_code_files(), REPO_ROOT)


# --------------------------------------------------------------------------------------------
# sandbox slots, unique per machine


def claim_slot(folder: Path | None = None) -> tuple[int, IO]:
    """A sandbox slot no other process of this machine holds: ``(slot, open lock file)``;
    the slot is held until the file is closed (or the process dies)."""
    folder = Path(folder or os.environ.get(SLOT_DIR_ENV) or "/tmp/featurelab-sandbox-slots")
    folder.mkdir(parents=True, exist_ok=True)
    for slot in range(SLOT_BASE, SLOT_BASE + SLOT_COUNT):
        handle = open(folder / f"slot-{slot}.lock", "a")  # noqa: SIM115 - held open on purpose
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        return slot, handle
    raise RuntimeError(f"no free sandbox slot in {folder} ({SLOT_COUNT} in use)")


@dataclass
class ClusterRunContext(RunContext):
    """A :class:`RunContext` on a Dask worker: grading workers get host-wide unique slots,
    their logs stay in the worker's local folder, their thread count is the run's."""

    logs: Path | None = None
    _slots: list = field(default_factory=list)

    def worker_env(self, slot: int = 1) -> dict[str, str]:
        env = super().worker_env(slot)
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[name] = str(self.threads_per_job)  # the Dask nanny sets them to 1
        return env

    def worker(self) -> Worker:
        worker = getattr(self._local, "worker", None)
        if worker is None:
            slot, handle = claim_slot()
            with self._lock:
                self._slots.append(handle)
                log = self.logs / f"grading-worker-slot{slot}.log"
                worker = Worker(self.worker_env(slot), self.work_dir, log)
                self._workers.append(worker)
            self._local.worker = worker
        return worker

    def close_workers(self) -> None:
        super().close_workers()
        for handle in self._slots:
            handle.close()
        self._slots.clear()


def _cores() -> int:
    """The cores this process may run on (a Slurm job's share of a node, not the node)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


# --------------------------------------------------------------------------------------------
# one run on this worker process


class WorkerRun:
    """One grading run as this worker process holds it: its payload and, after the first
    task, its unpacked template and :class:`ClusterRunContext`."""

    def __init__(self, payload: dict, local_dir: Path, threads_on_host: int):
        self.payload = payload
        self.folder = Path(local_dir) / "featurelab" / payload["run"]
        self.threads_on_host = max(1, threads_on_host)
        self.cancel = threading.Event()
        self.context: ClusterRunContext | None = None
        self._lock = threading.Lock()
        self._idle = threading.Condition()
        self._active = 0

    def _build(self) -> ClusterRunContext:
        from . import batch

        payload = self.payload
        if payload["code"] != code_digest():
            raise AutograderError(
                f"the Dask worker on {socket.gethostname()} runs other grader code than the "
                f"client ({REPO_ROOT}): install the same commit of the course everywhere"
            )
        options = payload["options"]
        batch.check_sandbox(options)
        batch.prepare_data(options)
        if self.folder.exists():
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True)
        with tarfile.open(fileobj=io.BytesIO(payload["tar"]), mode="r:gz") as tar:
            safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(self.folder, **safe)
        (self.folder / "course").mkdir(exist_ok=True)
        (self.folder / "runs").mkdir()
        template = dataclasses.replace(
            payload["template"], root=self.folder / "template", course_root=self.folder / "course"
        )
        cache_dir = Path(payload["cache_dir"])
        cache_dir.mkdir(parents=True, exist_ok=True)
        return ClusterRunContext(
            template,
            options,
            self.folder / "out",
            self.folder,
            cache_dir,
            threads_per_job=max(1, _cores() // self.threads_on_host),
            cancel=self.cancel,
            keep_work=payload["keep_work"],
            seed=payload["seed"],
            logs=self.folder / "logs",
        )

    @contextlib.contextmanager
    def task(self):
        """The run's context for one task (built by the first one)."""
        with self._idle:
            self._active += 1
        try:
            with self._lock:
                if self.cancel.is_set():
                    raise Cancelled()
                if self.context is None:
                    self.context = self._build()
            yield self.context
        finally:
            with self._idle:
                self._active -= 1
                self._idle.notify_all()

    def stop(self, *, remove: bool = True) -> None:
        """Cancel what runs (the grading workers see it within a poll), then clean up
        (``remove``: the unpacked run too; not when the worker closes: Dask removes its local
        directory itself)."""
        self.cancel.set()

        def close() -> None:
            with self._idle:
                self._idle.wait_for(lambda: self._active == 0, timeout=TEARDOWN_WAIT_S)
            if self.context is not None:
                self.context.close_workers()
            if remove:
                shutil.rmtree(self.folder, ignore_errors=True)

        with self._idle:
            idle = self._active == 0
        if idle:  # the usual end of a run: done before the client moves on
            close()
        else:  # tasks still running see the cancellation within a poll, then stop
            threading.Thread(target=close, name="featurelab-run-teardown", daemon=True).start()


_RUNS: dict[str, WorkerRun] = {}


class GradingPlugin(WorkerPlugin):
    """Ships one run's payload to every worker (see the module docstring)."""

    def __init__(self, payload: dict):
        self.payload = payload

    def setup(self, worker) -> None:
        from distributed.comm import get_address_host

        host = get_address_host(worker.address)
        threads = self.payload["threads"].get(host) or worker.state.nthreads
        _RUNS[self.payload["run"]] = WorkerRun(self.payload, worker.local_directory, threads)

    def teardown(self, worker) -> None:
        from distributed.core import Status

        run = _RUNS.pop(self.payload["run"], None)
        if run is not None:  # the run ended (plugin removed), or the worker closes
            run.stop(remove=worker.status in (Status.running, Status.paused))


def _run(run_id: str) -> WorkerRun:
    run = _RUNS.get(run_id)
    if run is None:
        raise RuntimeError(f"this Dask worker has no payload for grading run {run_id}")
    return run


def _result(context: ClusterRunContext, record: Record) -> dict:
    """The record as a dict, with its log's text (the file is removed here: the client
    writes it under OUT/logs)."""
    log = None
    if record.log:
        path = context.out / record.log
        try:
            data = path.read_bytes()
            if len(data) > LOG_LIMIT_BYTES:
                data = b"[... the start of the log was cut ...]\n" + data[-LOG_LIMIT_BYTES:]
            log = data.decode(errors="replace")
            path.unlink()
        except OSError:
            pass
    return {"record": record.to_dict(), "log": log, "host": socket.gethostname()}


def grade_task(run_id: str, submission, data: bytes) -> dict:
    """Grade one submission (its bytes sent by the client); the record and its log."""
    from .grading import grade_unsaved

    with _run(run_id).task() as context:
        record, _key = grade_unsaved(submission, context, data)
        return _result(context, record)


def warm_up_task(run_id: str, assignment: str) -> dict:
    """The trusted reference run of ``assignment``: fills the shared feature cache."""
    from .batch import warm_up

    with _run(run_id).task() as context:
        return _result(context, warm_up(assignment, context))
