"""featurelab's messages: one logger, ``featurelab``, instead of bare ``print``.

The library never prints. What a student should see (a dataset's unreadable files, a
feature-cache hit, a cache folder that cannot be written) goes to the ``featurelab`` logger
(its children ``featurelab.data``, ``featurelab.cache``, ...):

* status lines use :func:`report`: level INFO when the call's ``progress`` argument is true
  (the same switch as its progress bar), DEBUG when false, so ``progress=False`` means silent;
* problems that do not stop the work use :func:`warn_once` (WARNING, once per process and
  key).

Unless the application configured that logger itself, it gets one handler that writes the
bare message to the *current* ``sys.stdout`` (stdout, not stderr: nbgrader gives 0 to a test
cell that writes to stderr; looked up at each message, so Jupyter's and pytest's redirections
work), at level INFO, without propagating to the root logger (no duplicates when the
application has its own logging). To silence it: ``logging.getLogger("featurelab")
.setLevel(logging.WARNING)``; to route it elsewhere: replace its handlers and/or set
``propagate = True``.
"""

from __future__ import annotations

import logging
import sys
import threading

LOGGER_NAME = "featurelab"


class _StdoutHandler(logging.Handler):
    """Writes each record to the ``sys.stdout`` of the moment."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stdout
            if stream is None:  # pythonw / a detached process
                return
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)


def _configure(root: logging.Logger) -> None:
    if root.handlers or getattr(root, "_featurelab_configured", False):
        return
    handler = _StdoutHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    root.addHandler(handler)
    if root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    root.propagate = False
    root._featurelab_configured = True  # type: ignore[attr-defined]


_configure(logging.getLogger(LOGGER_NAME))


def get_logger(name: str) -> logging.Logger:
    """The logger of featurelab module ``name`` (``featurelab.data.loaders`` -> itself;
    anything else is put under ``featurelab.``)."""
    if name != LOGGER_NAME and not name.startswith(LOGGER_NAME + "."):
        name = f"{LOGGER_NAME}.{name}"
    return logging.getLogger(name)


def report(logger: logging.Logger, message: str, *args: object, progress: bool = True) -> None:
    """A status line for the user: INFO when ``progress`` is true (shown), else DEBUG."""
    logger.log(logging.INFO if progress else logging.DEBUG, message, *args)


_WARNED: set[tuple[str, str]] = set()
_WARNED_LOCK = threading.Lock()


def warn_once(logger: logging.Logger, key: str, message: str, *args: object) -> bool:
    """Log ``message`` at WARNING the first time ``key`` is seen in this process (later: DEBUG).

    Returns True when the warning was emitted now.
    """
    with _WARNED_LOCK:
        first = (logger.name, key) not in _WARNED
        _WARNED.add((logger.name, key))
    logger.log(logging.WARNING if first else logging.DEBUG, message, *args)
    return first
