"""The on-disk feature cache: keys, hits, corruption, concurrency, module fingerprints.

A cache hit must return the very numbers a fresh extraction gives and must not run the model
over the data (only the 1-image probe of the module fingerprint). Forward calls are counted
with a forward pre-hook that records each input batch size.
"""

from __future__ import annotations

import copy
import multiprocessing
import os
import time

import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Subset, TensorDataset
from torchvision import datasets, models
from torchvision.transforms import v2

from autograder.checks import references
from featurelab import cache, features
from featurelab import fingerprint as fingerprinting
from tests.data import images

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("FEATURELAB_CACHE", str(folder))
    return folder


def small_net(seed: int = 0) -> nn.Module:
    """(N, 3, H, W) -> (N, 6, H/2, W/2)."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2)
    )
    net[1].running_mean.uniform_(-0.5, 0.5)
    return net.eval()


def count_batches(model: nn.Module) -> list[int]:
    """Record the batch size of every forward call of ``model``."""
    sizes: list[int] = []
    model.register_forward_pre_hook(lambda module, args: sizes.append(args[0].shape[0]))
    return sizes


def write_images(folder, **kwargs):
    """Three images of a cat class and three of a dog class (PNG)."""
    return images.write_images(folder, classes=("cat", "dog"), **kwargs)


def transform(size: int = 16, mean=MEAN):
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(size, antialias=True),
            v2.CenterCrop(size),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean, STD),
        ]
    )


@pytest.fixture
def image_folder(tmp_path):
    return datasets.ImageFolder(write_images(tmp_path / "images"), transform=transform())


def entries(folder) -> list:
    return sorted(folder.glob(f"*{cache.SUFFIX}"))


# ---------------------------------------------------------------------------------------------
# Hits and misses
# ---------------------------------------------------------------------------------------------


def test_hit_returns_identical_tensors_without_running_the_model_on_data(cache_dir, image_folder):
    model = small_net()
    calls = count_batches(model)
    first, first_labels = features.extract(model, image_folder, batch_size=4, progress=False)
    assert calls == [1, 4, 2]  # probe, then the data
    assert len(entries(cache_dir)) == 1
    calls.clear()
    second, second_labels = features.extract(model, image_folder, batch_size=4, progress=False)
    assert calls == []  # same object, same weights: even the fingerprint probe is remembered
    assert torch.equal(first, second) and torch.equal(first_labels, second_labels)
    fresh = copy.deepcopy(model)  # a new object (a restarted kernel, a grading run)
    fresh_calls = count_batches(fresh)
    again, _ = features.extract(fresh, image_folder, batch_size=4, progress=False)
    assert fresh_calls == [1] and torch.equal(again, first)  # the probe only, then the hit
    assert second.dtype == torch.float32 and second_labels.dtype == torch.int64
    second += 1  # the memory map is copy-on-write: the entry is unchanged
    third, _ = features.extract(model, image_folder, batch_size=4, progress=False)
    assert torch.equal(third, first)


def test_cache_false_and_env_off_write_nothing(cache_dir, image_folder, monkeypatch):
    model = small_net()
    features.extract(model, image_folder, cache=False, progress=False)
    assert not cache_dir.exists()
    monkeypatch.setenv("FEATURELAB_CACHE", "off")
    features.extract(model, image_folder, progress=False)
    assert not cache_dir.exists()


def test_explicit_cache_folder(tmp_path, image_folder):
    folder = tmp_path / "elsewhere"
    features.extract(small_net(), image_folder, cache=folder, progress=False)
    assert len(entries(folder)) == 1


def test_key_changes_with_a_weight_value(cache_dir, image_folder):
    model = small_net()
    first, _ = features.extract(model, image_folder, progress=False)
    with torch.no_grad():
        model[0].weight.data[0, 0, 0, 0] += 0.5  # .data: no version bump, still detected
    calls = count_batches(model)
    second, _ = features.extract(model, image_folder, progress=False)
    assert calls == [1, 6]  # recomputed
    assert not torch.equal(first, second)
    assert len(entries(cache_dir)) == 2


def test_key_changes_with_a_buffer_value(cache_dir, image_folder):
    model = small_net()
    features.extract(model, image_folder, progress=False)
    model[1].running_var.fill_(4.0)
    calls = count_batches(model)
    features.extract(model, image_folder, progress=False)
    assert calls == [1, 6]


def test_key_changes_with_the_transform(cache_dir, tmp_path):
    root = write_images(tmp_path / "images")
    model = small_net()
    features.extract(model, datasets.ImageFolder(root, transform=transform()), progress=False)
    calls = count_batches(model)
    other = datasets.ImageFolder(root, transform=transform(mean=(0.5, 0.5, 0.5)))
    features.extract(model, other, progress=False)
    assert calls == [1, 6]


def test_key_changes_with_a_lambda_transform_whose_repr_hides_it(cache_dir, tmp_path):
    root = write_images(tmp_path / "images")
    model = small_net()
    base = transform()
    brighter = datasets.ImageFolder(root, transform=v2.Compose([base, v2.Lambda(lambda x: x + 1)]))
    darker = datasets.ImageFolder(root, transform=v2.Compose([base, v2.Lambda(lambda x: x - 1)]))
    first, _ = features.extract(model, brighter, progress=False)
    calls = count_batches(model)
    second, _ = features.extract(model, darker, progress=False)
    assert calls == [1, 6] and not torch.equal(first, second)


def test_key_changes_with_the_file_list(cache_dir, tmp_path):
    root = write_images(tmp_path / "images")
    model = small_net()
    folder = datasets.ImageFolder(root, transform=transform())
    features.extract(model, folder, progress=False)
    calls = count_batches(model)
    features.extract(model, Subset(folder, [0, 1, 2, 3, 4]), progress=False)  # fewer files
    assert calls == [1, 5]  # the probe (a hook was added: structure changed), then the data
    calls.clear()
    features.extract(model, Subset(folder, [5, 4, 3, 2, 1]), progress=False)  # another order
    assert calls == [5]  # the probe output is remembered for this model object from now on
    calls.clear()
    time.sleep(0.01)
    Image.new("RGB", (20, 24), "red").save(root / "dog" / "1.png")  # same name, new content
    features.extract(model, datasets.ImageFolder(root, transform=transform()), progress=False)
    assert calls == [6]
    calls.clear()
    features.extract(model, datasets.ImageFolder(root, transform=transform()), progress=False)
    assert calls == []  # and the new state is cached in turn


def test_subset_key_covers_its_own_files_only(cache_dir, tmp_path):
    root = write_images(tmp_path / "images")  # cat 0-2, dog 0-2
    folder = datasets.ImageFolder(root, transform=transform())
    nested = Subset(Subset(folder, [5, 4, 3, 2, 1]), [0, 2])  # dog/2.png, dog/0.png
    model = small_net()
    first, labels = features.extract(model, nested, progress=False)
    assert labels.tolist() == [1, 1]
    calls = count_batches(model)
    time.sleep(0.01)
    Image.new("RGB", (20, 24), "red").save(root / "cat" / "0.png")  # not in the subset
    folder = datasets.ImageFolder(root, transform=transform())
    again, _ = features.extract(
        model, Subset(Subset(folder, [5, 4, 3, 2, 1]), [0, 2]), progress=False
    )
    assert calls == [1] and torch.equal(again, first)  # the probe (a hook was added), a hit
    calls.clear()
    flat = Subset(folder, [5, 3])  # the same two files in the same order: the same entry
    same, _ = features.extract(model, flat, progress=False)
    assert calls == [] and torch.equal(same, first)
    Image.new("RGB", (20, 24), "blue").save(root / "dog" / "0.png")  # in the subset
    changed, _ = features.extract(model, flat, progress=False)
    assert calls == [2] and not torch.equal(changed, first)


def test_key_changes_with_settings_that_change_features(cache_dir, image_folder):
    model = small_net()
    features.extract(model, image_folder, progress=False)
    for settings, expected_batch in (({"pool": "avg"}, 6), ({"resize": 8}, 6), ({"amp": True}, 6)):
        calls = count_batches(model)
        features.extract(model, image_folder, progress=False, **settings)
        assert calls[-1] == expected_batch, settings
        model._forward_pre_hooks.clear()
    calls = count_batches(model)  # batch size and channels_last are not part of the key
    features.extract(model, image_folder, batch_size=2, channels_last=False, progress=False)
    assert calls == [1]


def test_train_mode_is_never_cached(cache_dir, image_folder):
    model = small_net().train()
    features.extract(model, image_folder, progress=False)
    features.extract(model, image_folder, progress=False)
    assert not cache_dir.exists()
    eval_fp = fingerprinting.fingerprint_module(small_net().eval(), (3, 16, 16))
    train_fp = fingerprinting.fingerprint_module(small_net().train(), (3, 16, 16))
    assert eval_fp != train_fp


def test_random_augmentation_is_not_cached(cache_dir, tmp_path):
    root = write_images(tmp_path / "images")
    augmented = datasets.ImageFolder(
        root, transform=v2.Compose([transform(), v2.RandomHorizontalFlip(), v2.RandomErasing(1.0)])
    )
    features.extract(small_net(), augmented, progress=False)
    assert not cache_dir.exists()


def test_shuffling_dataloader_is_not_cached_sequential_one_is(cache_dir, image_folder):
    model = small_net()
    features.extract(model, DataLoader(image_folder, batch_size=4, shuffle=True), progress=False)
    assert not cache_dir.exists()
    features.extract(model, DataLoader(image_folder, batch_size=4), progress=False)
    assert len(entries(cache_dir)) == 1


def test_tensor_dataset_and_cifar_like_arrays_are_identified_by_content(cache_dir):
    model = small_net()
    images = torch.randn(5, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(5)
    features.extract(model, TensorDataset(images, labels), progress=False)
    calls = count_batches(model)
    features.extract(model, TensorDataset(images.clone(), labels.clone()), progress=False)
    assert calls == [1]  # equal content, other tensors: hit
    changed = images.clone()
    changed[4, 0, 0, 0] += 1
    features.extract(model, TensorDataset(changed, labels), progress=False)
    assert calls == [1, 5]  # the probe is remembered; the data is recomputed


# ---------------------------------------------------------------------------------------------
# Module fingerprints
# ---------------------------------------------------------------------------------------------


def test_equal_modules_of_different_classes_share_a_fingerprint_different_ones_do_not():
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)

    class Wrapped(nn.Module):  # other class, other names, other registration order
        def __init__(self):
            super().__init__()
            self.norm, self.first = bn, conv

        def forward(self, x):
            return torch.relu(self.norm(self.first(x)))

    class Residual(nn.Module):  # same leaves, different function (a skip connection)
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(conv, bn, nn.ReLU())

        def forward(self, x):
            return self.body(x) + x

    shape = (4, 8, 8)
    sequential = nn.Sequential(conv, bn, nn.ReLU()).eval()
    fp = fingerprinting.fingerprint_module(sequential, shape)
    assert fingerprinting.fingerprint_module(Wrapped().eval(), shape) == fp
    assert fingerprinting.fingerprint_module(Residual().eval(), shape) != fp
    assert fingerprinting.fingerprint_module(nn.Sequential(conv, bn, nn.Tanh()).eval(), shape) != fp
    assert fingerprinting.fingerprint_module(sequential, shape) == fp  # deterministic
    with pytest.raises(ValueError, match="input_shape"):
        fingerprinting.fingerprint_module(sequential, (3, 8, 8))


def test_probe_is_remembered_per_object_and_rerun_after_any_change(monkeypatch):
    probes = []
    real_probe = fingerprinting.probe_output
    monkeypatch.setattr(
        fingerprinting,
        "probe_output",
        lambda module, shape: probes.append(1) or real_probe(module, shape),
    )
    shape = (3, 8, 8)
    model = small_net()
    fp = fingerprinting.fingerprint_module(model, shape)
    assert fingerprinting.fingerprint_module(model, shape) == fp and len(probes) == 1  # remembered
    assert fingerprinting.fingerprint_module(copy.deepcopy(model), shape) == fp and len(probes) == 2

    def replace_forward(m):
        m.forward = lambda x: -nn.Sequential.forward(m, x)

    def weight_via_data(m):
        m[0].weight.data[0, 0, 0, 0] += 1.0  # no version bump: the digest still sees it

    changes = {
        "instance forward": replace_forward,
        "attribute": lambda m: setattr(m[0], "padding", (0, 0)),
        "hook": lambda m: m[2].register_forward_hook(lambda mod, args, out: out * 2),
        "submodule": lambda m: m.__setitem__(2, nn.Tanh()),
        "weight": weight_via_data,
        "buffer swapped": lambda m: setattr(m[1], "running_var", torch.full((6,), 3.0)),
    }
    for name, change in changes.items():
        model = small_net()
        before = fingerprinting.fingerprint_module(model, shape)
        count = len(probes)
        change(model)
        assert fingerprinting.fingerprint_module(model, shape) != before, name
        assert len(probes) == count + 1, name


def test_fingerprint_restores_train_flags_and_leaves_batchnorm_statistics_alone():
    model = small_net().train()
    model[2].eval()
    before = model[1].running_mean.clone()
    fingerprinting.fingerprint_module(model, (3, 8, 8))
    assert [m.training for m in model.modules()] == [True, True, True, False, True]
    assert torch.equal(model[1].running_mean, before)


class VGG16relu7(nn.Module):
    """What a student writes in TP3: VGG16 up to relu7, (N, 3, 224, 224) -> (N, 4096)."""

    def __init__(self, vgg: models.VGG):
        super().__init__()
        self.features = vgg.features
        self.avgpool = vgg.avgpool
        self.classifier = nn.Sequential(*list(vgg.classifier.children())[:-2])

    def forward(self, x):
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


def test_student_vgg16relu7_hits_the_entry_of_the_reference_cut(cache_dir, record_property):
    torch.manual_seed(0)
    vgg = models.vgg16(weights=None).eval()
    reference = references.cut(vgg, "vgg16", "relu7")
    student = VGG16relu7(vgg).eval()
    start = time.perf_counter()
    fingerprint = fingerprinting.fingerprint_module(reference)
    seconds = time.perf_counter() - start
    record_property("vgg16_fingerprint_seconds", round(seconds, 2))
    print(f"VGG16 relu7 fingerprint: {seconds:.2f} s (138 M parameters + 1-image probe)")
    assert fingerprinting.fingerprint_module(student) == fingerprint
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    dataset = TensorDataset(images, torch.tensor([3, 7]))
    expected, _ = features.extract(reference, dataset, progress=False)
    assert expected.shape == (2, 4096)
    calls = count_batches(student)
    got, labels = features.extract(student, dataset, progress=False)
    assert calls == [1]  # the probe only: served from the reference's entry
    assert torch.equal(got, expected) and labels.tolist() == [3, 7]
    fc7 = references.cut(vgg, "vgg16", "fc7")  # one layer less (no ReLU): another entry
    assert fingerprinting.fingerprint_module(fc7) != fingerprint


# ---------------------------------------------------------------------------------------------
# Files: corruption, atomicity, concurrency, maintenance
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "empty"])
def test_damaged_entry_is_recomputed_and_rewritten(cache_dir, image_folder, damage):
    model = small_net()
    first, _ = features.extract(model, image_folder, progress=False)
    (path,) = entries(cache_dir)
    content = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(content[: len(content) - 7])
    elif damage == "flip":
        flipped = bytearray(content)
        flipped[-30] ^= 0x10  # inside the features payload
        path.write_bytes(bytes(flipped))
    elif damage == "garbage":
        path.write_bytes(os.urandom(len(content)))
    else:
        path.write_bytes(b"")
    key = path.name[: -len(cache.SUFFIX)]
    assert cache.load(cache_dir, key) is None
    calls = count_batches(model)
    second, _ = features.extract(model, image_folder, progress=False)
    assert calls == [1, 6]  # recomputed, the damaged file was not returned
    assert torch.equal(first, second)
    assert path.stat().st_size == len(content)  # rewritten whole ...
    reloaded = cache.load(cache_dir, key)
    assert reloaded is not None and torch.equal(reloaded[0], first)  # ... and valid again


def test_store_and_load_round_trip_shapes(tmp_path):
    key = "ab" * 32
    values = torch.randn(3, 4, 5, 6)
    labels = torch.tensor([2, 0, 1])
    assert cache.store(tmp_path, key, values, labels, {"note": "x"}) is not None
    loaded = cache.load(tmp_path, key)
    assert loaded is not None
    assert torch.equal(loaded[0], values) and torch.equal(loaded[1], labels)
    assert cache.load(tmp_path, "cd" * 32) is None
    (tmp_path / f"{'cd' * 32}{cache.SUFFIX}").write_bytes(
        (tmp_path / f"{key}{cache.SUFFIX}").read_bytes()
    )
    assert cache.load(tmp_path, "cd" * 32) is None  # a file under the wrong name: key mismatch


def _writer(folder: str, key: str, values: torch.Tensor, labels: torch.Tensor, rounds: int):
    # Runs in a forked child: no torch computation here (an OpenMP region after fork can
    # hang), store() only reads the inherited tensors' memory.
    for _ in range(rounds):
        if cache.store(folder, key, values, labels) is None:
            raise SystemExit(1)


def test_concurrent_writers_never_expose_a_torn_entry(tmp_path):
    """Two processes (like two grading workers) rewrite one entry while this one reads it."""
    key = "0f" * 32
    context = multiprocessing.get_context("fork")
    payloads = {
        fill: (torch.full((64, 1024), fill), torch.full((64,), int(fill), dtype=torch.int64))
        for fill in (1.0, 2.0)
    }
    writers = [
        context.Process(target=_writer, args=(str(tmp_path), key, *payloads[fill], 100))
        for fill in payloads
    ]
    for process in writers:
        process.start()
    seen = set()
    deadline = time.monotonic() + 60
    while any(process.is_alive() for process in writers) and time.monotonic() < deadline:
        loaded = cache.load(tmp_path, key)
        if loaded is not None:
            values, labels = loaded
            fill = values[0, 0].item()
            assert fill in payloads
            assert torch.equal(values, payloads[fill][0])  # one whole write, never a mix
            assert torch.equal(labels, payloads[fill][1])
            seen.add(fill)
        time.sleep(0.001)
    for process in writers:
        process.join(timeout=30)
        assert process.exitcode == 0
    assert seen  # the reader really read entries while writers were writing
    assert cache.load(tmp_path, key) is not None
    assert not list(tmp_path.glob("*.tmp"))  # no leftovers


def test_unwritable_cache_folder_still_returns_features(tmp_path, image_folder):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the cache folder should be")
    got, _ = features.extract(small_net(), image_folder, cache=blocker / "cache", progress=False)
    assert got.shape == (6, 6, 8, 8)


def test_cache_info_and_clear_cache(cache_dir, image_folder):
    model = small_net()
    features.extract(model, image_folder, progress=False)
    features.extract(model, image_folder, pool="max", progress=False)
    (cache_dir / "notes.txt").write_text("not ours")
    info = features.cache_info()
    assert info["directory"] == str(cache_dir)
    assert info["entries"] == 2 and info["invalid"] == 0
    assert info["bytes"] == sum(path.stat().st_size for path in entries(cache_dir))
    assert sorted(item["shape"] for item in info["items"]) == [[6, 6], [6, 6, 8, 8]]
    assert features.clear_cache() == 2
    assert features.cache_info()["entries"] == 0
    assert (cache_dir / "notes.txt").exists()  # only cache files are removed


def test_default_folder_is_under_the_data_root(monkeypatch, tmp_path):
    monkeypatch.delenv("FEATURELAB_CACHE", raising=False)
    monkeypatch.setenv("FEATURELAB_DATA", str(tmp_path / "data"))
    assert cache.default_cache_dir() == tmp_path / "data" / "cache"
    monkeypatch.setenv("FEATURELAB_CACHE", str(tmp_path / "shared"))
    assert cache.default_cache_dir() == tmp_path / "shared"
