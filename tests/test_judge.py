"""The judge's side of the evidence protocol and the OS sandbox, unit by unit (fast)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from autograder import jail, judge
from featurelab import evidence


@pytest.fixture
def evidence_dir(tmp_path, monkeypatch):
    folder = tmp_path / "evidence"
    monkeypatch.setenv(evidence.EVIDENCE_ENV, str(folder))
    return folder


def test_record_then_load_round_trip(evidence_dir):
    evidence.record(
        "test_x",
        count=3,
        share=0.25,
        shape=torch.Size([2, 3]),
        tensor=torch.arange(6.0).reshape(2, 3),
        items=[1, evidence.attempt(lambda: 1 / 0), "text"],
        nan=float("nan"),
    )
    evidence.record("test_x", later=True)  # a second call adds keys
    loaded = judge.load_evidence(evidence_dir, "test_x")
    assert loaded.int("count") == 3
    assert loaded.float("share") == 0.25
    assert loaded.get("shape") == [2, 3]
    assert np.array_equal(loaded.array("tensor", shape=(2, 3)), np.arange(6.0).reshape(2, 3))
    items = loaded.list("items")
    assert (
        items[0] == 1
        and isinstance(items[1], judge.Raised)
        and items[1].name == "ZeroDivisionError"
    )
    with pytest.raises(judge.Failed, match="raised ZeroDivisionError"):
        judge.check_value(items[1], "f(probe)")
    assert loaded.get("later") is True
    assert np.isnan(loaded.float("nan"))


def test_accessors_fail_with_clear_messages(evidence_dir):
    class Weird:
        pass

    evidence.record("test_y", weird=Weird(), number=1.5, flag=True)
    loaded = judge.load_evidence(evidence_dir, "test_y")
    with pytest.raises(judge.Failed, match="not a number, text"):
        loaded.get("weird")
    with pytest.raises(judge.Failed, match="expected an int, got a float"):
        loaded.int("number")
    with pytest.raises(judge.Failed, match="expected an int"):
        loaded.int("flag")  # a bool is not a count
    with pytest.raises(judge.Failed, match="no result"):
        loaded.get("missing", "count_parameters(model)")
    with pytest.raises(judge.Failed, match=r"expected shape \(3,\)"):
        loaded.array("number", shape=(3,))


def test_untrusted_files_are_refused(tmp_path):
    folder = tmp_path / "evidence"
    folder.mkdir()
    # a pickled object array: never unpickled, the item is simply missing
    np.save(folder / "pickled.npy", np.array([object()], dtype=object), allow_pickle=True)
    os.replace(folder / "pickled.npy", folder / "test_p.npz")
    (folder / "test_p.json").write_text(json.dumps({"probe": {"__array__": "arr_0"}}))
    assert judge.load_evidence(folder, "test_p") is None  # not an npz archive: unreadable
    with open(folder / "test_q.npz", "wb") as stream:
        np.savez(stream, a0=np.array(["text"]), a1=np.arange(3))
    (folder / "test_q.json").write_text(
        json.dumps({"s": {"__array__": "a0"}, "n": {"__array__": "a1"}})
    )
    loaded = judge.load_evidence(folder, "test_q")
    with pytest.raises(judge.Failed):
        loaded.array("s")  # non-numeric arrays are dropped
    assert loaded.array("n").tolist() == [0, 1, 2]
    (folder / "test_l.json").symlink_to(folder / "test_q.json")
    assert judge.load_evidence(folder, "test_l") is None
    (folder / "test_big.json").write_text("[" + "0," * (judge.MAX_JSON_BYTES // 2) + "0]")
    assert judge.load_evidence(folder, "test_big") is None
    (folder / "test_deep.json").write_text('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert judge.load_evidence(folder, "test_deep") is None


def test_judge_cell_verdicts():
    class Module:
        @staticmethod
        def judge_ok(ev, probes, context):
            return None

        @staticmethod
        def judge_fail(ev, probes, context):
            raise judge.Failed("count the frozen parameters too")

        @staticmethod
        def judge_bug(ev, probes, context):
            return ev.values["x"]["y"]  # malformed evidence: TypeError

    Module.JUDGES = {"ok": Module.judge_ok, "fail": Module.judge_fail, "bug": Module.judge_bug}
    context = judge.Context("a", "smoke", 1)
    ev = judge.Evidence("ok", {"x": 1})
    probes = judge.ProbeSet()
    assert judge.judge_cell(Module, "ok", ev, probes, context).passed
    failed = judge.judge_cell(Module, "fail", ev, probes, context)
    assert not failed.passed and failed.message == "count the frozen parameters too"
    assert not judge.judge_cell(Module, "bug", ev, probes, context).passed
    assert "no judge" in judge.judge_cell(Module, "other", ev, probes, context).message
    assert judge.judge_cell(Module, "ok", None, probes, context) is None


def test_probe_modules_are_data_only(tmp_path, monkeypatch):
    probes = judge.ProbeSet(
        values={
            "m": [{"seed": 0, "sequential": [["Conv2d", [3, 4, 3], {}], ["ReLU", [], {}]]}],
            "bad": [["Module", [], {}]],
        },
        arrays={"x/a": np.ones((2, 2), np.float32)},
    )
    probes.write(tmp_path / "probes")
    monkeypatch.setenv(evidence.PROBES_ENV, str(tmp_path / "probes"))
    loaded = evidence.probes()
    (module,) = loaded.modules("m")
    assert sum(p.numel() for p in module.parameters()) == 3 * 4 * 9 + 4
    assert loaded.tensors("x")["a"].shape == (2, 2)
    with pytest.raises(ValueError, match="not allowed"):
        loaded.modules("bad")


def test_outside_the_grader_collectors_do_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv(evidence.EVIDENCE_ENV, raising=False)
    monkeypatch.delenv(evidence.PROBES_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    evidence.record("test_z", x=1)
    assert list(tmp_path.iterdir()) == []
    assert evidence.probes().modules("anything") == []


@pytest.mark.skipif(jail.unavailable_reason() is not None, reason="no OS sandbox here")
def test_the_sandbox_sees_only_what_it_is_given(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("reference answers")
    shared = tmp_path / "given"  # under /tmp, like a checkout or a venv may be: still visible
    shared.mkdir()
    (shared / "data.txt").write_text("images")
    scratch = tmp_path / "scratch"
    spec = jail.JailSpec(
        scratch=scratch,
        ro_binds=(*jail.python_binds(), (str(shared), str(shared))),
        env={"HOME": "/scratch", "PATH": "/usr/bin:/bin"},
    )
    jail.prepare_scratch(spec)
    code = f"""
import json, os, socket
report = {{"uid": os.getuid(), "pid": os.getpid()}}
try:
    open({str(secret)!r}).read(); report["secret"] = True
except OSError:
    report["secret"] = False
try:
    socket.create_connection(("127.0.0.1", 22), timeout=1); report["net"] = True
except OSError:
    report["net"] = False
report["given"] = open({str(shared / "data.txt")!r}).read()
report["repo"] = os.path.exists({str(jail.RUNNER_DIR.parent.parent / "solutions")!r})
try:
    import autograder; report["autograder"] = True
except ImportError:
    report["autograder"] = False
import featurelab, torch
report["featurelab"] = True
open("/scratch/written", "w").write("ok")
try:  # the private /tmp is a tmpfs (memory): capped
    with open("/tmp/fill", "wb") as f:
        for _ in range({jail.TMP_SIZE_MB // 16 + 2}):
            f.write(b"x" * (16 << 20))
    report["tmp_capped"] = False
except OSError:
    report["tmp_capped"] = True
os.remove("/tmp/fill")
print(json.dumps(report))
"""
    done = subprocess.run(
        jail.command(spec, [sys.executable, "-c", code]),
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=jail.preexec(spec),
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["secret"] is False and report["net"] is False and report["repo"] is False
    assert report["autograder"] is False and report["featurelab"] is True
    assert report["given"] == "images" and report["tmp_capped"] is True
    assert report["pid"] < 10  # its own PID namespace
    if os.geteuid() == 0:
        assert report["uid"] == spec.uid != 0
    assert (scratch / "written").read_text() == "ok"


@pytest.mark.skipif(jail.unavailable_reason() is not None, reason="no OS sandbox here")
def test_the_kernel_imports_the_featurelab_the_grader_bound(tmp_path):
    """The sandbox's PYTHONPATH is the folder the grader imported featurelab from: found there
    even without the environment's own import hooks (``-S``: no site-packages, no editable-
    install finder, as when the venv was installed from another checkout)."""
    import featurelab
    from autograder.judged_execute import _sandbox_env

    folder = jail.python_path()
    if folder is None:
        pytest.skip("featurelab is installed in site-packages here: nothing to add")
    env = _sandbox_env({"threads": 1}, {"scratch": jail.SCRATCH})
    assert env["PYTHONPATH"] == folder
    # a module planted on that path (sitecustomize runs in every later Python process) is refused
    plant = f"{folder}/sitecustomize.py"
    code = (
        "import importlib.util as u\n"
        f"try:\n    open({plant!r}, 'w').write('x = 1')\nexcept OSError:\n    pass\n"
        "s = u.find_spec('featurelab'); print(s and s.origin)"
    )
    found = {}
    for name, extra in (("without", {}), ("with", {"PYTHONPATH": env["PYTHONPATH"]})):
        spec = jail.JailSpec(
            scratch=tmp_path / name,
            ro_binds=tuple(jail.python_binds()),
            env={"HOME": "/scratch", "PATH": "/usr/bin:/bin", **extra},
        )
        jail.prepare_scratch(spec)
        done = subprocess.run(
            jail.command(spec, [sys.executable, "-S", "-c", code]),
            capture_output=True,
            text=True,
            timeout=120,
            preexec_fn=jail.preexec(spec),
        )
        assert done.returncode == 0, done.stderr
        found[name] = done.stdout.strip()
    assert found == {"without": "None", "with": str(Path(featurelab.__file__).resolve())}
    assert not Path(plant).exists()


def test_only_valid_entries_of_a_trusted_run_reach_the_shared_cache(tmp_path):
    from autograder import batch
    from featurelab import cache

    run_cache, shared = tmp_path / "run", tmp_path / "shared"
    good, bad, kept = "a" * 64, "b" * 64, "c" * 64
    cache.store(run_cache, good, torch.ones(3, 4), torch.arange(3))
    cache.entry_path(run_cache, bad).write_bytes(b"half-written")
    cache.store(run_cache, kept, torch.zeros(2, 2), torch.arange(2))
    cache.store(shared, kept, torch.ones(2, 2), torch.arange(2))  # already shared: kept as is
    assert batch.promote_cache_entries(run_cache, shared) == 1
    features, labels = cache.load(shared, good)
    assert features.tolist() == torch.ones(3, 4).tolist() and labels.tolist() == [0, 1, 2]
    assert not cache.entry_path(shared, bad).exists()
    assert cache.load(shared, kept)[0].sum() == 4  # not overwritten by the run's entry
    assert batch.promote_cache_entries(tmp_path / "missing", shared) == 0


def test_an_evidence_zip_bomb_is_refused_unopened(tmp_path, monkeypatch):
    import zipfile

    folder = tmp_path / "evidence"
    folder.mkdir()
    (folder / "test_b.json").write_text(json.dumps({"x": {"__array__": "a0"}}))
    with zipfile.ZipFile(folder / "test_b.npz", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a0.npy", b"\0" * (4 * 2**20))  # 4 MiB of zeros: a few KiB on disk
    monkeypatch.setattr(judge, "MAX_NPZ_BYTES", 2**20)
    assert (folder / "test_b.npz").stat().st_size < 2**20
    assert judge.load_evidence(folder, "test_b") is None


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root grader gives the sandbox its own uid")
def test_folders_the_sandbox_user_cannot_read_are_named(tmp_path):
    private, shared = tmp_path / "private", tmp_path / "shared"
    private.mkdir(mode=0o700)
    shared.mkdir(mode=0o755)
    private.chmod(0o700)
    assert jail.unreadable_for_sandbox([str(private), str(shared), str(tmp_path / "no")]) == [
        str(private)
    ]


@pytest.mark.skipif(os.geteuid() != 0, reason="the scratch is chowned only by a root grader")
def test_preparing_a_scratch_never_follows_the_students_links(tmp_path):
    host_file = tmp_path / "host.txt"
    host_file.write_text("the grader's")
    host_dir = tmp_path / "host-dir"
    host_dir.mkdir()
    scratch = tmp_path / "scratch"
    spec = jail.JailSpec(scratch=scratch, slot=99)
    jail.prepare_scratch(spec)
    (scratch / "link").symlink_to(host_file)  # left by a first attempt, then a retry
    (scratch / "dir-link").symlink_to(host_dir)
    jail.prepare_scratch(spec)
    assert host_file.stat().st_uid == 0 and host_dir.stat().st_uid == 0
    assert (scratch / "link").lstat().st_uid == spec.uid != 0
