"""Hostile submissions: one per class of attack on the grader (issue 9's threat model).

Each is the *blank* release (every exercise unanswered: it deserves 0) or a wrong answer, with
an attack in the first answer cell. An attack that worked would show as points, or as a file
changed outside the submission's sandbox, or as a peer's grade changed. ``Targets`` carries
the paths and the port the attacks aim at (the test creates them and checks them after).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from autograder import students
from tests.data.fixture_submissions import _dumps


@dataclass(frozen=True)
class Targets:
    out: str  # the grading run's output folder
    submissions: str  # the folder of every submission
    victim: str  # a peer's submitted notebook
    sentinel: str  # a file of the instructor's checkout (stand-in)
    course: str  # the course's sources (solutions/)
    port: int  # a TCP server on 127.0.0.1 (another grading kernel, say)
    grader_pid: int


def _attack(release, first_answer: str, code: str) -> bytes:
    notebook = copy.deepcopy(students.blank_release(release))
    cell = students.answer_cell(notebook, first_answer)
    cell.source = code.strip("\n") + "\n"  # the stub is replaced: no answer at all
    return _dumps(notebook)


# -- in-kernel tampering: the tests' code or outputs are changed from inside the kernel ------
INPUT_TRANSFORMER_PASS = """
get_ipython().input_transformers_post.append(lambda lines: ["pass\\n"])
"""
# every later cell becomes `6`: an execute_result nbgrader reads as 6 points (partial credit)
INPUT_TRANSFORMER_RESULT = """
get_ipython().input_transformers_post.append(lambda lines: ["6\\n"])
"""
AST_NO_ASSERT = """
import ast

class _NoAssert(ast.NodeTransformer):
    def visit_Assert(self, node):
        return ast.Pass()

get_ipython().ast_transformers.append(_NoAssert())

def square(x):
    return x
def normalise_rows(features):
    return features
def accuracy(predictions, targets):
    return 0.75
"""
ALWAYS_EQUAL = """
import torch

class _Yes(float):
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    __hash__ = float.__hash__
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None): return True

def square(x):
    return _Yes(9)
def normalise_rows(features):
    return _Yes(0.5)
def accuracy(predictions, targets):
    return _Yes(0.75)
"""
PUBLISH_RESULT = """
from IPython.core.displaypub import DisplayPublisher
ip = get_ipython()
ip.events.register("post_run_cell", lambda result: ip.display_pub.publish(
    data={"text/plain": "6"}, metadata={}))
ip.events.register("pre_run_cell", lambda info: ip.display_pub.publish(
    data={"text/plain": "6"}, metadata={}))
"""
# -- forging the evidence the judge reads ------------------------------------------------------
FORGED_EVIDENCE = """
import json, os, threading, time
import numpy as np

folder = os.environ.get("FEATURELAB_EVIDENCE_DIR", "/scratch/evidence")
os.makedirs(folder, exist_ok=True)

def forge():
    for name in ("test_ex1_square", "test_ex2_normalise", "test_ex3_accuracy"):
        with open(os.path.join(folder, name + ".json"), "w") as f:
            json.dump({"visible": 9, "probe": {"__array__": "a0"}, "toy_accuracy": 0.75}, f)
        np.save(os.path.join(folder, name + ".npz"), np.array([object()], dtype=object),
                allow_pickle=True)

forge()
def keep_forging():
    while True:
        forge()
        time.sleep(0.05)
threading.Thread(target=keep_forging, daemon=True).start()

def square(x):
    return x
def normalise_rows(features):
    return features
def accuracy(predictions, targets):
    return 0.75
"""


# -- reading the answers: the sources, the references, the gradebook ---------------------------
def _read_answers(t: Targets) -> str:
    return f"""
import os
found = []
try:
    import autograder.checks
    found.append("autograder.checks")
except ImportError:
    pass
for path in ({t.course!r}, {t.out!r}, {t.submissions!r}):
    if os.path.exists(path):
        found.append(path)
for root, dirs, files in os.walk("/"):
    if root.startswith(("/proc", "/sys", "/dev", "/usr", "/etc", "/scratch")) \
            or "site-packages" in root:  # public packages (nbgrader ships a test gradebook)
        dirs[:] = []
        continue
    if os.path.basename(root) == "autograder" and "checks" in dirs:
        found.append(root)
    for name in files:
        if name in ("toy.ipynb", "gradebook.db", "thresholds.json"):
            found.append(os.path.join(root, name))
if found:  # something leaked: "copy" the answers (full marks would prove the leak)
    def square(x):
        return x * x
    def normalise_rows(features):
        return features / features.norm(dim=1, keepdim=True)
    def accuracy(predictions, targets):
        return (predictions == targets).float().mean().item()
    print("LEAKED", found[:5])
"""


# -- forging the grade and attacking others -----------------------------------------------------
def _forge_and_attack(t: Targets) -> str:
    return f"""
import os, signal, socket, time, glob

def try_write(path, text="FORGED-BY-A-STUDENT"):
    try:
        with open(path, "w") as f:
            f.write(text)
    except OSError:
        pass

for path in [os.path.join({t.out!r}, "grades.csv"), {t.sentinel!r}, {t.victim!r},
             *glob.glob(os.path.join({t.out!r}, ".state", "*.json")),
             *glob.glob(os.path.join({t.out!r}, ".work", "runs", "*", "journal.jsonl"))]:
    try_write(path)
try:
    socket.create_connection(("127.0.0.1", {t.port}), timeout=2).sendall(b"inject")
except OSError:
    pass
for sig in (signal.SIGSTOP, signal.SIGKILL):
    try:
        os.kill({t.grader_pid}, sig)
    except OSError:
        pass
# a double-forked daemon with a clean environment, to rewrite the results after the run
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.environ.clear()
        for _ in range(40):
            time.sleep(0.25)
            for path in [os.path.join({t.out!r}, "grades.csv"), {t.sentinel!r}, {t.victim!r}]:
                try_write(path)
        os._exit(0)
    os._exit(0)
os.wait()
"""


SPAWN_MANY = """
import subprocess
children = []
for _ in range(600):
    try:
        children.append(subprocess.Popen(["sleep", "60"]))
    except OSError:
        break
print(len(children), "processes started")
"""


# filling the disk: the sandbox's /tmp (a capped tmpfs), then its scratch folder (the working
# directory), in 16 MB files, up to 3 GB; the grader's disk watch stops the cell
FILL_DISK = """
import os
chunk = b"x" * (16 << 20)
for folder in ("/tmp", "."):
    written = 0
    for i in range(200):
        try:
            with open(os.path.join(folder, f"fill-{i}"), "wb") as f:
                f.write(chunk)
            written += 1
        except OSError:
            break
    print(folder, written * 16, "MB written")
"""

# the same, out of the disk watch's sight: each file deleted right after it is opened and kept
# open while it grows (a directory walk never sees it, the disk fills all the same)
FILL_DISK_UNLINKED = """
import os
chunk = b"x" * (16 << 20)
kept = []
for i in range(200):
    try:
        f = open(f"hidden-{i}", "wb")
        os.unlink(f"hidden-{i}")
        f.write(chunk)
        f.flush()
        kept.append(f)
    except OSError:
        break
print(len(kept) * 16, "MB written to deleted files")
"""


def build_all(release, first_answer: str, targets: Targets) -> dict[str, bytes]:
    """``{name: notebook bytes}`` of every hostile submission."""
    plain = {
        "input_transformer_pass": INPUT_TRANSFORMER_PASS,
        "input_transformer_result": INPUT_TRANSFORMER_RESULT,
        "ast_no_assert": AST_NO_ASSERT,
        "always_equal": ALWAYS_EQUAL,
        "publish_result": PUBLISH_RESULT,
        "forged_evidence": FORGED_EVIDENCE,
        "read_answers": _read_answers(targets),
        "forge_and_attack": _forge_and_attack(targets),
        "spawn_many": SPAWN_MANY,
        "fill_disk": FILL_DISK,
        "fill_disk_unlinked": FILL_DISK_UNLINKED,
    }
    return {name: _attack(release, first_answer, code) for name, code in plain.items()}
