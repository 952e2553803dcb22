"""The two cache layers (read-only shared + read-write), atomic writes, and what is reported.

``$FEATURELAB_SHARED_CACHE`` is only ever read: a hit there skips the extraction, a bad entry
there is a miss; new entries go to ``$FEATURELAB_CACHE`` only; a read-write folder that
cannot be written costs one warning (through the ``featurelab`` logger), never an error.
"""

from __future__ import annotations

import json
import os

import pytest
import torch
from torch import nn
from torchvision import datasets
from torchvision.transforms import v2

from featurelab import _io, cache, features, reporting
from tests.data import images


@pytest.fixture
def layers(tmp_path, monkeypatch):
    """``(shared folder, read-write folder)``, both named in the environment."""
    shared, private = tmp_path / "shared", tmp_path / "rw"
    monkeypatch.setenv("FEATURELAB_SHARED_CACHE", str(shared))
    monkeypatch.setenv("FEATURELAB_CACHE", str(private))
    return shared, private


@pytest.fixture
def image_folder(tmp_path):
    transform = v2.Compose(
        [v2.ToImage(), v2.Resize(16, antialias=True), v2.CenterCrop(16), v2.ToDtype(torch.float32, scale=True)]
    )  # fmt: skip
    folder = images.write_images(tmp_path / "images", classes=("cat", "dog"))
    return datasets.ImageFolder(folder, transform=transform)


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2)).eval()


def count_batches(model: nn.Module) -> list[int]:
    sizes: list[int] = []
    model.register_forward_pre_hook(lambda module, args: sizes.append(args[0].shape[0]))
    return sizes


def snapshot(folder) -> dict[str, tuple[int, int, bytes]]:
    """Every file under ``folder`` with its size, mtime and content."""
    return {
        str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns, path.read_bytes())
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }  # fmt: skip


def build_shared(shared, image_folder) -> torch.Tensor:
    """Fill ``shared`` (as an instructor would, with it as the read-write cache)."""
    values, _ = features.extract(small_net(), image_folder, cache=shared, progress=False)
    assert len(list(shared.glob(f"*{cache.SUFFIX}"))) == 1
    return values


# ---------------------------------------------------------------------------------------------
# Shared (read-only) layer
# ---------------------------------------------------------------------------------------------


def test_a_shared_hit_skips_extraction_and_writes_nothing(layers, image_folder):
    shared, private = layers
    expected = build_shared(shared, image_folder)
    before = snapshot(shared)
    model = small_net()
    calls = count_batches(model)
    got, labels = features.extract(model, image_folder, progress=False)
    assert calls == [1]  # the fingerprint probe only: no pass over the data
    assert torch.equal(got, expected) and labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert not private.exists()  # a shared hit is not copied into the read-write cache
    assert snapshot(shared) == before


def test_the_shared_layer_is_looked_up_before_the_read_write_one(layers, image_folder):
    shared, private = layers
    build_shared(shared, image_folder)
    (entry,) = shared.glob(f"*{cache.SUFFIX}")
    key = entry.name[: -len(cache.SUFFIX)]
    fake = torch.full((6, 4, 2, 2), 7.0), torch.arange(6)
    assert cache.store(private, key, *fake) is not None  # the read-write copy differs
    features_shared, _ = cache.load(shared, key)
    got, _ = features.extract(small_net(), image_folder, progress=False)
    assert torch.equal(got, features_shared) and not torch.equal(got, fake[0])
    hit = cache.lookup(key, [None, tmp := shared / "missing", private])
    assert hit is not None and hit[2] == private and torch.equal(hit[0], fake[0])
    assert not tmp.exists()


def half_written(content: bytes) -> bytes:
    return content[: len(content) // 2]


def flipped(content: bytes) -> bytes:
    data = bytearray(content)
    data[-20] ^= 0x01  # inside the labels/features payload: only the CRC can tell
    return bytes(data)


@pytest.mark.parametrize("damage", ["half-written", "flipped", "header only", "empty", "folder"])
def test_a_bad_shared_entry_is_a_miss_never_an_error(layers, image_folder, damage, capsys):
    shared, private = layers
    expected = build_shared(shared, image_folder)
    (entry,) = shared.glob(f"*{cache.SUFFIX}")
    content = entry.read_bytes()
    if damage == "folder":  # unreadable as a file
        entry.unlink()
        entry.mkdir()
    else:
        header_end = 16 + int.from_bytes(content[8:16], "little")
        entry.write_bytes(
            {
                "half-written": half_written,
                "flipped": flipped,
                "header only": lambda c: c[:header_end],
                "empty": lambda c: b"",
            }[damage](content)
        )
    before = snapshot(shared)
    model = small_net()
    calls = count_batches(model)
    got, _ = features.extract(model, image_folder, progress=False)
    assert calls == [1, 6]  # recomputed
    assert torch.equal(got, expected)
    assert snapshot(shared) == before and entry.exists()  # left exactly as it was
    assert [p.name for p in private.glob(f"*{cache.SUFFIX}")] == [entry.name]  # written here
    assert capsys.readouterr() == ("", "")  # a miss is not worth a message


def test_a_missing_shared_folder_is_a_miss(layers, image_folder):
    shared, private = layers
    got, _ = features.extract(small_net(), image_folder, progress=False)
    assert not shared.exists() and len(list(private.glob(f"*{cache.SUFFIX}"))) == 1
    again = count_batches(model := small_net())
    assert torch.equal(features.extract(model, image_folder, progress=False)[0], got)
    assert again == [1]  # now a read-write hit


def test_cache_false_and_off_ignore_the_shared_layer_too(layers, image_folder, monkeypatch):
    shared, _ = layers
    build_shared(shared, image_folder)
    model = small_net()
    calls = count_batches(model)
    features.extract(model, image_folder, cache=False, progress=False)
    monkeypatch.setenv("FEATURELAB_CACHE", "off")
    features.extract(model, image_folder, progress=False)
    assert calls == [6, 6]  # both recomputed, no probe: no key was even computed


# ---------------------------------------------------------------------------------------------
# Read-write layer: unwritable folder, crashed writers
# ---------------------------------------------------------------------------------------------


def test_an_unwritable_cache_folder_warns_once_and_extraction_works(tmp_path, image_folder, capsys):
    blocker = tmp_path / "read_only_mount"
    blocker.write_text("a file where the cache folder should be")
    folder = blocker / "cache"
    first, _ = features.extract(small_net(), image_folder, cache=folder, progress=False)
    second, _ = features.extract(small_net(), image_folder, cache=folder, progress=False)
    assert torch.equal(first, second) and first.shape == (6, 4, 2, 2)
    out, err = capsys.readouterr()
    assert err == ""  # nbgrader zeroes a test cell that writes to stderr
    assert out.count("feature cache: cannot write to") == 1 and str(folder) in out
    assert "FEATURELAB_CACHE" in out


def test_a_crashed_writer_leaves_only_a_temporary_file_that_is_never_read(tmp_path):
    key = "ab" * 32
    values, labels = torch.randn(4, 3), torch.arange(4)
    with pytest.raises(RuntimeError, match="killed"):
        with _io.atomic_writer(cache.entry_path(tmp_path, key)) as stream:
            stream.write(b"FLFEAT01 half of a header")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []  # an error removes the temporary file
    # A writer killed by a signal cannot clean up: its temporary file stays, never read.
    leftover = tmp_path / f".{key}{cache.SUFFIX}.k1ll3d0x{_io.TEMP_SUFFIX}"
    leftover.write_bytes(b"FLFEAT01" + b"\0" * 40)
    assert cache.load(tmp_path, key) is None
    assert cache.store(tmp_path, key, values, labels) is not None
    assert torch.equal(cache.load(tmp_path, key)[0], values)
    (tmp_path / "notes.tmp").write_text("not ours")
    assert cache.clear_cache(tmp_path) == 2  # the entry and the leftover, not notes.tmp
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.tmp"]


def test_entries_are_readable_by_other_users(tmp_path):
    path = cache.store(tmp_path, "cd" * 32, torch.zeros(2, 2), torch.zeros(2, dtype=torch.int64))
    assert path is not None and path.stat().st_mode & 0o777 == 0o644


# ---------------------------------------------------------------------------------------------
# Reporting: one switch (progress) for bars and status lines
# ---------------------------------------------------------------------------------------------


def test_a_cache_hit_is_reported_only_with_progress(tmp_path, image_folder, capsys):
    model = small_net()
    features.extract(model, image_folder, cache=tmp_path, progress=False)
    assert capsys.readouterr() == ("", "")
    features.extract(model, image_folder, cache=tmp_path, progress=False)  # a silent hit
    assert capsys.readouterr() == ("", "")
    features.extract(model, image_folder, cache=tmp_path, desc="train", progress=True)
    out, err = capsys.readouterr()
    assert out == "train: 6 rows from the feature cache\n" and err == ""


def test_library_modules_do_not_print():
    import ast
    from pathlib import Path

    package = Path(features.__file__).parent
    owned = [package / name for name in ("cache.py", "fingerprint.py", "features.py", "_io.py")]
    owned += sorted((package / "data").glob("*.py"))
    for path in owned:
        if path.name in ("cli.py", "__main__.py"):  # commands print their results
            continue
        calls = [
            node.lineno
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print"
        ]
        assert calls == [], f"{path.name} calls print() on lines {calls}"


# ---------------------------------------------------------------------------------------------
# The atomic-write helper and its users
# ---------------------------------------------------------------------------------------------


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    target = tmp_path / "state.json"
    _io.atomic_write_json(target, {"a": 1}, sort_keys=True)
    assert json.loads(target.read_text()) == {"a": 1}
    assert target.stat().st_mode & 0o777 == 0o644
    with pytest.raises(TypeError):
        _io.atomic_write_json(target, {"a": object()})  # fails while serialising
    with pytest.raises(ZeroDivisionError):
        with _io.atomic_writer(target, binary=False) as stream:
            stream.write('{"a": 2')
            raise ZeroDivisionError("half-way")
    assert json.loads(target.read_text()) == {"a": 1}  # the old version, untouched
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no temporary files
    _io.atomic_write_text(target, "é", permissions=None)
    assert target.read_bytes() == "é".encode() and target.stat().st_mode & 0o777 == 0o600
    assert _io.is_temporary_name(".state.json.a1b2c3d4.tmp", r"state\.json")
    assert not _io.is_temporary_name("state.json", r"state\.json")


def test_report_metric_and_manifests_write_through_the_helper(tmp_path, monkeypatch):
    calls = []
    real = _io.atomic_writer

    def spy(path, **options):
        calls.append(os.path.basename(path))
        return real(path, **options)

    monkeypatch.setattr(_io, "atomic_writer", spy)
    monkeypatch.setenv(reporting.METRICS_ENV, str(tmp_path / "metrics.json"))
    reporting.report_metric("accuracy", 0.5)
    reporting.report_metric("nmi", 0.25)
    assert reporting.read_metrics(tmp_path / "metrics.json") == {"accuracy": 0.5, "nmi": 0.25}
    assert (tmp_path / "metrics.json").read_text() == json.dumps(
        {"accuracy": 0.5, "nmi": 0.25}, indent=2, sort_keys=True
    )  # the format the instructor tools read, unchanged
    assert cache.store(tmp_path, "ef" * 32, torch.zeros(1, 1), torch.zeros(1).long()) is not None
    assert calls == ["metrics.json", "metrics.json", f"{'ef' * 32}{cache.SUFFIX}"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["efefefefefefefefefefefefefefefefefefefefefefefefefefefefefefefef.features", "metrics.json"]  # fmt: skip
