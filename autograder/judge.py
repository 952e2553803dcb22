"""The trusted judge: reads the plain-data evidence a sandboxed notebook left, and scores it.

The student's notebook runs in an OS sandbox (:mod:`autograder.jail`) that holds no
reference answer. Its hidden test cells are collectors (:mod:`featurelab.evidence`): they
run the student's code on the probes this module sent in and write what came back as JSON +
``.npz``. This module runs outside the sandbox, in the grading worker: it decodes the evidence
with strict limits (no pickle, no code, numeric arrays only, bounded sizes), calls the
assignment's judges (``JUDGES`` in ``autograder/checks/<assignment>.py``, or
``<course>/checks/<assignment>.py`` for another course) and returns one :class:`Verdict` per
test cell. Scores come from verdicts only, never from what the kernel printed.

A judge is ``judge(evidence: Evidence, probes: ProbeSet, context: Context) -> None``: it raises
:class:`Failed` with a message for the student (the only text of a test cell that reaches the
feedback), may call ``context.metric(name, value)``, and returns nothing when the cell passes.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import random
import re
import traceback
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import numpy as np

log = logging.getLogger("autograder.judge")

MAX_JSON_BYTES = 8 * 2**20
MAX_NPZ_BYTES = 512 * 2**20
MAX_ARRAY_ELEMENTS = 64 * 2**20
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]{0,59}$")


class Failed(AssertionError):
    """A judge's verdict "this cell fails", with the message the student will read."""


@dataclass
class Verdict:
    passed: bool
    message: str = ""
    score: float | None = None  # partial credit in points (None: all or nothing)


class Raised:
    """The student's code raised ``name`` (an exception class name) for this item."""

    def __init__(self, name: str):
        self.name = name if _IDENTIFIER.match(name or "") else "an exception"

    def __repr__(self) -> str:
        return f"Raised({self.name})"


# --------------------------------------------------------------------------------------------
# probes (made here, sent into the sandbox)


@dataclass
class ProbeSet:
    """What the judge sends in: JSON values, numeric arrays, files (bytes), and secrets kept
    out of the sandbox (``private``: e.g. the labels of held-back images)."""

    values: dict = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    private: dict = field(default_factory=dict)

    def write(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "probes.json").write_text(json.dumps(self.values))
        if self.arrays:
            with open(folder / "probes.npz", "wb") as stream:
                np.savez(stream, **self.arrays)
        for name, data in self.files.items():
            path = folder / name
            if (
                path.resolve().parent != folder.resolve()
                and folder.resolve() not in path.resolve().parents
            ):
                raise ValueError(f"probe file outside the probes folder: {name}")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

    def tensor(self, name: str):
        import torch

        return torch.from_numpy(self.arrays[name].copy())


# --------------------------------------------------------------------------------------------
# evidence (read here, untrusted)


def _decode(value, arrays: dict[str, np.ndarray]):
    if isinstance(value, dict):
        if set(value) == {"__raised__"}:
            return Raised(str(value["__raised__"]))
        if set(value) == {"__array__"}:
            array = arrays.get(str(value["__array__"]))
            if array is None:
                return Unsupported("missing array")
            return array
        if set(value) == {"__float__"}:
            return (
                float(value["__float__"])
                if value["__float__"] in ("nan", "inf", "-inf")
                else Unsupported("float")
            )
        if set(value) == {"__unsupported__"}:
            return Unsupported(str(value["__unsupported__"])[:60])
        return {str(k): _decode(v, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, arrays) for v in value]
    return value


class Unsupported:
    """A value the collector could not turn into plain data (its type name only)."""

    def __init__(self, what: str):
        self.what = what if _IDENTIFIER.match(what.split(" ")[0] or "") else "object"


class Evidence:
    """The decoded evidence of one test cell, with typed accessors that fail with clear messages.

    Accessors raise :class:`Failed` naming ``what`` (e.g. ``"count_parameters(probe)"``) when
    the item is missing, raised, or has the wrong type.
    """

    def __init__(self, grade_id: str, values: dict):
        self.grade_id = grade_id
        self.values = values

    def __contains__(self, key: str) -> bool:
        return key in self.values

    def get(self, key: str, what: str | None = None):
        what = what or key
        if key not in self.values:
            raise Failed(f"{what}: no result (the check stopped before it)")
        return check_value(self.values[key], what)

    def int(self, key: str, what: str | None = None) -> int:
        return as_int(self.get(key, what), what or key)

    def float(self, key: str, what: str | None = None) -> float:
        return as_float(self.get(key, what), what or key)

    def array(self, key: str, what: str | None = None, *, shape: tuple | None = None) -> np.ndarray:
        return as_array(self.get(key, what), what or key, shape=shape)

    def list(self, key: str, what: str | None = None) -> list:
        value = self.get(key, what)
        if not isinstance(value, list):
            raise Failed(f"{what or key}: expected a list of results")
        return value


def check_value(value, what: str):
    """``value``, unless the student's code raised for it or it is not plain data."""
    if isinstance(value, Raised):
        raise Failed(f"{what} raised {value.name}")
    if isinstance(value, Unsupported):
        raise Failed(f"{what}: the result is not a number, text, list or tensor ({value.what})")
    return value


def as_int(value, what: str) -> int:
    value = check_value(value, what)
    if isinstance(value, bool) or not isinstance(value, int):
        kind = "a float" if isinstance(value, float) else type(value).__name__
        raise Failed(f"{what}: expected an int, got {kind}")
    return value


def as_float(value, what: str) -> float:
    value = check_value(value, what)
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Failed(f"{what}: expected a number, got {type(value).__name__}")
    return float(value)


def as_array(value, what: str, *, shape: tuple | None = None) -> np.ndarray:
    value = check_value(value, what)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = np.asarray(value)
    if isinstance(value, list):
        try:
            value = np.asarray(value, dtype=np.float64)
        except (ValueError, TypeError):
            raise Failed(f"{what}: expected a tensor or array of numbers") from None
    if not isinstance(value, np.ndarray):
        raise Failed(f"{what}: expected a tensor or array, got {type(value).__name__}")
    if shape is not None and tuple(value.shape) != tuple(shape):
        raise Failed(f"{what}: expected shape {tuple(shape)}, got {tuple(value.shape)}")
    return value


def close(
    actual: np.ndarray, expected: np.ndarray, *, rtol: float = 1e-4, atol: float = 1e-5
) -> bool:
    """Same shape and ``allclose`` in float64 (NaN never equals)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    if actual.shape != expected.shape:
        return False
    return bool(
        np.allclose(actual.astype(np.float64), expected.astype(np.float64), rtol=rtol, atol=atol)
    )


def relative_error(actual, expected) -> float:
    """``||actual - expected|| / ||expected||`` (inf on a shape mismatch)."""
    a = np.asarray(actual, dtype=np.float64).ravel()
    b = np.asarray(expected, dtype=np.float64).ravel()
    if a.shape != b.shape:
        return math.inf
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


def load_evidence(folder: Path, grade_id: str) -> Evidence | None:
    """The evidence of ``grade_id`` in ``folder``, or None when absent or unreadable.

    Refuses symlinks, oversized files, pickles and non-numeric arrays.
    """
    json_path = folder / f"{grade_id}.json"
    npz_path = folder / f"{grade_id}.npz"
    try:
        if json_path.is_symlink() or not json_path.is_file():
            return None
        if json_path.stat().st_size > MAX_JSON_BYTES:
            log.warning("evidence %s: JSON too large", grade_id)
            return None
        document = json.loads(json_path.read_text(encoding="utf-8"))
        if not isinstance(document, dict):
            return None
        arrays: dict[str, np.ndarray] = {}
        if npz_path.is_file() and not npz_path.is_symlink():
            if npz_path.stat().st_size > MAX_NPZ_BYTES:
                log.warning("evidence %s: arrays too large", grade_id)
                return None
            with zipfile.ZipFile(npz_path) as archive:  # a zip bomb is refused unopened
                members = archive.infolist()
                if len(members) > 10_000 or sum(m.file_size for m in members) > MAX_NPZ_BYTES:
                    log.warning("evidence %s: arrays too large once decompressed", grade_id)
                    return None
            with np.load(npz_path, allow_pickle=False) as data:
                for name in data.files[:10_000]:
                    array = data[name]
                    if array.dtype.kind not in "biuf" or array.size > MAX_ARRAY_ELEMENTS:
                        continue
                    arrays[name] = array
    except (OSError, ValueError, UnicodeDecodeError, RecursionError, zipfile.BadZipFile) as error:
        log.warning("evidence %s unreadable: %s", grade_id, type(error).__name__)
        return None
    try:
        return Evidence(grade_id, {str(k): _decode(v, arrays) for k, v in document.items()})
    except RecursionError:
        return None


# --------------------------------------------------------------------------------------------
# judging


@dataclass
class Context:
    """What a judge may use besides the evidence: the profile, thresholds, a metrics sink."""

    assignment: str
    profile: str
    seed: int
    metrics: dict[str, float] = field(default_factory=dict)
    cache: dict = field(default_factory=dict)  # per worker: reference models, ...

    def metric(self, name: str, value: float) -> None:
        self.metrics[name] = float(value)

    def threshold(self, metric: str) -> float:
        from autograder.checks import threshold

        return threshold(self.assignment, metric, self.profile)


def checks_module(course_root: Path, assignment: str) -> ModuleType:
    """The judge module of ``assignment``: ``<course>/checks/<assignment>.py`` if it exists,
    else ``autograder/checks/<assignment>.py``."""
    candidates = [
        Path(course_root) / "checks" / f"{assignment}.py",
        Path(__file__).resolve().parent / "checks" / f"{assignment}.py",
    ]
    for path in candidates:
        if path.is_file():
            name = f"_featurelab_judge_{assignment}_{abs(hash(str(path)))}"
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    raise FileNotFoundError(f"no judge module for {assignment!r} (looked at {candidates})")


_MODULES: dict[tuple[str, str], ModuleType] = {}


def judge_module(course_root: Path, assignment: str) -> ModuleType:
    key = (str(course_root), assignment)
    if key not in _MODULES:
        _MODULES[key] = checks_module(course_root, assignment)
    return _MODULES[key]


def make_probes(module: ModuleType, seed: int, profile: str) -> ProbeSet:
    maker = getattr(module, "make_probes", None)
    return maker(seed, profile) if maker is not None else ProbeSet()


def run_seed() -> int:
    """A fresh secret seed (the grader draws one per run and keeps it out of the sandbox)."""
    return random.SystemRandom().randrange(1, 2**31)


def judge_cell(
    module: ModuleType, grade_id: str, evidence: Evidence | None, probes: ProbeSet, context: Context
) -> Verdict | None:
    """The verdict on one test cell; None when there is no evidence (the cell did not finish)."""
    judges = getattr(module, "JUDGES", {})
    judge = judges.get(grade_id)
    if judge is None:
        return Verdict(False, "this check has no judge (course error: tell your instructor)")
    if evidence is None:
        return None
    try:
        outcome = judge(evidence, probes, context)
    except Failed as failure:
        return Verdict(False, str(failure)[:500] or "a check failed")
    except Exception:  # noqa: BLE001 - malformed evidence (or a judge bug: logged)
        log.warning("judge %s raised:\n%s", grade_id, traceback.format_exc())
        return Verdict(
            False, "the results of this cell could not be checked (unexpected types or shapes)"
        )
    if isinstance(outcome, (int, float)) and not isinstance(outcome, bool):
        return Verdict(True, "partial credit", score=float(outcome))
    return Verdict(True)
