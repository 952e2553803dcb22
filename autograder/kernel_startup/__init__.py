"""Start-up of the grading kernel: import ``autograder.checks`` before any student code runs.

``autograder.checks`` captures the pristine ``torch.equal``, ``numpy.allclose``, ... at import;
the hidden tests compare with those, so student code that redefines them cannot fool a test.
That only holds if the import happens *before* the first cell. The autograder points
``IPYTHONDIR`` of every grading kernel at a per-run copy of ``ipython_kernel_config.py`` (next
to this file), whose ``exec_lines`` call :func:`run` when the kernel starts.

:func:`run` also writes the marker file named by ``$FEATURELAB_KERNEL_MARKER`` (when set), so
the autograder can check, per submission, that the start-up really ran; a submission graded
by a kernel without it is reported as an error, never silently graded undefended.
"""

from __future__ import annotations

import json
import os
import sys

MARKER_ENV = "FEATURELAB_KERNEL_MARKER"


def run() -> None:
    """Import ``autograder.checks`` (capturing pristine functions) and write the marker file."""
    import importlib
    import pkgutil

    import autograder.checks

    # The per-assignment reference modules too: they bind scipy / scikit-learn functions
    # (linear_sum_assignment, KMeans, LinearSVC ...) at import, before student code can
    # replace them.
    for module in pkgutil.iter_modules(autograder.checks.__path__):
        importlib.import_module(f"autograder.checks.{module.name}")

    marker = os.environ.get(MARKER_ENV)
    if marker:
        with open(marker, "w", encoding="utf-8") as stream:
            json.dump({"pid": os.getpid(), "checks": "autograder.checks" in sys.modules}, stream)
