"""nbgrader's execute step, replaced: run the notebook in the OS sandbox, then let the judge score.

``Autograde.autograde_preprocessors`` starts with :class:`JudgedExecute` instead of nbgrader's
``Execute`` (it reads the same ``Execute.timeout`` configuration). It runs in the trusted
grading worker, outside the sandbox, and for one notebook:

1. makes a fresh scratch folder: the notebook (test cells already restored from the gradebook
   by nbgrader's sanitising step), the probes of the assignment's judge (seeded per run), a
   kernelspec, an empty evidence folder;
2. runs ``sandbox_runner/run_notebook.py`` there inside the sandbox (:mod:`autograder.jail`),
   reading its journal and the executed notebook from two pipes (student code cannot forge
   either; the grader writes the journal file itself, outside the sandbox);
3. copies the outputs back onto the trusted notebook cell by cell (a cell whose source came
   back changed is treated as not run);
4. replaces the outputs of every autograded test cell with the judge's verdict
   (:mod:`autograder.judge`): nothing on a pass, one ``AssertionError`` with the judge's
   message on a failure. nbgrader's ``SaveAutoGrades`` then scores those outputs, so the
   gradebook holds the judge's scores and nothing a kernel printed can change them;
5. writes the judge's metrics to ``$FEATURELAB_JUDGE_FILE``.

Settings come from the worker's environment (set by the grader for each submission):
``FEATURELAB_RUN_DIR``, ``FEATURELAB_COURSE_ROOT``, ``FEATURELAB_JAIL`` (JSON: data, shared
cache, torch home, slot, insecure, threads, seed, profile), the journal and skip variables.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import nbformat
from nbformat.notebooknode import NotebookNode
from nbgrader.preprocessors import Execute

from . import jail
from . import judge as judge_mod

JOURNAL_ENV = "FEATURELAB_GRADING_JOURNAL"
SKIP_ENV = "FEATURELAB_GRADING_SKIP"
RUN_DIR_ENV = "FEATURELAB_RUN_DIR"
COURSE_ROOT_ENV = "FEATURELAB_COURSE_ROOT"
JAIL_ENV = "FEATURELAB_JAIL"
JUDGE_FILE_ENV = "FEATURELAB_JUDGE_FILE"
MAX_NOTEBOOK_BYTES = 256 * 2**20
MAX_JOURNAL_BYTES = 16 * 2**20
VERDICT_ENAME = "JudgeVerdict"  # the error name of a failure the judge wrote (nothing else)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]{0,59}$")
_JUDGE_CACHE: dict = {}  # reference models etc., kept for the worker's lifetime


def _sandbox_paths(settings: dict, scratch: Path) -> dict[str, str]:
    """Where things are, seen from inside (or, insecure, from the host)."""
    inside = not settings.get("insecure")
    root = jail.SCRATCH if inside else str(scratch)
    paths = {"scratch": root, "runner": jail.SANDBOX_RUNNER if inside else str(jail.RUNNER_DIR)}
    for key, mount in (("data", "/data"), ("shared_cache", "/cache"), ("torch_home", "/weights")):
        if settings.get(key):
            paths[key] = mount if inside else settings[key]
    return paths


def _sandbox_env(settings: dict, paths: dict[str, str]) -> dict[str, str]:
    root = paths["scratch"]
    threads = str(settings.get("threads") or 1)
    env = {
        "HOME": f"{root}/home",
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), "/usr/bin", "/bin"]),
        "LANG": "C.UTF-8",
        "FEATURELAB_PROFILE": settings.get("profile", "grading"),
        "FEATURELAB_CACHE": f"{root}/cache",
        "FEATURELAB_EVIDENCE_DIR": f"{root}/evidence",
        "FEATURELAB_PROBES": f"{root}/probes",
        "FEATURELAB_METRICS_FILE": f"{root}/metrics.json",
        "NBGRADER_EXECUTION": "autograde",
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": f"{root}/home/.matplotlib",
        "XDG_CACHE_HOME": f"{root}/home/.cache",
        "IPYTHONDIR": f"{root}/ipython",
        "JUPYTER_PATH": f"{root}/jupyter/data",
        "JUPYTER_DATA_DIR": f"{root}/jupyter/data",
        "JUPYTER_CONFIG_DIR": f"{root}/jupyter/config",
        "JUPYTER_RUNTIME_DIR": f"{root}/jupyter/runtime",
        "JUPYTER_PLATFORM_DIRS": "1",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        "OMP_NUM_THREADS": threads,
        "MKL_NUM_THREADS": threads,
        "OPENBLAS_NUM_THREADS": threads,
    }
    for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    if "data" in paths:
        env["FEATURELAB_DATA"] = paths["data"]
    if "shared_cache" in paths:
        env["FEATURELAB_SHARED_CACHE"] = paths["shared_cache"]
    env["TORCH_HOME"] = paths.get("torch_home", f"{root}/home/.cache/torch")
    package_folder = jail.python_path()
    if package_folder:
        env["PYTHONPATH"] = package_folder
    return env


def _write_kernelspec(scratch: Path) -> None:
    folder = scratch / "jupyter" / "data" / "kernels" / "python3"
    folder.mkdir(parents=True, exist_ok=True)
    spec = {
        "argv": [
            sys.executable,
            "-m",
            "ipykernel_launcher",
            "-f",
            "{connection_file}",
            "--HistoryManager.enabled=False",
        ],
        "display_name": "Python 3 (grading sandbox)",
        "language": "python",
    }
    (folder / "kernel.json").write_text(json.dumps(spec))


def _prepare_scratch(scratch: Path, nb, notebook_name: str, source_dir: Path) -> None:
    """An empty scratch folder for one run: the sandbox's home, evidence, cache, Jupyter
    folders and kernelspec, and in ``work/`` the notebook and the other files of its folder."""
    if scratch.exists():
        shutil.rmtree(scratch)
    for sub in (
        "home",
        "evidence",
        "cache",
        "work",
        "ipython",
        "jupyter/runtime",
        "jupyter/config",
    ):
        (scratch / sub).mkdir(parents=True, exist_ok=True)
    _write_kernelspec(scratch)
    for path in source_dir.iterdir() if source_dir.is_dir() else []:
        if path.is_file() and path.suffix != ".ipynb":
            shutil.copyfile(path, scratch / "work" / path.name)
    nbformat.write(nb, str(scratch / "work" / notebook_name))


def _valid_event(data) -> dict | None:
    """A journal event from the runner, with only the fields and types we expect."""
    if not isinstance(data, dict) or data.get("event") not in ("start", "end", "done"):
        return None
    event = {"event": data["event"]}
    if data["event"] != "done":
        if not isinstance(data.get("index"), int):
            return None
        event["index"] = data["index"]
        gid = data.get("grade_id")
        event["grade_id"] = gid if isinstance(gid, str) and _IDENTIFIER.match(gid) else None
    if data["event"] == "end":
        seconds = data.get("seconds")
        event["seconds"] = float(seconds) if isinstance(seconds, (int, float)) else 0.0
        error = data.get("error")
        event["error"] = (
            error
            if isinstance(error, str) and _IDENTIFIER.match(error)
            else ("Error" if error else None)
        )
        event["skipped"] = bool(data.get("skipped"))
        event["stderr"] = data.get("stderr") is True
    if data["event"] == "done":
        error = data.get("error")
        event["error"] = str(error)[:300] if error else None
    return event


class JudgedExecute(Execute):
    """Sandboxed execution + judge verdicts (module docstring)."""

    def preprocess(self, nb, resources=None, km=None):
        settings = json.loads(os.environ.get(JAIL_ENV) or "{}")
        run_dir = Path(os.environ[RUN_DIR_ENV])
        course_root = Path(os.environ.get(COURSE_ROOT_ENV) or ".")
        assignment = resources["nbgrader"]["assignment"]
        scratch = run_dir / "sandbox"
        notebook_name = f"{assignment}.ipynb"
        source_dir = Path((resources.get("metadata") or {}).get("path") or ".")
        _prepare_scratch(scratch, nb, notebook_name, source_dir)

        module = judge_mod.judge_module(course_root, assignment)
        profile = settings.get("profile", "grading")
        seed = int(settings.get("seed") or 1)
        probes = judge_mod.make_probes(module, seed, profile)
        probes.write(scratch / "probes")
        skip = json.loads(os.environ.get(SKIP_ENV) or "{}")
        (scratch / "runner.json").write_text(
            json.dumps(
                {
                    "timeout": int(self.timeout or 600),
                    "interrupt_on_timeout": bool(self.interrupt_on_timeout),
                    "skip": skip,
                }
            )
        )
        spec = jail.JailSpec(
            scratch=scratch,
            ro_binds=tuple(jail.python_binds())
            + tuple(
                (settings[key], mount)
                for key, mount in (
                    ("data", "/data"),
                    ("shared_cache", "/cache"),
                    ("torch_home", "/weights"),
                )
                if settings.get(key)
            ),
            slot=int(settings.get("slot") or 1),
            insecure=bool(settings.get("insecure")),
        )
        paths = _sandbox_paths(settings, scratch)
        spec = jail.JailSpec(**{**spec.__dict__, "env": _sandbox_env(settings, paths)})
        jail.prepare_scratch(spec)
        executed, done = self._run(spec, paths, notebook_name)
        self._merge_outputs(nb, executed)
        context = judge_mod.Context(assignment, profile, seed, cache=_JUDGE_CACHE)
        self._judge(nb, module, scratch / "evidence", probes, context)
        judge_file = os.environ.get(JUDGE_FILE_ENV)
        if judge_file:
            Path(judge_file).write_text(json.dumps({"metrics": context.metrics}))
        if done is None or (done.get("error") or "").startswith("DeadKernelError"):
            what = (done or {}).get("error") or "the sandbox stopped before the end"
            raise RuntimeError(f"Kernel died while grading (DeadKernelError): {what}")
        return nb, resources

    # -- running ------------------------------------------------------------------------------
    def _run(self, spec: jail.JailSpec, paths: dict[str, str], notebook_name: str):
        journal_r, journal_w = os.pipe()
        result_r, result_w = os.pipe()
        argv = [
            sys.executable,
            f"{paths['runner']}/run_notebook.py",
            f"{paths['scratch']}/work/{notebook_name}",
            f"{paths['scratch']}/runner.json",
            str(journal_w),
            str(result_w),
        ]
        env = spec.env if not spec.insecure else {**spec.env, "PATH": spec.env["PATH"]}
        # What the sandbox prints (the runner, the kernel, student code) goes to a log of its
        # own, never into the grader's log: nothing it writes can become a reason or a message.
        sandbox_log = open(spec.scratch.parent / "sandbox.log", "ab")
        try:
            process = subprocess.Popen(
                jail.command(spec, argv),
                env=env if spec.insecure else None,
                cwd=spec.scratch,
                stdin=subprocess.DEVNULL,
                stdout=sandbox_log,
                stderr=subprocess.STDOUT,
                pass_fds=(journal_w, result_w),
                preexec_fn=jail.preexec(spec),
            )
        finally:
            sandbox_log.close()
            os.close(journal_w)
            os.close(result_w)
        done: dict = {}
        chunks: list[bytes] = []
        journal_path = os.environ.get(JOURNAL_ENV)
        threads = [
            threading.Thread(
                target=_read_journal, args=(journal_r, journal_path, done), daemon=True
            ),
            threading.Thread(target=_read_result, args=(result_r, chunks), daemon=True),
        ]
        for thread in threads:
            thread.start()
        process.wait()
        for thread in threads:
            thread.join()
        executed = None
        data = b"".join(chunks)
        if data and len(data) <= MAX_NOTEBOOK_BYTES:
            try:
                executed = nbformat.reads(data.decode("utf-8"), as_version=4)
            except Exception:  # noqa: BLE001 - untrusted bytes: treated as "nothing ran"
                executed = None
        return executed, (done or None)

    @staticmethod
    def _merge_outputs(nb, executed) -> None:
        cells = executed.cells if executed is not None else []
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            cell.outputs = []
            cell.execution_count = None
            if index < len(cells):
                other = cells[index]
                if other.get("cell_type") == "code" and other.get("source") == cell.source:
                    cell.outputs = [
                        NotebookNode(o) for o in other.get("outputs", []) if isinstance(o, dict)
                    ]
                    count = other.get("execution_count")
                    cell.execution_count = count if isinstance(count, int) else None

    @staticmethod
    def _judge(nb, module, evidence_dir: Path, probes, context) -> None:
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader", {})
            if cell.cell_type != "code" or not meta.get("grade") or meta.get("solution"):
                continue
            grade_id = meta.get("grade_id", "")
            evidence = judge_mod.load_evidence(evidence_dir, grade_id)
            verdict = judge_mod.judge_cell(module, grade_id, evidence, probes, context)
            if verdict is None:
                errors = [o for o in cell.outputs if o.get("output_type") == "error"]
                cell.outputs = [
                    _error_output(
                        "Error" if e.get("ename") == VERDICT_ENAME else e.get("ename"),
                        e.get("evalue", ""),
                        e.get("traceback", []),
                    )
                    for e in errors[:3]
                ]
                if not cell.outputs:
                    cell.outputs = [
                        _error_output(
                            "NoEvidence",
                            "this check did not run to its end (its results are missing)",
                            [],
                        )
                    ]
            elif verdict.passed and verdict.score is None:
                cell.outputs = []
            elif verdict.passed:
                cell.outputs = [
                    NotebookNode(
                        output_type="execute_result",
                        execution_count=None,
                        metadata={},
                        data={"text/plain": f"{verdict.score}"},
                    )
                ]
            else:
                cell.outputs = [
                    _error_output(
                        VERDICT_ENAME, verdict.message, [f"{VERDICT_ENAME}: {verdict.message}"]
                    )
                ]


def _read_journal(fd: int, journal_path: str | None, done: dict) -> None:
    """Read the runner's journal pipe ``fd`` to its end: valid events are appended to
    ``journal_path`` (when set), the ``done`` event goes into ``done``; at most
    ``MAX_JOURNAL_BYTES`` are read, anything malformed is dropped (untrusted bytes)."""
    total = 0
    sink = open(journal_path, "a", encoding="utf-8") if journal_path else None
    with os.fdopen(fd, "rb") as stream:
        for raw in stream:
            total += len(raw)
            if total > MAX_JOURNAL_BYTES:
                continue
            try:
                event = _valid_event(json.loads(raw))
            except (ValueError, UnicodeDecodeError):
                event = None
            if event is None:
                continue
            if event["event"] == "done":
                done.update(event)
            elif sink is not None:
                sink.write(json.dumps(event) + "\n")
                sink.flush()
    if sink is not None:
        sink.close()


def _read_result(fd: int, chunks: list[bytes]) -> None:
    """Read the executed notebook from pipe ``fd`` into ``chunks`` (up to the size limit; the
    rest is drained and dropped)."""
    total = 0
    with os.fdopen(fd, "rb") as stream:
        while block := stream.read(1 << 20):
            total += len(block)
            if total <= MAX_NOTEBOOK_BYTES:
                chunks.append(block)


def _error_output(ename, evalue, traceback) -> NotebookNode:
    ename = ename if isinstance(ename, str) and _IDENTIFIER.match(ename) else "Error"
    evalue = evalue if isinstance(evalue, str) else ""
    traceback = [str(line)[:2000] for line in traceback[:40]] if isinstance(traceback, list) else []
    return NotebookNode(
        output_type="error",
        ename=ename,
        evalue=evalue[:2000],
        traceback=traceback or [f"{ename}: {evalue[:2000]}"],
    )
