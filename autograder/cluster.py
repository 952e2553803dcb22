"""Grade on a Dask cluster: ``grade --scheduler tcp://HOST:PORT`` or ``--scheduler local:N``.

Each submission is one Dask task that runs, on a worker, exactly what the local pool runs
(:func:`autograder.grading.grade_unsaved`: repairs, the grading worker under the same time and
memory limits, the OS sandbox, the judge) and returns the record; the worker's side is
:mod:`autograder.cluster_worker`. This process, the client, is the only one that writes
``OUT``: it reads each submission and sends its bytes, saves every record in ``OUT/.state``
as it arrives (resume works as with the local pool), writes the logs the workers send back
under ``OUT/logs``, and the caller writes the reports.

* The template course is built once, here, and shipped with the run's payload to every
  worker as a worker plugin (also to a worker that joins or restarts later); the feature cache
  (``--cache``) must be a folder every worker sees (an NFS mount on a real cluster): entries
  are written atomically (a unique temporary file, renamed) and checked when read. The
  trusted reference runs that fill it (:func:`autograder.batch.warm_up`) run first, as tasks.
* At most as many submissions as the cluster has worker threads are in flight at once: the
  next one is sent when one finishes, so a worker never holds a queue of tasks that its death
  would take down with it.
* A worker process that dies mid-task (killed, out of memory) is replaced by its nanny and
  the scheduler runs the task again elsewhere; the record is saved once, when the task
  finishes. A submission that kills every worker it runs on is given up by the scheduler
  after ``distributed.scheduler.allowed-failures`` deaths (Dask's ``KilledWorker``): it is
  recorded as ``crashed`` and the rest of the class is graded.
* The scheduler going away stops the run with an :class:`AutograderError`; the records
  already saved stay, and the same command resumes later.

``local:N`` starts a ``distributed.LocalCluster`` of N worker processes (one thread each) on
this machine; its scheduler uses :data:`LOCAL_CONFIG`. For an existing cluster, the workers
must run the same commit of the course (checked: a worker with other code refuses the run)
with the repository on ``PYTHONPATH``, and see the data, the weights and the cache folder at
the same paths as configured where they run.
"""

from __future__ import annotations

import io
import re
import tarfile
import uuid
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from .course import AutograderError
from .grading import Cancelled, RunContext, grade_one, save_record, submission_key
from .repair import Rejected
from .results import Record

CONNECT_TIMEOUT_S = 20.0
WORKERS_TIMEOUT_S = 600.0  # how long to wait for the first worker of an existing cluster
LOCAL_CONFIG = {
    "distributed.scheduler.allowed-failures": 2,  # a task is tried on at most 3 workers
    "distributed.scheduler.worker-saturation": 1.0,
}


@dataclass(frozen=True)
class Scheduler:
    """Where to grade: an existing scheduler's ``address``, or ``local_workers`` processes."""

    address: str | None = None
    local_workers: int | None = None

    def __str__(self) -> str:
        return self.address or f"local:{self.local_workers}"


def parse_scheduler(text: str) -> Scheduler:
    """``tcp://HOST:PORT`` (any Dask protocol: tls://, ws://...) or ``local:N``."""
    text = text.strip()
    match = re.fullmatch(r"local:(\d+)", text)
    if match:
        if int(match.group(1)) < 1:
            raise AutograderError(f"--scheduler {text}: local:N needs N >= 1")
        return Scheduler(local_workers=int(match.group(1)))
    if re.fullmatch(r"[a-z]+://\S+", text):
        return Scheduler(address=text)
    raise AutograderError(
        f"--scheduler {text!r}: expected tcp://HOST:PORT (a running Dask scheduler) or "
        "local:N (N worker processes on this machine)"
    )


def connect(scheduler: Scheduler, work_dir: Path):
    """``(client, local cluster or None)``; :class:`AutograderError` when it cannot."""
    import dask
    from distributed import Client, LocalCluster

    cluster = None
    try:
        if scheduler.local_workers:
            with dask.config.set(LOCAL_CONFIG):
                cluster = LocalCluster(
                    n_workers=scheduler.local_workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    local_directory=str(work_dir / "dask"),
                )
            client = Client(cluster)
        else:
            client = Client(scheduler.address, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError) as error:
        if cluster is not None:
            cluster.close()
        raise AutograderError(
            f"cannot reach the Dask scheduler at {scheduler} ({error}); start it "
            f"(`dask scheduler`, then `dask worker {scheduler}`), or grade without --scheduler"
        ) from None
    try:
        client.wait_for_workers(1, timeout=WORKERS_TIMEOUT_S)
    except (OSError, TimeoutError):
        _close(client, cluster, None)
        raise AutograderError(
            f"no Dask worker joined the scheduler at {scheduler} in {WORKERS_TIMEOUT_S:.0f} s"
        ) from None
    return client, cluster


def _close(client, cluster, plugin: str | None) -> None:
    """Remove the run's plugin (which cancels anything still running), then disconnect."""
    for step in (
        (lambda: client.unregister_worker_plugin(plugin)) if plugin else None,
        lambda: client.close(timeout=10),
        (lambda: cluster.close(timeout=30)) if cluster is not None else None,
    ):
        if step is None:
            continue
        try:
            step()
        except Exception:  # noqa: BLE001 - the scheduler may be gone: nothing left to tidy
            pass


# --------------------------------------------------------------------------------------------
# the run's payload


def _template_tar(context: RunContext) -> bytes:
    """The template course (gradebook, sources, releases) and the course's own judges."""
    template = context.template

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        parts = Path(info.name).parts
        return None if ".jupyter" in parts or "__pycache__" in parts else info

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(template.root, arcname="template", filter=keep)
        checks = Path(template.course_root) / "checks"
        if checks.is_dir():
            tar.add(checks, arcname="course/checks", filter=keep)
    return buffer.getvalue()


def make_payload(context: RunContext, client) -> dict:
    """What every worker needs for this run (see :class:`cluster_worker.GradingPlugin`)."""
    from distributed.comm import get_address_host

    from .cluster_worker import code_digest

    threads: dict[str, int] = {}
    for address, count in client.nthreads().items():
        host = get_address_host(address)
        threads[host] = threads.get(host, 0) + count
    return {
        "run": uuid.uuid4().hex[:12],
        "tar": _template_tar(context),
        "template": context.template,  # paths rewritten to the unpacked copy on the worker
        "options": context.options,
        "seed": context.seed,
        "cache_dir": str(context.cache_dir),
        "keep_work": context.keep_work,
        "code": code_digest(),
        "threads": threads,  # worker threads per host: the cores each sandbox may use
    }


# --------------------------------------------------------------------------------------------
# the run


def _task_key(kind: str, name: str) -> str:
    return f"{kind}-{re.sub(r'[^A-Za-z0-9_.]+', '_', name)[:40]}-{uuid.uuid4().hex[:8]}"


def _scheduler_lost(scheduler: Scheduler, error: BaseException) -> AutograderError:
    return AutograderError(
        f"lost the Dask scheduler at {scheduler} "
        f"({type(error).__name__}: {error}); the submissions graded so far are saved: run the "
        "same command again to grade the rest"
    )


class Session:
    """One run on a connected client: warm-ups first, then the submissions, a window of
    at most as many tasks in flight as the cluster has threads."""

    def __init__(self, client, plan, run_id: str):
        self.client, self.plan, self.run_id = client, plan, run_id
        self.context: RunContext = plan.context
        self.running: dict = {}  # future -> (index, resume key)

    def _save_log(self, record: Record, text: str | None) -> None:
        if not record.log or text is None:
            return
        out = self.context.out
        target = (out / record.log).resolve()
        if out not in target.parents:  # a record names a file under OUT, nothing else
            record.log = None
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    def _record(self, result: dict) -> Record:
        record = Record.from_dict(result["record"])
        self._save_log(record, result.get("log"))
        return record

    def warm_up(self, on_reference) -> None:
        from distributed import as_completed

        from .cluster_worker import warm_up_task

        futures = [
            self.client.submit(
                warm_up_task, self.run_id, a, key=_task_key("warm-up", a), pure=False
            )
            for a in self.plan.to_warm
        ]
        for future in as_completed(futures):
            try:
                on_reference(self._record(future.result()))
            except Cancelled:
                continue

    def _submit(self, index: int, done, on_record) -> None:
        from .cluster_worker import grade_task

        submission = self.plan.submissions[index]
        data = None
        if not submission.problem:
            try:
                data = submission.path.read_bytes()
            except OSError:
                pass
        if data is None:  # refused at intake or unreadable: recorded here, nothing to run
            on_record(index, grade_one(submission, self.context))
            return
        key = submission_key(data, submission, self.context)
        future = self.client.submit(
            grade_task,
            self.run_id,
            submission,
            data,
            key=_task_key("grade", submission.student),
            pure=False,
        )
        self.running[future] = (index, key)
        done.add(future)

    def _top_up(self, pending: deque, done, on_record) -> None:
        capacity = max(1, sum(self.client.nthreads().values()))
        while pending and len(self.running) < capacity:
            self._submit(pending.popleft(), done, on_record)

    def _crashed(self, index: int, error: BaseException) -> Record:
        from .grading import _rejected

        submission = self.plan.submissions[index]
        reason = (
            "grading it killed the grading worker process every time it ran, on several "
            "workers (Dask gave up: distributed.scheduler.allowed-failures); not graded, "
            "check it by hand"
        )
        record = _rejected(
            submission, submission.assignment, Rejected("crashed", reason), self.context
        )
        record.reasons += [n for n in submission.notes if n not in record.reasons]
        return record

    def grade(self, on_record) -> None:
        from distributed import as_completed
        from distributed.scheduler import KilledWorker

        done = as_completed()
        pending = deque(self.plan.todo)
        self._top_up(pending, done, on_record)
        for future in done:
            index, key = self.running.pop(future)
            try:
                record = self._record(future.result())
            except KilledWorker as error:
                record = self._crashed(index, error)
            except Cancelled:
                continue
            save_record(self.context.out, self.plan.submissions[index], key, record)
            on_record(index, record)
            self._top_up(pending, done, on_record)


def run(plan, on_reference, on_record, *, scheduler: Scheduler) -> bool:
    """The Dask executor of :func:`autograder.batch.grade_batch` (returns: interrupted?)."""
    from concurrent.futures import CancelledError

    from distributed.comm import CommClosedError

    from .cluster_worker import GradingPlugin

    client, cluster = connect(scheduler, plan.context.work_dir)
    plugin = None
    try:
        payload = make_payload(plan.context, client)
        try:
            client.register_plugin(GradingPlugin(payload), name=f"featurelab-{payload['run']}")
        except (OSError, CancelledError, CommClosedError):
            raise
        except Exception as error:  # noqa: BLE001 - e.g. the workers cannot import autograder
            raise AutograderError(
                f"the Dask workers at {scheduler} cannot load the grader ({error}): start them "
                "from the course's virtual environment with the repository on PYTHONPATH"
            ) from None
        plugin = f"featurelab-{payload['run']}"
        session = Session(client, plan, payload["run"])
        session.warm_up(on_reference)
        session.grade(on_record)
        return False
    except KeyboardInterrupt:
        return True
    except (OSError, CancelledError, CommClosedError) as error:
        if client.status == "running" and not isinstance(error, CancelledError):
            raise  # not the scheduler's doing (e.g. OUT cannot be written)
        raise _scheduler_lost(scheduler, error) from None
    except AutograderError:
        raise
    except Exception as error:  # noqa: BLE001 - a worker could not grade at all (setup)
        raise AutograderError(
            f"a Dask worker could not grade ({type(error).__name__}: {error}); the "
            "submissions graded so far are saved: fix it and run the same command again"
        ) from None
    finally:
        _close(client, cluster, plugin)
