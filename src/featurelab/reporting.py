"""Report a notebook's reference metrics to the instructor tools.

A solution notebook calls ``report_metric("accuracy", acc)`` after computing a metric that a
hidden test compares with a threshold. When the notebook runs under
``python -m autograder calibrate`` (or ``grade``), the environment variable
``FEATURELAB_METRICS_FILE`` names a JSON file and the value is recorded there (one JSON object
``{metric: value}``; a later report of the same metric replaces the earlier one). Everywhere
else (students, Colab, CI) the variable is unset and the call does nothing.

It never prints anything: it is safe to call in a test cell (nbgrader gives 0 to a test cell
that writes to stderr).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from ._io import atomic_write_json

METRICS_ENV = "FEATURELAB_METRICS_FILE"


def report_metric(name: str, value: float) -> None:
    """Record ``value`` under ``name`` in ``$FEATURELAB_METRICS_FILE`` (no-op when unset).

    ``value`` must be a real number (a Python/NumPy scalar or a one-element tensor); it is
    stored as a float. The file is rewritten atomically, so a reader never sees half of it.
    """
    target = os.environ.get(METRICS_ENV, "").strip()
    if not target:
        return
    if not isinstance(name, str) or not name:
        raise ValueError(f"metric name must be a non-empty string, got {name!r}")
    number = float(value.item() if hasattr(value, "item") else value)
    if not math.isfinite(number):
        raise ValueError(f"metric {name!r} is not a finite number: {number!r}")
    path = Path(target)
    metrics = read_metrics(path)
    metrics[name] = number
    path.parent.mkdir(parents=True, exist_ok=True)
    # 0o600 as before: the metrics file is the grader's business.
    atomic_write_json(path, metrics, permissions=None, indent=2, sort_keys=True)


def read_metrics(path: str | os.PathLike) -> dict[str, float]:
    """The metrics recorded in ``path`` so far (``{}`` when the file is missing or empty)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    if not text.strip():
        return {}
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a JSON object of metrics")
    return {str(key): float(value) for key, value in data.items()}
