"""Evidence for the autograder's judge: plain data out of the grading sandbox (no answers here).

Under the autograder a notebook runs in an OS sandbox that holds no reference answer. Its
hidden test cells are *collectors*: they call the student's functions on the probes the judge
sent in and :func:`record` what came back. The judge, a trusted process outside the sandbox,
reads that evidence and decides the score. Only plain data crosses: JSON (numbers, strings,
booleans, lists, dicts with string keys) and numeric arrays in ``.npz`` files written with
``allow_pickle=False``; never pickles, classes or code.

In the sandbox (``$FEATURELAB_EVIDENCE_DIR`` and ``$FEATURELAB_PROBES`` set by the grader):

    from featurelab import evidence as _evidence
    _probes = _evidence.probes()
    _evidence.record("test_ex1_count_parameters",
                     counts=[_evidence.attempt(count_parameters, m) for m in _probes.modules("ex1")])

Outside the grader :func:`probes` is empty and :func:`record` does nothing, so a solution
notebook still runs from top to bottom anywhere.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np

EVIDENCE_ENV = "FEATURELAB_EVIDENCE_DIR"
PROBES_ENV = "FEATURELAB_PROBES"
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,120}$")
# torch.nn layers a probe module may be built from (specs are data, never code).
_LAYERS = (
    "Conv2d",
    "Linear",
    "ReLU",
    "MaxPool2d",
    "AvgPool2d",
    "AdaptiveAvgPool2d",
    "Dropout",
    "BatchNorm2d",
    "BatchNorm1d",
    "Flatten",
    "Identity",
    "Sigmoid",
    "Tanh",
    "Hardswish",
)


def active() -> bool:
    """True inside a grading sandbox (evidence is being collected)."""
    return bool(os.environ.get(EVIDENCE_ENV))


class Raised(dict):
    """What :func:`attempt` returns when the call raised: only the exception's class name."""

    def __init__(self, error: BaseException):
        super().__init__(__raised__=type(error).__name__[:60])


def attempt(function, *args, **kwargs):
    """``function(*args, **kwargs)``, or :class:`Raised` (the exception's class name) if it raised.

    One failing probe then costs that probe, not the whole cell.
    """
    try:
        return function(*args, **kwargs)
    except Exception as error:  # noqa: BLE001 - recorded for the judge
        return Raised(error)


# --------------------------------------------------------------------------------------------
# probes (written by the judge, read here)


class Probes:
    """The judge's probes for this notebook: JSON values, arrays and files.

    ``values`` is the decoded ``probes.json``; arrays come from ``probes.npz``; files (e.g.
    held-back images) sit in the probes folder. Empty outside the grader.
    """

    def __init__(self, folder: Path | None):
        self.folder = folder
        self.values: dict = {}
        self._arrays: dict[str, np.ndarray] = {}
        if folder is not None:
            json_path = folder / "probes.json"
            if json_path.is_file():
                self.values = json.loads(json_path.read_text())
            npz_path = folder / "probes.npz"
            if npz_path.is_file():
                with np.load(npz_path, allow_pickle=False) as data:
                    self._arrays = {name: data[name] for name in data.files}

    def value(self, key: str, default=None):
        """A JSON value sent by the judge (``default`` when absent)."""
        return self.values.get(key, default)

    def array(self, key: str) -> np.ndarray | None:
        return self._arrays.get(key)

    def tensors(self, prefix: str) -> dict:
        """``{name: torch.Tensor}`` of the arrays whose name starts with ``prefix + "/"``."""
        import torch

        start = prefix + "/"
        return {
            name[len(start) :]: torch.from_numpy(array.copy())
            for name, array in sorted(self._arrays.items())
            if name.startswith(start)
        }

    def modules(self, key: str) -> list:
        """The ``torch.nn`` modules described by the specs under ``key`` (see :func:`build_module`)."""
        return [build_module(spec) for spec in self.values.get(key, [])]

    def files(self, key: str) -> list[Path]:
        """Paths of the files listed under ``key`` (relative to the probes folder)."""
        if self.folder is None:
            return []
        return [self.folder / name for name in self.values.get(key, [])]


def probes() -> Probes:
    """The probes of the running grading sandbox (empty outside the grader)."""
    folder = os.environ.get(PROBES_ENV)
    return Probes(Path(folder) if folder else None)


def build_module(spec):
    """A ``torch.nn`` module from a data spec (no code): ``["Conv2d", [3, 8, 3], {"bias": False}]``
    for one layer, ``{"sequential": [layer, ...]}`` for an ``nn.Sequential``; seeded weights
    with ``{"seed": 0, ...}`` on the sequential. Only the layers of ``_LAYERS`` are allowed."""
    import torch
    from torch import nn

    if isinstance(spec, dict):
        if "seed" in spec:
            torch.manual_seed(int(spec["seed"]))
        return nn.Sequential(*[build_module(layer) for layer in spec["sequential"]])
    name, args, kwargs = spec
    if name not in _LAYERS:
        raise ValueError(f"layer {name!r} is not allowed in a probe spec")
    return getattr(nn, name)(*args, **kwargs)


# --------------------------------------------------------------------------------------------
# evidence (written here, read by the judge)


def _plain(value, arrays: dict, path: str):
    """``value`` as JSON-able data; tensors and arrays go to ``arrays`` (referenced by name)."""
    if isinstance(value, Raised):
        return dict(value)
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else {"__float__": str(value)}
    if type(value).__module__.startswith("torch"):
        import torch

        if isinstance(value, torch.Size):
            return [int(v) for v in value]
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu()
            if value.dtype == torch.bfloat16:
                value = value.float()
            value = value.numpy()
        elif isinstance(value, torch.device | torch.dtype):
            return str(value)
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            return {"__unsupported__": f"array of dtype {value.dtype}"}
        name = f"a{len(arrays)}"
        arrays[name] = np.ascontiguousarray(value)
        return {"__array__": name}
    if isinstance(value, (list, tuple)):
        return [_plain(item, arrays, f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, dict):
        return {str(key): _plain(item, arrays, f"{path}.{key}") for key, item in value.items()}
    return {"__unsupported__": type(value).__name__[:60]}


def record(grade_id: str, **values) -> None:
    """Write ``values`` as the evidence of test cell ``grade_id`` (no-op outside the grader).

    Values: numbers, strings, booleans, None, lists/tuples/dicts of them, tensors and numpy
    arrays (numeric), :class:`Raised`. Anything else is recorded as unsupported (the judge
    then fails that item). A second call for the same cell adds to / replaces keys.
    """
    folder = os.environ.get(EVIDENCE_ENV)
    if not folder:
        return
    if not _NAME.match(grade_id):
        raise ValueError(f"bad grade_id {grade_id!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    json_path = folder / f"{grade_id}.json"
    npz_path = folder / f"{grade_id}.npz"
    arrays: dict[str, np.ndarray] = {}
    document: dict = {}
    if json_path.is_file():  # merge with an earlier call for the same cell
        document = json.loads(json_path.read_text())
        if npz_path.is_file():
            with np.load(npz_path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
    for key, value in values.items():
        document[key] = _plain(value, arrays, key)
    if arrays:
        with open(npz_path, "wb") as stream:
            np.savez(stream, **arrays)
    json_path.write_text(json.dumps(document))
