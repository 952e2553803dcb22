"""Downloads end to end against a local HTTP server (127.0.0.1, ephemeral port): no internet.

The server serves an archive built from the fixtures and can misbehave on purpose: cut the
connection half-way, ignore ``Range`` requests, or answer an HTTP error.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import socket
import sys
import threading
import types
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from featurelab import data

# The scene15 fixture's structure, for a registry entry that accepts it.
FIXTURE_SCENE15_COUNTS = {
    f"{split}/{c}": (n, n)
    for split, n in data.FIXTURE_COUNTS["scene15"].items()
    for c in data.SCENE15_CLASSES
}


@dataclasses.dataclass
class Behaviour:
    """What the test server does; ``requests`` records each request's headers."""

    payload: bytes
    cuts: int = 0  # this many answers stop after half of their body and close the connection
    ignore_range: bool = False
    status: int | None = None  # answer this HTTP error instead
    requests: list[dict[str, str]] = dataclasses.field(default_factory=list)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # the name http.server dispatches to
        behaviour: Behaviour = self.server.behaviour
        behaviour.requests.append(dict(self.headers))
        if behaviour.status is not None:
            self.send_error(behaviour.status)
            return
        payload, start = behaviour.payload, 0
        byte_range = self.headers.get("Range")
        if byte_range and not behaviour.ignore_range:
            start = int(byte_range.removeprefix("bytes=").split("-")[0])
            if start >= len(payload):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(payload) - 1}/{len(payload)}")
        else:
            self.send_response(200)
        body = payload[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if behaviour.cuts:
            behaviour.cuts -= 1
            body = body[: len(body) // 2]  # then the connection closes: fewer bytes than announced
        self.wfile.write(body)

    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture
def server():
    """``(base URL, Behaviour)``; set ``behaviour.payload`` and friends in the test."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.behaviour = Behaviour(payload=b"")
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", httpd.behaviour
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def scene_zip(tmp_path_factory, fixture_root) -> bytes:
    """The scene15 fixture as a zip in the real archive's layout (15SceneData/...)."""
    folder = fixture_root / "scene15" / "15SceneData"
    archive = tmp_path_factory.mktemp("archives") / "15SceneData.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as out:
        for rel in data.list_files(folder):
            out.write(folder / rel, f"15SceneData/{rel}")
    return archive.read_bytes()


@pytest.fixture
def scene15(server, scene_zip, tmp_path, monkeypatch):
    """scene15 served locally with its sha256 pinned; returns (behaviour, archive target path)."""
    url, behaviour = server
    behaviour.payload = scene_zip
    monkeypatch.setenv("FEATURELAB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("FEATURELAB_URL_SCENE15", f"{url}/15SceneData.zip")
    monkeypatch.setenv("FEATURELAB_SHA256_SCENE15", hashlib.sha256(scene_zip).hexdigest())
    return behaviour, tmp_path / "data" / "scene15" / "15SceneData.zip"


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_shows_byte_progress_verifies_and_is_not_repeated(scene15, capsys):
    behaviour, target = scene15
    assert data.download("scene15", progress=True) == target
    assert target.read_bytes() == behaviour.payload
    assert leftovers(target.parent) == [target.name]  # no .part left
    progress = capsys.readouterr().err
    assert "15SceneData.zip" in progress and "100%" in progress and "B/s" in progress
    assert len(behaviour.requests) == 1 and "Range" not in behaviour.requests[0]
    assert data.download("scene15", progress=True) == target
    assert len(behaviour.requests) == 1  # verified on disk: not fetched again


def test_cut_connection_is_resumed_with_a_range_request(scene15):
    behaviour, target = scene15
    behaviour.cuts = 1
    data.download("scene15", progress=False)
    assert target.read_bytes() == behaviour.payload
    half = len(behaviour.payload) // 2
    assert [r.get("Range") for r in behaviour.requests] == [None, f"bytes={half}-"]


def test_a_download_cut_too_often_keeps_its_part_and_resumes_next_time(scene15):
    behaviour, target = scene15
    behaviour.cuts = 100
    with pytest.raises(data.DownloadError, match="cut 5 times.*resumes when you run") as error:
        data.download("scene15", progress=False)
    assert "python -m featurelab.data get scene15" in str(error.value)
    part = target.with_name(target.name + ".part")
    size = part.stat().st_size
    assert 0 < size < len(behaviour.payload) and not target.exists()
    assert behaviour.payload.startswith(part.read_bytes())
    behaviour.cuts = 0
    data.download("scene15", progress=False)
    assert behaviour.requests[-1]["Range"] == f"bytes={size}-"
    assert target.read_bytes() == behaviour.payload and not part.exists()


def test_server_ignoring_range_restarts_from_zero(scene15):
    behaviour, target = scene15
    behaviour.ignore_range = True
    target.parent.mkdir(parents=True)
    part = target.with_name(target.name + ".part")
    stale = b"garbage from another file" * 100
    part.write_bytes(stale)
    data.download("scene15", progress=False)
    assert behaviour.requests[0]["Range"] == f"bytes={len(stale)}-"
    assert target.read_bytes() == behaviour.payload  # the 200 answer replaced the stale bytes


def test_a_complete_part_answered_416_is_verified_and_kept(scene15):
    behaviour, target = scene15
    target.parent.mkdir(parents=True)
    target.with_name(target.name + ".part").write_bytes(behaviour.payload)
    data.download("scene15", progress=False)
    assert target.read_bytes() == behaviour.payload
    assert len(behaviour.requests) == 1


def test_checksum_mismatch_overwrites_nothing(scene15, monkeypatch):
    behaviour, target = scene15
    monkeypatch.setenv("FEATURELAB_SHA256_SCENE15", "0" * 64)
    with pytest.raises(data.ChecksumError, match="sha256 of .* expected 0000") as error:
        data.download("scene15", progress=False)
    assert "The download was deleted" in str(error.value)
    assert leftovers(target.parent) == []
    # A previous copy (which no longer matches the pinned checksum) is left untouched.
    target.write_bytes(b"previous copy")
    with pytest.raises(data.ChecksumError, match="was left as it was"):
        data.download("scene15", progress=False)
    assert target.read_bytes() == b"previous copy" and leftovers(target.parent) == [target.name]


def test_structure_is_verified_where_no_checksum_is_published(scene15, monkeypatch):
    behaviour, target = scene15
    monkeypatch.delenv("FEATURELAB_SHA256_SCENE15")
    with pytest.raises(data.VerificationError, match="train/Bedroom/ has 4 images, expected 100"):
        data.download("scene15", progress=False)  # the fixture is not the real dataset
    assert leftovers(target.parent) == []
    spec = dataclasses.replace(data.REGISTRY["scene15"], image_counts=FIXTURE_SCENE15_COUNTS)
    monkeypatch.setitem(data.REGISTRY, "scene15", spec)
    assert data.download("scene15", progress=False).read_bytes() == behaviour.payload


def test_prepare_downloads_extracts_and_loads(scene15, monkeypatch):
    behaviour, target = scene15
    spec = dataclasses.replace(data.REGISTRY["scene15"], image_counts=FIXTURE_SCENE15_COUNTS)
    monkeypatch.setitem(data.REGISTRY, "scene15", spec)
    folder = data.prepare("scene15", progress=False)
    assert folder == target.parent / "15SceneData"
    assert len(data.load_scene15("test")) == 30
    assert data.prepare("scene15") == folder and len(behaviour.requests) == 1


def test_offline_is_a_clear_error(tmp_path, monkeypatch):
    with socket.socket() as probe:  # a port nobody listens on: connection refused
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/cifar-10-python.tar.gz"
    monkeypatch.setenv("FEATURELAB_URL_CIFAR10", url)
    root = tmp_path / "data"
    with pytest.raises(data.DownloadError) as error:
        data.prepare("cifar10", root=root, progress=False)
    message = str(error.value)
    assert url in message and "refused" in message.lower()
    assert str(root / "cifar10" / "cifar-10-python.tar.gz") in message
    assert f"python -m featurelab.data get cifar10 --root {root}" in message
    assert "FEATURELAB_URL_CIFAR10" in message
    assert leftovers(root / "cifar10") == []


def test_http_error_is_a_clear_error(scene15, server):
    behaviour, target = scene15
    behaviour.status = 404
    with pytest.raises(data.DownloadError, match="HTTP 404 Not Found") as error:
        data.download("scene15", progress=False)
    assert str(target) in str(error.value) and leftovers(target.parent) == []


def test_dns_failure_is_a_clear_error(tmp_path, monkeypatch):
    import urllib.request
    from urllib.error import URLError

    def no_dns(request, timeout):
        raise URLError(socket.gaierror(-2, "Name or service not known"))

    monkeypatch.setattr(urllib.request, "urlopen", no_dns)
    with pytest.raises(data.DownloadError, match="gaierror: .*Name or service not known") as error:
        data.download("petimages", root=tmp_path, progress=False)
    assert "download.microsoft.com" in str(error.value)
    assert "featurelab.data get petimages --root" in str(error.value)


# --- ensure(): free disk space, download on request, the pip-installed commands -------------


@pytest.fixture
def fixture_scene15(scene15, monkeypatch):
    """scene15 served locally, with a registry entry that accepts the fixture's structure."""
    spec = dataclasses.replace(data.REGISTRY["scene15"], image_counts=FIXTURE_SCENE15_COUNTS)
    monkeypatch.setitem(data.REGISTRY, "scene15", spec)
    return scene15


def test_ensure_without_download_names_the_pip_command_and_fetches_nothing(fixture_scene15):
    behaviour, target = fixture_scene15
    with pytest.raises(data.DatasetMissingError) as error:
        data.ensure("scene15")
    assert "python -m featurelab.data get scene15" in str(error.value)
    assert "ensure('scene15', download=True)" in str(error.value)
    assert behaviour.requests == [] and not target.parent.exists()


def test_ensure_downloads_verifies_and_extracts_once(fixture_scene15, capsys):
    behaviour, target = fixture_scene15
    folder = data.ensure("scene15", download=True)
    assert folder == target.parent / "15SceneData" and (folder / "train" / "Coast").is_dir()
    assert target.read_bytes() == behaviour.payload  # checksum-verified archive kept
    assert "100%" in capsys.readouterr().err  # the byte progress bar
    assert data.ensure("scene15", download=True, progress=False) == folder
    assert data.ensure("scene15") == folder and len(behaviour.requests) == 1


def test_ensure_checks_free_space_before_downloading(fixture_scene15, monkeypatch):
    import shutil

    behaviour, target = fixture_scene15
    spec = data.REGISTRY["scene15"]
    probed = []

    def tiny_disk(path):
        probed.append(path)
        return shutil._ntuple_diskusage(total=10 << 20, used=(10 << 20) - 12345, free=12345)

    monkeypatch.setattr(shutil, "disk_usage", tiny_disk)
    with pytest.raises(data.InsufficientSpaceError) as error:
        data.ensure("scene15", download=True)
    message = str(error.value)
    needed = spec.archive_bytes + spec.extracted_bytes
    assert f"needs about {needed / (1 << 20):.1f} MB" in message
    assert str(target.parent) in message and "12.1 KB is free" in message
    assert "--root" in message and "FEATURELAB_DATA" in message
    assert behaviour.requests == [] and not target.parent.exists()  # nothing fetched or written
    assert probed and all(Path(p).exists() for p in probed)  # an existing ancestor was measured
    # A partial download already on disk counts as space already used.
    target.parent.mkdir(parents=True)
    target.with_name(target.name + ".part").write_bytes(b"x" * 1000)
    assert data.space_needed(spec, target.parent.parent) == needed - 1000
    target.with_name(target.name + ".part").unlink()  # (not a prefix of the served archive)
    monkeypatch.setattr(
        shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(1 << 40, 0, 1 << 40)
    )
    assert data.ensure("scene15", download=True, progress=False).is_dir()


def test_data_command_get_verify_fixtures(fixture_scene15, tmp_path, capsys):
    from featurelab.data import cli

    behaviour, target = fixture_scene15
    assert cli.main(["verify", "scene15"]) == 1
    assert "python -m featurelab.data get scene15" in capsys.readouterr().err
    assert cli.main(["get", "scene15"]) == 0
    assert f"scene15: ready in {target.parent / '15SceneData'}" in capsys.readouterr().out
    assert cli.main(["verify", "scene15"]) == 0
    assert f"scene15: verified {target}" in capsys.readouterr().out
    assert cli.main(["fixtures", "--root", str(tmp_path / "fx")]) == 0
    assert (tmp_path / "fx" / "petimages" / "PetImages" / "Cat").is_dir()
    assert len(behaviour.requests) == 1
    with pytest.raises(SystemExit):
        cli.main(["get", "imagenet"])


def test_the_commands_run_as_modules_of_the_installed_package(tmp_path):
    """``python -m featurelab.data`` / ``featurelab.backbones`` from outside the checkout."""
    import subprocess
    import sys

    env = {**os.environ, "FEATURELAB_DATA": str(tmp_path / "data")}
    env["PYTHONPATH"] = str(Path(data.__file__).parents[2])  # only the package, not the repo
    for module, args, expected in (
        ("featurelab.data", ["verify", "cifar10"], "python -m featurelab.data get cifar10"),
        ("featurelab.backbones", ["get", "--help"], "vgg16"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", module, *args],
            cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env,
        )  # fmt: skip
        assert expected in done.stdout + done.stderr, (module, done.stdout, done.stderr)


# --- the notebooks' DOWNLOAD parameter (Colab: on by default) ------------------------------


@pytest.fixture
def session(monkeypatch):
    """featurelab.profiles as a fresh notebook session sees it (no DOWNLOAD said yet)."""
    from featurelab import profiles

    monkeypatch.setattr(profiles, "_downloads", None)
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    monkeypatch.delenv(profiles.DOWNLOAD_ENV, raising=False)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    return profiles


def test_download_parameter_defaults_on_colab_only_and_never_under_the_grader(session, monkeypatch):
    assert session.allow_downloads(None) is False
    assert session.allow_downloads(True) is True and session.downloads_allowed(False) is True
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    assert session.allow_downloads(None) is True
    assert session.allow_downloads(False) is False
    assert session.downloads_allowed(True) is False  # the notebook said no: no library default
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert session.allow_downloads(True) is False and session.downloads_allowed(True) is False


def test_a_loader_fetches_a_missing_dataset_only_when_the_notebook_agrees(fixture_scene15, session):
    behaviour, target = fixture_scene15
    session.allow_downloads(False)
    with pytest.raises(data.DatasetMissingError) as error:
        data.load_scene15("train", profile="full")
    assert "DOWNLOAD = True" in str(error.value)
    assert "python -m featurelab.data get scene15" in str(error.value)
    assert behaviour.requests == [] and not target.parent.exists()
    session.allow_downloads(True)
    train = data.load_scene15("train", profile="full")
    assert len(train) == data.FIXTURE_COUNTS["scene15"]["train"] * len(data.SCENE15_CLASSES)
    assert target.read_bytes() == behaviour.payload and len(behaviour.requests) == 1


def test_load_model_downloads_weights_only_when_allowed(session, tmp_path, monkeypatch):
    from featurelab import backbones

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    fetched = []
    monkeypatch.setattr(
        type(backbones.spec("resnet18").weights),
        "get_state_dict",
        lambda self, *a, **k: (
            fetched.append(self) or backbones._random_model(backbones.spec("resnet18")).state_dict()
        ),
    )
    session.allow_downloads(False)
    with pytest.raises(backbones.WeightsUnavailableError) as error:
        backbones.load_model("resnet18", "full")
    assert "DOWNLOAD = True" in str(error.value) and "featurelab.backbones get" in str(error.value)
    assert fetched == []
    session.allow_downloads(True)
    _model, _weights, pretrained = backbones.load_model("resnet18", "full")
    assert pretrained and len(fetched) == 1


def test_data_root_on_google_drive_is_mounted_and_keeps_data_weights_and_cache(
    session, tmp_path, monkeypatch
):
    drive = tmp_path / "content" / "drive"
    mounted = []
    colab = types.ModuleType("google.colab")
    colab.drive = types.SimpleNamespace(
        mount=lambda where: mounted.append(where) or (Path(where) / "MyDrive").mkdir(parents=True)
    )
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setattr(session, "DRIVE_MOUNT", str(drive))
    monkeypatch.delenv("TORCH_HOME", raising=False)
    monkeypatch.delenv("FEATURELAB_CACHE", raising=False)
    monkeypatch.setenv(session.DATA_ENV, str(tmp_path / "elsewhere"))
    root = session.requested_data_root(str(drive / "MyDrive" / "featurelab"))
    assert mounted == [str(drive)] and Path(root).is_dir()
    assert root == str(drive / "MyDrive" / "featurelab")
    assert data.data_root() == Path(root)  # loaders and `python -m featurelab.data` follow
    from featurelab import backbones, cache

    assert cache.default_cache_dir() == Path(root) / "cache"
    assert backbones.weights_cache_path(backbones.spec("vgg16").weights).is_relative_to(root)
    session.requested_data_root(str(drive / "MyDrive" / "featurelab"))
    assert len(mounted) == 1  # already mounted: not asked again
    # under the grader DATA_ROOT is ignored (the grader's data), nothing is mounted
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert session.requested_data_root("/content/drive/MyDrive/x") is None
