"""featurelab.data without network: registry, verification, extraction, fixtures, loaders, CLIs."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import multiprocessing
import pickle
import shutil
import subprocess
import sys
import tarfile
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms
from torchvision.datasets import CIFAR10

from featurelab import data
from featurelab.profiles import Profile

REPO = Path(__file__).resolve().parents[1]
# The scene15 fixture's structure, for a registry entry that accepts it.
FIXTURE_SCENE15_COUNTS = {
    f"{split}/{c}": (n, n)
    for split, n in data.FIXTURE_COUNTS["scene15"].items()
    for c in data.SCENE15_CLASSES
}


@pytest.fixture
def data_home(tmp_path, monkeypatch) -> Path:
    """An empty data root in $FEATURELAB_DATA, with the full profile in force."""
    home = tmp_path / "data"
    monkeypatch.setenv("FEATURELAB_DATA", str(home))
    monkeypatch.delenv("FEATURELAB_PROFILE", raising=False)
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    return home


def tree_digests(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (PetImages scan manifests left out)."""
    return {
        rel: hashlib.sha256((root / rel).read_bytes()).hexdigest()
        for rel in data.list_files(root)
        if not rel.endswith(".manifest.json")
    }


def zip_folder(folder: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as out:
        for rel in data.list_files(folder):
            out.write(folder / rel, f"{folder.name}/{rel}")
    return archive


# --- registry and data root ------------------------------------------------------------------


def test_registry_has_the_real_sources():
    scene, pets, cifar = (data.REGISTRY[n] for n in ("scene15", "petimages", "cifar10"))
    assert cifar.url == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    assert cifar.checksum() == ("md5", "c58f30108f718f92721af3b95e74349a")
    assert cifar.folder == "cifar-10-batches-py"
    assert pets.url.startswith("https://download.microsoft.com/download/3/E/1/")
    assert pets.url.endswith("/kagglecatsanddogs_5340.zip") and pets.folder == "PetImages"
    assert scene.url == "https://rdfia.github.io/data/15SceneData.zip"
    assert scene.folder == "15SceneData"
    # No published checksum: verified by structure (15 classes, 100 train each, 2,985 test).
    assert scene.checksum() is None and pets.checksum() is None
    assert sum(high for d, (_, high) in scene.image_counts.items() if d.startswith("test/")) == 2985
    assert sum(low for d, (low, _) in scene.image_counts.items() if d.startswith("train/")) == 1500


def test_url_and_sha256_can_be_overridden_by_environment(monkeypatch):
    spec = data.REGISTRY["scene15"]
    monkeypatch.setenv("FEATURELAB_URL_SCENE15", "https://mirror.example/15SceneData.zip")
    monkeypatch.setenv("FEATURELAB_SHA256_SCENE15", "AB" * 32)
    assert spec.resolved_url() == "https://mirror.example/15SceneData.zip"
    assert spec.checksum() == ("sha256", "ab" * 32)


def test_unknown_dataset_is_a_clear_error():
    with pytest.raises(KeyError, match="choose one of scene15, petimages, cifar10"):
        data.get_spec("imagenet")


def test_data_root_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("FEATURELAB_DATA", str(tmp_path / "from-env"))
    assert data.data_root() == tmp_path / "from-env"
    assert data.data_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("FEATURELAB_DATA")
    expected = REPO / "data" if data.registry._repo_dir() == REPO else None
    assert data.data_root() == (expected or Path.home() / ".cache" / "featurelab" / "data")


# --- structure checks ------------------------------------------------------------------------


def real_scene15_listing() -> list[str]:
    return [
        f"{split}/{c}/image_{i:04d}.jpg"
        for split, counts in (("train", dict.fromkeys(data.SCENE15_CLASSES, 100)),
                              ("test", data.SCENE15_TEST_COUNTS))
        for c, n in counts.items()
        for i in range(n)
    ]  # fmt: skip


def test_check_layout_accepts_the_real_structure_and_names_each_problem():
    spec = data.REGISTRY["scene15"]
    listing = real_scene15_listing()
    data.check_layout(spec, listing + ["train/Bedroom/Thumbs.db", ".DS_Store"], where="x")
    broken = [p for p in listing if p != "train/Bedroom/image_0000.jpg"] + ["test/Coast/extra.jpg"]
    with pytest.raises(data.VerificationError) as error:
        data.check_layout(spec, broken, where="archive X")
    message = str(error.value)
    assert "archive X" in message and "15 Scene" in message and "2 problems" in message
    assert "train/Bedroom/ has 99 images, expected 100" in message
    assert "test/Coast/ has 261 images, expected 260" in message


def test_check_layout_minimum_counts_and_required_files():
    pets = data.REGISTRY["petimages"]
    listing = [f"{c}/{i}.jpg" for c in ("Cat", "Dog") for i in range(12_000)]
    data.check_layout(pets, listing, where="x")
    with pytest.raises(
        data.VerificationError, match="Dog/ has 11999 images, expected at least 12000"
    ):
        data.check_layout(pets, listing[:-1], where="x")
    cifar = data.REGISTRY["cifar10"]
    with pytest.raises(data.VerificationError, match="missing file test_batch"):
        data.check_layout(cifar, [f for f in data.CIFAR10_FILES if f != "test_batch"], where="x")


def test_verify_archive_checks_structure_and_rejects_truncated_files(fixture_root, tmp_path):
    spec = dataclasses.replace(data.REGISTRY["scene15"], image_counts=FIXTURE_SCENE15_COUNTS)
    archive = zip_folder(fixture_root / "scene15" / "15SceneData", tmp_path / "scene.zip")
    data.verify_archive(spec, archive)
    with pytest.raises(data.VerificationError, match="layout of 15 Scene"):
        data.verify_archive(data.REGISTRY["scene15"], archive)  # the real counts
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(archive.read_bytes()[:-200])
    with pytest.raises(data.VerificationError, match="not a zip or tar archive"):
        data.verify_archive(spec, truncated)
    page = tmp_path / "page.zip"
    page.write_bytes(b"<html>Service unavailable</html>")
    with pytest.raises(data.VerificationError, match="not a zip or tar archive"):
        data.verify_archive(spec, page)


# --- extraction ------------------------------------------------------------------------------


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as out:
        for name, content in members.items():
            out.writestr(name, content)
    return path


@pytest.mark.parametrize(
    "evil", ["../evil.txt", "ok/../../evil.txt", "/tmp/evil.txt", "C:/evil.txt"]
)
def test_safe_extract_refuses_path_traversal(tmp_path, evil):
    archive = make_zip(tmp_path / "evil.zip", {"good/a.txt": b"a", evil: b"owned"})
    destination = tmp_path / "out" / "deep"
    destination.mkdir(parents=True)
    with pytest.raises(data.UnsafeArchiveError, match="unsafe member"):
        data.safe_extract(archive, destination)
    assert list(destination.iterdir()) == []
    assert not (tmp_path / "out" / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()


def test_safe_extract_refuses_links_in_tar_and_extracts_a_clean_tar(tmp_path):
    evil = tmp_path / "link.tar.gz"
    with tarfile.open(evil, "w:gz") as out:
        link = tarfile.TarInfo("folder/passwd")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        out.addfile(link)
    with pytest.raises(data.UnsafeArchiveError, match="link"):
        data.safe_extract(evil, tmp_path / "out")
    clean = tmp_path / "clean.tar.gz"
    with tarfile.open(clean, "w:gz") as out:
        content = b"hello"
        info = tarfile.TarInfo("folder/sub/file.txt")
        info.size = len(content)
        out.addfile(info, io.BytesIO(content))
    data.safe_extract(clean, tmp_path / "out")
    assert (tmp_path / "out" / "folder" / "sub" / "file.txt").read_bytes() == b"hello"


def closed_port_url() -> str:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/nothing-here"


def cifar_archive(fixture_root: Path, path: Path) -> Path:
    with tarfile.open(path, "w:gz") as out:
        out.add(fixture_root / "cifar10" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return path


def test_prepare_extracts_a_placed_archive_without_network(fixture_root, data_home, monkeypatch):
    (data_home / "cifar10").mkdir(parents=True)
    archive = cifar_archive(fixture_root, data_home / "cifar10" / "cifar-10-python.tar.gz")
    monkeypatch.setenv("FEATURELAB_SHA256_CIFAR10", data.file_digest(archive))
    monkeypatch.setenv("FEATURELAB_URL_CIFAR10", closed_port_url())  # any download would fail
    with pytest.raises(data.DatasetMissingError, match="archive .* verified but .* is not there"):
        data.verify("cifar10")
    folder = data.prepare("cifar10")
    assert folder == data_home / "cifar10" / "cifar-10-batches-py"
    assert tree_digests(folder) == tree_digests(fixture_root / "cifar10" / "cifar-10-batches-py")
    assert sorted(p.name for p in folder.parent.iterdir()) == ["cifar-10-batches-py", archive.name]
    assert data.prepare("cifar10") == folder
    assert data.verify("cifar10") == [archive, folder]
    assert data.dataset_dir("cifar10") == folder
    assert len(data.load_cifar10(False)) == 40  # the loader finds it through the data root


def test_failed_extraction_leaves_nothing_behind(fixture_root, data_home, monkeypatch):
    spec = dataclasses.replace(data.REGISTRY["scene15"], image_counts=FIXTURE_SCENE15_COUNTS)
    monkeypatch.setitem(data.REGISTRY, "scene15", spec)
    parent = data_home / "scene15"
    parent.mkdir(parents=True)
    archive = zip_folder(fixture_root / "scene15" / "15SceneData", parent / spec.filename)
    corrupt = bytearray(archive.read_bytes())
    corrupt[len(corrupt) // 2] ^= 0xFF  # inside some member's data: its CRC check fails
    archive.write_bytes(bytes(corrupt))
    with pytest.raises(data.VerificationError, match="cannot extract"):
        data.prepare("scene15", progress=False)
    assert [p.name for p in parent.iterdir()] == [spec.filename]  # no folder, no staging debris


# --- fixtures --------------------------------------------------------------------------------


def test_make_fixtures_is_fast_and_deterministic(tmp_path):
    start = time.perf_counter()
    first = data.make_fixtures(tmp_path / "a")
    elapsed = time.perf_counter() - start
    data.make_fixtures(tmp_path / "b")
    assert elapsed < 3.0
    assert first == data.fixture_paths(tmp_path / "a")
    digests = tree_digests(tmp_path / "a")
    assert digests == tree_digests(tmp_path / "b")
    assert "GENERATED, NOT REAL DATA" in (tmp_path / "a" / "README.txt").read_text()
    assert len(digests) == 2 + 15 * 6 + (2 * 12 + 3 + 2) + 7  # README, VERSION; Thumbs.db x2


def test_fixtures_have_the_real_layouts(fixture_root):
    paths = data.fixture_paths(fixture_root)
    spec = dataclasses.replace(data.REGISTRY["scene15"], image_counts=FIXTURE_SCENE15_COUNTS)
    data.check_layout(spec, data.list_files(paths["scene15"]), where="fixture")
    sizes = set()
    for path in paths["scene15"].glob("*/*/*.jpg"):
        with Image.open(path) as image:
            assert (image.format, image.mode) == ("JPEG", "L")
            assert 64 <= min(image.size) and max(image.size) <= 96
            sizes.add(image.size)
    assert len(sizes) > 20
    data.check_layout(data.REGISTRY["cifar10"], data.list_files(paths["cifar10"]), where="fixture")
    pets = sorted(data.list_files(paths["petimages"]))
    assert {"Cat/666.jpg", "Dog/11702.jpg", "Cat/Thumbs.db", "Dog/Thumbs.db"} <= set(pets)
    assert (paths["petimages"] / "Cat" / "666.jpg").stat().st_size == 0
    with Image.open(paths["petimages"] / "Cat" / "8.jpg") as image:
        assert image.format == "PNG"


def test_cifar10_fixture_batches_have_the_real_format(fixture_root):
    folder = fixture_root / "cifar10" / "cifar-10-batches-py"
    # The CIFAR-10 web page's recipe: Python 2 strings load as bytes.
    with open(folder / "data_batch_3", "rb") as stream:
        batch = pickle.load(stream, encoding="bytes")
    assert set(batch) == {b"data", b"labels", b"filenames", b"batch_label"}
    assert batch[b"data"].dtype == np.uint8 and batch[b"data"].shape == (16, 3072)
    assert isinstance(batch[b"labels"], list) and all(isinstance(x, int) for x in batch[b"labels"])
    assert batch[b"batch_label"] == b"training batch 3 of 5"
    assert all(isinstance(name, bytes) for name in batch[b"filenames"])
    # torchvision's recipe: the same file loads with str keys.
    with open(folder / "batches.meta", "rb") as stream:
        meta = pickle.load(stream, encoding="latin1")
    assert meta == {
        "num_cases_per_batch": 16,
        "label_names": list(data.CIFAR10_CLASSES),
        "num_vis": 3072,
    }
    # Rows are R, G, B planes: the loader's HWC images are the same pixels.
    dataset = data.load_cifar10(True, root=folder)
    assert np.array_equal(dataset.data[32], batch[b"data"][0].reshape(3, 32, 32).transpose(1, 2, 0))
    assert dataset.targets[32] == batch[b"labels"][0]


@pytest.fixture
def one_torch_thread():
    """Tiny batches run several times faster on one thread (and the suite runs tests beside)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_fixture_classes_are_learnable_from_random_cnn_features(fixture_root, one_torch_thread):
    """Smoke pipelines must learn something: random-init ResNet-18 features + a linear SVM."""
    from sklearn.svm import LinearSVC
    from torchvision.models import resnet18

    torch.manual_seed(0)
    model = resnet18(weights=None).eval()
    model.fc = torch.nn.Identity()
    prep = transforms.Compose([transforms.Resize((64, 64)), transforms.ToTensor()])

    def features(dataset):
        images = torch.stack([image for image, _ in dataset])
        with torch.inference_mode():
            rows = model(images)
        return torch.nn.functional.normalize(rows).numpy(), dataset.targets

    paths = data.fixture_paths(fixture_root)
    for train, test, minimum in [
        (data.load_scene15("train", prep, root=paths["scene15"]),
         data.load_scene15("test", prep, root=paths["scene15"]), 0.5),
        (data.load_cifar10(True, prep, root=paths["cifar10"]),
         data.load_cifar10(False, prep, root=paths["cifar10"]), 0.8),
    ]:  # fmt: skip
        classifier = LinearSVC(C=1.0).fit(*features(train))
        assert classifier.score(*features(test)) >= minimum


# --- loaders ---------------------------------------------------------------------------------


def test_load_scene15_reads_the_fixture_as_rgb(fixture_root):
    folder = fixture_root / "scene15" / "15SceneData"
    train = data.load_scene15("train", root=folder)
    test = data.load_scene15("test", root=folder)
    assert (len(train), len(test)) == (60, 30)
    assert train.classes == list(data.SCENE15_CLASSES)
    assert train.targets == [label for label in range(15) for _ in range(4)]
    assert all(Path(path).is_absolute() and Path(path).parent.name == train.classes[label]
               for path, label in train.samples)  # fmt: skip
    image, label = train[5]
    assert image.mode == "RGB" and label == 1
    channels = np.asarray(image)
    assert np.array_equal(channels[..., 0], channels[..., 2])  # grey replicated, not garbled
    tensor, _ = data.load_scene15("train", transforms.ToTensor(), root=folder)[0]
    assert tensor.shape[0] == 3 and tensor.dtype == torch.float32
    # The dataset folder, its parent and a data root are all accepted.
    for root in (folder.parent, fixture_root):
        assert data.load_scene15("train", root=root, profile="full").samples == train.samples
    with pytest.raises(ValueError, match="'train' or 'test'"):
        data.load_scene15("val", root=folder)


def test_load_petimages_skips_broken_files_and_splits_stratified(fixture_root, capsys):
    folder = fixture_root / "petimages" / "PetImages"
    train = data.load_petimages("train", root=folder)  # progress=True: the summary is shown
    test = data.load_petimages("test", root=folder)
    summary = capsys.readouterr().out.splitlines()
    assert len(summary) == 2 and "skipped 3 unreadable" in summary[0]
    assert "Cat/666.jpg" in summary[0] and "Dog/12.jpg" in summary[0]
    data.load_petimages("test", root=folder, progress=False)
    assert capsys.readouterr() == ("", "")  # progress=False: silent (the same switch as the bar)
    assert train.classes == ["Cat", "Dog"] and train.skipped == test.skipped == 3
    assert np.bincount(train.targets).tolist() == [10, 10]
    assert np.bincount(test.targets).tolist() == [2, 2]
    train_files, test_files = {p for p, _ in train.samples}, {p for p, _ in test.samples}
    assert not train_files & test_files
    readable = {
        str(p) for p in folder.glob("*/*.jpg") if p.name not in {"666.jpg", "11702.jpg", "12.jpg"}
    }
    assert train_files | test_files == readable
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        modes = {image.mode for dataset in (train, test) for image, _ in dataset}
    assert modes == {"RGB"}
    assert caught == [] and capsys.readouterr().err == ""  # silent: nbgrader zeroes stderr output
    assert data.load_petimages("train", root=folder, progress=False).samples == train.samples
    other_seed = data.load_petimages("train", root=folder, seed=1, progress=False)
    assert other_seed.samples != train.samples and len(other_seed) == 20


def test_petimages_manifest_is_reused_and_rebuilt_when_files_change(
    fixture_root, tmp_path, monkeypatch
):
    home = tmp_path / "data"
    monkeypatch.setenv("FEATURELAB_DATA", str(home))
    folder = home / "petimages" / "PetImages"
    shutil.copytree(fixture_root / "petimages" / "PetImages", folder)
    assert data.scan_images(folder, data.PETIMAGES_CLASSES, progress=False)[1].keys() == {
        "Cat/666.jpg", "Dog/11702.jpg", "Dog/12.jpg"}  # fmt: skip
    assert (home / "petimages" / "PetImages.manifest.json").is_file()  # next to the data

    def no_decoding(path, size):
        raise AssertionError("the manifest should have been used")

    with monkeypatch.context() as patch:
        patch.setattr(data.loaders, "_unreadable_reason", no_decoding)
        assert len(data.load_petimages("train", root=folder, progress=False)) == 20
    (folder / "Dog" / "12345.jpg").write_bytes(b"")
    readable, unreadable = data.scan_images(folder, data.PETIMAGES_CLASSES, progress=False)
    assert len(readable) == 24 and unreadable["Dog/12345.jpg"] == "zero bytes"


def test_manifest_of_a_folder_outside_the_data_root_goes_to_the_data_root(
    fixture_root, tmp_path, monkeypatch
):
    monkeypatch.setenv("FEATURELAB_DATA", str(tmp_path / "home"))
    outside = tmp_path / "my_photos" / "PetImages"
    shutil.copytree(fixture_root / "petimages" / "PetImages", outside)
    data.scan_images(outside, data.PETIMAGES_CLASSES, progress=False)
    assert list(outside.parent.iterdir()) == [outside]  # nothing written next to it
    assert len(list((tmp_path / "home" / "manifests").glob("PetImages-*.json"))) == 1


def test_scan_shows_a_progress_bar_on_stderr_only_when_asked(
    fixture_root, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("FEATURELAB_DATA", str(tmp_path))
    folder = tmp_path / "PetImages"
    shutil.copytree(fixture_root / "petimages" / "PetImages", folder)
    data.scan_images(folder, data.PETIMAGES_CLASSES, progress=False)
    assert capsys.readouterr().err == ""
    (folder / "Cat" / "100.jpg").write_bytes(b"")  # force a rescan
    data.scan_images(folder, data.PETIMAGES_CLASSES, progress=True)
    assert "Checking PetImages" in capsys.readouterr().err


def test_load_cifar10_is_torchvision_cifar10(fixture_root):
    folder = fixture_root / "cifar10" / "cifar-10-batches-py"
    train, test = data.load_cifar10(True, root=folder), data.load_cifar10(False, root=folder.parent)
    assert isinstance(train, CIFAR10) and (len(train), len(test)) == (80, 40)
    assert train.classes == list(data.CIFAR10_CLASSES)
    assert np.bincount(train.targets).tolist() == [8] * 10
    image, label = test[0]
    assert image.mode == "RGB" and image.size == (32, 32) and label == test.targets[0]
    with pytest.raises(TypeError, match="True or False"):
        data.load_cifar10("test", root=folder)


def test_grading_profile_takes_stratified_seeded_subsets(fixture_root, monkeypatch):
    subsets = {
        "scene15": {"train": 2, "test": 1},
        "petimages": {"train": 3},
        "cifar10": {"test": 2},
    }
    small = Profile("grading", False, subsets)
    monkeypatch.setattr(data, "get_profile", lambda requested=None: small)
    paths = data.fixture_paths(fixture_root)
    full_train = data.load_scene15("train", root=paths["scene15"], profile="full")
    train = data.load_scene15("train", root=paths["scene15"])
    assert np.bincount(train.targets).tolist() == [2] * 15
    assert set(train.samples) <= set(full_train.samples)
    assert train.samples == sorted(train.samples, key=full_train.samples.index)
    assert len(data.load_scene15("test", root=paths["scene15"])) == 15
    pets = data.load_petimages("train", root=paths["petimages"], progress=False)
    assert np.bincount(pets.targets).tolist() == [3, 3] and pets.skipped == 3
    assert len(data.load_petimages("test", root=paths["petimages"], progress=False)) == 4  # all
    cifar = data.load_cifar10(False, root=paths["cifar10"])
    assert isinstance(cifar, torch.utils.data.Subset) and len(cifar) == 20
    assert cifar.classes == list(data.CIFAR10_CLASSES)
    assert cifar.targets == [cifar.dataset.targets[i] for i in cifar.indices]
    assert np.bincount(cifar.targets).tolist() == [2] * 10


def test_stratified_indices_are_seeded_and_balanced():
    targets = [0] * 50 + [1] * 30 + [2] * 5
    chosen = data.stratified_indices(targets, 10, seed=3)
    assert chosen == sorted(chosen) and len(set(chosen)) == len(chosen)
    assert np.bincount([targets[i] for i in chosen]).tolist() == [10, 10, 5]
    assert data.stratified_indices(targets, 10, seed=3) == chosen
    assert data.stratified_indices(targets, 10, seed=4) != chosen


def test_stratified_split_is_a_seeded_80_20_partition():
    targets = [1] * 12 + [0] * 7 + [1] * 13
    train, test = data.stratified_split(targets, 0.8, seed=0)
    assert sorted(train + test) == list(range(len(targets))) and not set(train) & set(test)
    assert np.bincount([targets[i] for i in train]).tolist() == [6, 20]  # 5.6 -> 6, 20
    assert data.stratified_split(targets, 0.8, seed=0) == (train, test)
    assert data.stratified_split(targets, 0.8, seed=1) != (train, test)


# --- where datasets are ----------------------------------------------------------------------


def test_dataset_dir_in_smoke_generates_the_fixtures(data_home):
    folder = data.dataset_dir("scene15", profile="smoke")
    assert folder == data_home / "fixtures" / "scene15" / "15SceneData"
    assert (data_home / "fixtures" / "README.txt").is_file()
    assert len(data.load_petimages("test", profile="smoke", progress=False)) == 4


def test_missing_dataset_names_the_command_to_run(data_home, tmp_path):
    with pytest.raises(data.DatasetMissingError) as error:
        data.load_scene15("train")
    assert isinstance(error.value, FileNotFoundError)
    assert "python -m featurelab.data get scene15" in str(error.value)
    assert "https://rdfia.github.io/data/15SceneData.zip" in str(error.value)
    with pytest.raises(
        data.DatasetMissingError, match=r"featurelab.data get petimages --root .*elsewhere"
    ):
        data.dataset_dir("petimages", root=tmp_path / "elsewhere")


def _ensure(root: str) -> list[str]:
    return sorted(str(p) for p in data.ensure_fixtures(root).values())


def test_ensure_fixtures_survives_a_race_and_replaces_old_versions(tmp_path):
    root = tmp_path / "fixtures"
    with multiprocessing.get_context("fork").Pool(3) as pool:
        results = pool.map(_ensure, [str(root)] * 3)
    assert results[0] == results[1] == results[2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fixtures"]  # no staging debris
    assert root.stat().st_mode & 0o777 == 0o755  # readable by other users (not mkdtemp's 0o700)
    reference = tree_digests(root)
    (root / "VERSION").write_text("0")
    (root / "scene15" / "stale.txt").write_text("from an older version")
    data.ensure_fixtures(root)
    assert tree_digests(root) == reference
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fixtures"]


def test_datasets_pickle_and_load_in_dataloader_workers(fixture_root):
    paths = data.fixture_paths(fixture_root)
    prep = transforms.Compose([transforms.Resize((40, 40)), transforms.ToTensor()])
    pets = data.load_petimages("train", prep, root=paths["petimages"], progress=False)
    cifar = torch.utils.data.Subset(data.load_cifar10(True, prep, root=paths["cifar10"]), [3, 1])
    for dataset in (pets, pets.subset([4, 2]), cifar):
        clone = pickle.loads(pickle.dumps(dataset))
        assert torch.equal(clone[1][0], dataset[1][0])
    loader = torch.utils.data.DataLoader(pets, batch_size=8, num_workers=2)
    batches = list(loader)
    assert torch.cat([labels for _, labels in batches]).tolist() == pets.targets
    assert batches[0][0].shape == (8, 3, 40, 40)


# --- command-line entry points ---------------------------------------------------------------


def load_script(name: str):
    """Import ``data_scripts/<name>.py`` as a module (its ``main(argv)`` returns the exit code)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "data_scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_fixtures_script_runs_standalone(fixture_root, tmp_path):
    made = subprocess.run(
        [sys.executable, REPO / "data_scripts" / "make_fixtures.py", "--root", tmp_path / "fx"],
        capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert tree_digests(tmp_path / "fx") == tree_digests(fixture_root)
    assert str(tmp_path / "fx" / "scene15" / "15SceneData") in made.stdout


def test_get_data_cli_verify_only(fixture_root, data_home, capsys):
    get_data = load_script("get_data")
    assert get_data.main(["all", "--verify-only"]) == 1
    err = capsys.readouterr().err
    for name in data.REGISTRY:
        assert f"{name}: ERROR" in err and f"python -m featurelab.data get {name}" in err
    shutil.copytree(fixture_root / "cifar10", data_home / "cifar10")
    assert get_data.main(["cifar10", "--verify-only"]) == 0
    assert (
        f"cifar10: verified {data_home / 'cifar10' / 'cifar-10-batches-py'}"
        in capsys.readouterr().out
    )
    with pytest.raises(SystemExit):
        get_data.main(["imagenet"])


def test_get_weights_cli_reports_offline_clearly(monkeypatch, capsys):
    from urllib.error import URLError

    from torchvision.models import WeightsEnum

    fetched = []

    def fake_get_state_dict(self, *args, **kwargs):
        if self.url.endswith(".pth") and "resnet18" in self.url:
            fetched.append(self)
            return {}
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(WeightsEnum, "get_state_dict", fake_get_state_dict)
    get_weights = load_script("get_weights")
    assert get_weights.main(["resnet18"]) == 0
    assert len(fetched) == 1 and "resnet18: ok" in capsys.readouterr().out
    assert get_weights.main(["all"]) == 1
    err = capsys.readouterr().err
    assert "vgg16" in err and "mobilenet_v3_large" in err and "name resolution" in err
    assert "python -m featurelab.backbones get vgg16" in err  # backbones.how_to_fetch's advice
