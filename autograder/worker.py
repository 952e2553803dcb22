"""A long-lived grading process: ``python -m autograder.worker`` (started by the grader).

Importing nbgrader, nbconvert and sqlalchemy costs about 3 s of CPU, as much as grading a
small notebook; a worker pays it once and then runs nbgrader's ``Autograde`` converter (the
code behind ``nbgrader autograde``, the same configuration) for one submission after another.

Protocol: one JSON request per line on stdin ``{"course", "assignment", "student", "env",
"log"}``; one JSON reply per line on the *original* stdout ``{"success": bool, "error": str}``
(first line: ``{"ready": true}``). While a request runs, file descriptors 1 and 2 point at
the request's log file, so nbgrader's log, warnings, and the kernel's own output (the kernel
inherits them) land in the submission's log, never in the protocol channel. ``env`` is
applied to ``os.environ`` for the request (the kernel inherits it) and undone afterwards.

The grader (:class:`autograder.sandbox.Worker`) watches the process tree of the worker under
the submission's limits and kills it when they are exceeded; a new worker is then started.
Conversely the worker watches the grader: if the grader dies (Ctrl-C, SIGTERM, SIGKILL), the
worker kills its kernel and exits within half a second.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback


def _handle(request: dict, autograde_cls, loader_cls, coursedir_cls) -> dict:
    log_fd = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    environ = dict(os.environ)
    cwd = os.getcwd()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[Autograde | %(levelname)s] %(message)s"))
    app = None
    try:
        os.environ.update(request["env"])
        os.chdir(request["course"])
        config = loader_cls("nbgrader_config.py", path=request["course"]).load_config()
        coursedir = coursedir_cls(config=config)
        coursedir.assignment_id = request["assignment"]
        coursedir.student_id = request["student"]
        app = autograde_cls(coursedir=coursedir, config=config)
        app.force = True
        app.create_student = True
        app.log.addHandler(handler)
        app.start()
        return {"success": True}
    except Exception as error:  # noqa: BLE001 - reported to the grader, which decides
        traceback.print_exc()
        return {"success": False, "error": f"{type(error).__name__}: {error}"}
    finally:
        if app is not None:
            app.log.removeHandler(handler)
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])
        os.environ.clear()
        os.environ.update(environ)
        os.chdir(cwd)


def _die_with_parent(parent_pid: int, period_s: float = 0.5) -> None:
    """Watch the grader; if it dies (even by SIGKILL), kill our kernel and exit at once.

    The worker runs in a session of its own (so that a limit can kill its whole tree), hence
    signals sent to the grader's process group never reach it: without this watch a worker
    busy with an endless cell would outlive an interrupted grader.
    """
    import threading
    import time

    def watch() -> None:
        while True:
            time.sleep(period_s)
            if os.getppid() != parent_pid:
                try:
                    import psutil

                    children = psutil.Process().children(recursive=True)
                    for child in children:
                        child.kill()
                except Exception:  # noqa: BLE001 - exiting anyway
                    pass
                os._exit(1)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


def main() -> int:
    _die_with_parent(os.getppid())
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    # Anything else written to stdout goes to stderr (the worker's log), not the protocol.
    os.dup2(2, 1)
    from nbgrader.converters import Autograde
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config.loader import PyFileConfigLoader

    import autograder.judged_execute  # noqa: F401  (imported by the course config: load it once)

    logging.getLogger("traitlets").setLevel(logging.INFO)

    protocol.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        reply = _handle(request, Autograde, PyFileConfigLoader, CourseDirectory)
        protocol.write(json.dumps(reply) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
