"""featurelab.features.extract: same numbers as a plain float32 loop, faster, silent on demand.

Tiny random networks and generated images; no network, no GPU. Tolerances: bitwise equal to
the plain loop with ``channels_last=False, fold_batchnorm=False`` (same kernels, same
batches); ``rtol=1e-5, atol=1e-5`` with ``channels_last=True`` (NHWC kernels sum in another
order) and with batch norm folded into the convolutions (the default).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset
from torchvision import datasets
from torchvision.transforms import v2

from featurelab import _runtime, features
from tests.data.images import write_images


def _set_cores(monkeypatch, count: int) -> None:
    """Pretend this machine has ``count`` cores (extraction's and its settings' view)."""
    monkeypatch.setattr(_runtime, "_cpu_cores", lambda: count)


MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Every test gets its own empty cache folder (never the repo's data/cache)."""
    monkeypatch.setenv("FEATURELAB_CACHE", str(tmp_path / "cache"))


def small_convnet(seed: int = 0, batchnorm: bool = True) -> nn.Module:
    """(N, 3, H, W) -> (N, 16, H/4, W/4): conv, BN, ReLU, pool, conv, ReLU."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8) if batchnorm else nn.Identity(),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.AvgPool2d(2),
    )
    if batchnorm:  # non-trivial running statistics
        net[1].running_mean.uniform_(-0.5, 0.5)
        net[1].running_var.uniform_(0.5, 2.0)
    return net.eval()


def with_head(trunk: nn.Module, in_features: int) -> nn.Module:
    return nn.Sequential(trunk, nn.Flatten(1), nn.Linear(in_features, 10), nn.ReLU()).eval()


def tensor_dataset(n: int = 10, size: int = 16, seed: int = 1) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, size, size, generator=generator)
    labels = torch.randint(0, 5, (n,), generator=generator)
    return TensorDataset(images, labels)


class ListDataset(Dataset):
    """A plain map-style dataset (not a TensorDataset): goes through a DataLoader."""

    def __init__(self, images: torch.Tensor, labels: list[int]):
        self.images, self.labels = images, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return self.images[index], self.labels[index]


def plain_loop(model: nn.Module, dataset, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference: the loop of the course seeds, float32, NCHW."""
    model.eval()
    outputs, labels = [], []
    with torch.no_grad():
        for images, targets in DataLoader(dataset, batch_size=batch_size):
            outputs.append(model(images))
            labels.append(torch.as_tensor(targets))
    return torch.cat(outputs), torch.cat(labels)


def image_transform(size: int = 16):
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(size, antialias=True),
            v2.CenterCrop(size),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(MEAN, STD),
        ]
    )


# ---------------------------------------------------------------------------------------------
# Same numbers as the plain loop
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["tensor", "list"])
def test_equals_plain_loop_bitwise_without_channels_last(kind):
    model = small_convnet()
    base = tensor_dataset(n=11)
    dataset = base if kind == "tensor" else ListDataset(base.tensors[0], base.tensors[1].tolist())
    expected, expected_labels = plain_loop(model, dataset, batch_size=4)
    got, labels = features.extract(
        model,
        dataset,
        batch_size=4,
        channels_last=False,
        fold_batchnorm=False,
        cache=False,
        progress=False,
    )
    assert got.dtype == torch.float32 and got.device.type == "cpu"
    assert got.shape == (11, 16, 4, 4)
    assert torch.equal(got, expected)
    assert labels.dtype == torch.int64 and torch.equal(labels, expected_labels)


def test_equals_plain_loop_with_channels_last_and_other_batch_size():
    model = with_head(small_convnet(), 16 * 4 * 4)
    dataset = tensor_dataset(n=13)
    expected, _ = plain_loop(model, dataset, batch_size=13)
    got, _ = features.extract(model, dataset, batch_size=5, cache=False, progress=False)
    assert got.shape == (13, 10)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_batchnorm_folded_copy_computes_the_same_function_and_leaves_the_model_alone():
    model = with_head(small_convnet(), 16 * 4 * 4)
    before = {name: value.clone() for name, value in model.state_dict().items()}
    folded = features.batchnorm_folded(model)
    assert folded is not model
    assert not any(isinstance(sub, nn.BatchNorm2d) for sub in folded.modules())
    assert any(isinstance(sub, nn.BatchNorm2d) for sub in model.modules())  # original intact
    assert all(torch.equal(value, before[name]) for name, value in model.state_dict().items())
    assert not folded.training and not any(sub.training for sub in folded.modules())
    images = tensor_dataset(n=6).tensors[0]
    with torch.no_grad():
        expected, got = model(images), folded(images)
    assert not torch.equal(got, expected)  # really another computation...
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)  # ...of the same function


def test_batchnorm_is_not_folded_when_that_would_change_what_runs():
    plain = small_convnet(batchnorm=False)
    assert features.batchnorm_folded(plain) is plain  # nothing to fold
    training = small_convnet().train()
    assert features.batchnorm_folded(training) is training  # batch statistics
    hooked = small_convnet()
    seen = []
    handle = hooked[1].register_forward_hook(lambda module, inputs, output: seen.append(1))
    assert features.batchnorm_folded(hooked) is hooked  # the hook must keep firing
    features.extract(hooked, tensor_dataset(n=13), batch_size=4, cache=False, progress=False)
    assert len(seen) == 4  # once per batch: extract ran the hooked model itself
    handle.remove()

    class DataDependent(nn.Module):  # torch.fx cannot trace a branch on tensor values
        def __init__(self):
            super().__init__()
            self.net = small_convnet()

        def forward(self, x):
            return self.net(x) if x.sum() > -1e9 else -self.net(x)

    untraceable = DataDependent().eval()
    assert features.batchnorm_folded(untraceable) is untraceable
    got, _ = features.extract(
        untraceable, tensor_dataset(n=13), batch_size=4, cache=False, progress=False
    )
    torch.testing.assert_close(got, plain_loop(untraceable, tensor_dataset(n=13), 4)[0])


def test_labels_keep_dataset_order_through_a_dataloader(tmp_path):
    root = write_images(tmp_path / "images", classes=("b", "a", "c"), per_class=2)
    folder = datasets.ImageFolder(root, transform=image_transform())
    order = [5, 0, 3, 1, 4, 2]
    subset = Subset(folder, order)
    _, labels = features.extract(
        small_convnet(), subset, batch_size=4, num_workers=0, cache=False, progress=False
    )
    assert labels.tolist() == [folder.targets[i] for i in order]
    assert labels.tolist() != sorted(labels.tolist())  # the order is not trivially sorted


def test_pool_avg_and_max_reduce_feature_maps():
    model, dataset = small_convnet(), tensor_dataset(n=6)
    maps, _ = features.extract(model, dataset, cache=False, progress=False)
    avg, _ = features.extract(model, dataset, pool="avg", cache=False, progress=False)
    top, _ = features.extract(model, dataset, pool="max", cache=False, progress=False)
    assert avg.shape == top.shape == (6, 16)
    torch.testing.assert_close(avg, maps.mean(dim=(2, 3)))
    torch.testing.assert_close(top, maps.amax(dim=(2, 3)))
    with pytest.raises(ValueError, match="pool"):
        features.extract(model, dataset, pool="median", cache=False, progress=False)
    flat = with_head(small_convnet(), 256)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        features.extract(flat, dataset, pool="avg", cache=False, progress=False)


def test_resize_upsamples_batches_on_the_device():
    model = small_convnet()
    dataset = tensor_dataset(n=5, size=8)
    got, _ = features.extract(model, dataset, resize=32, cache=False, progress=False)
    upsampled = F.interpolate(
        dataset.tensors[0], size=(32, 32), mode="bilinear", align_corners=False
    )
    with torch.no_grad():
        expected = model(upsampled)
    assert got.shape == (5, 16, 8, 8)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    rect, _ = features.extract(model, dataset, resize=(16, 24), cache=False, progress=False)
    assert rect.shape == (5, 16, 4, 6)


def test_dataloader_is_used_as_given_and_dict_outputs_are_unwrapped():
    trunk = small_convnet()
    dataset = tensor_dataset(n=7)

    class DictOutput(nn.Module):  # what create_feature_extractor returns
        def __init__(self):
            super().__init__()
            self.trunk = trunk

        def forward(self, x):
            return {"layer": self.trunk(x)}

    loader = DataLoader(dataset, batch_size=3)
    got, labels = features.extract(DictOutput().eval(), loader, cache=False, progress=False)
    expected, expected_labels = plain_loop(trunk, dataset, batch_size=3)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(labels, expected_labels)


def test_bad_inputs_have_clear_errors():
    model = small_convnet()
    with pytest.raises(TypeError, match="TensorDataset"):
        features.extract(model, TensorDataset(torch.randn(4, 3, 8, 8)), progress=False)
    with pytest.raises(ValueError, match="empty"):
        features.extract(model, tensor_dataset(n=0), progress=False)
    with pytest.raises(ValueError, match="resize"):
        features.extract(model, tensor_dataset(), resize=0, progress=False)
    with pytest.raises(TypeError, match="nn.Module"):
        features.extract(lambda x: x, tensor_dataset(), progress=False)


# ---------------------------------------------------------------------------------------------
# Side effects on the model, output tensors
# ---------------------------------------------------------------------------------------------


def test_model_mode_memory_format_and_parameters_are_left_as_they_were():
    model = small_convnet()
    model.train()  # extract must not call eval() (the course teaches it) ...
    model[0].eval()  # ... nor train(): a mixed state survives untouched
    params_before = {name: p for name, p in model.named_parameters()}
    values_before = {name: p.detach().clone() for name, p in model.named_parameters()}
    features.extract(model, tensor_dataset(), cache=False, progress=False)
    assert [m.training for m in model.modules()] == [True, False] + [True] * 6
    for name, param in model.named_parameters():
        assert param is params_before[name]
        assert param.is_contiguous()  # channels_last was undone
        assert torch.equal(param, values_before[name])


def test_train_mode_dropout_gives_random_features_every_call():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(1), nn.Linear(3 * 16 * 16, 32), nn.Dropout(0.5))
    dataset = tensor_dataset(n=6)
    first, _ = features.extract(model, dataset, progress=False)  # train mode (default)
    second, _ = features.extract(model, dataset, progress=False)
    assert not torch.equal(first, second)  # neither the cache nor extract hid the dropout
    model.eval()
    third, _ = features.extract(model, dataset, progress=False)
    fourth, _ = features.extract(model, dataset, progress=False)
    assert torch.equal(third, fourth)


def test_features_are_ordinary_tensors_a_head_can_be_trained_on():
    got, labels = features.extract(
        with_head(small_convnet(), 256), tensor_dataset(), cache=False, progress=False
    )
    assert not got.is_inference() and not labels.is_inference()
    head = nn.Linear(10, 5)
    loss = F.cross_entropy(head(got), labels % 5)
    loss.backward()  # would raise for inference tensors
    assert head.weight.grad is not None


# ---------------------------------------------------------------------------------------------
# Progress output
# ---------------------------------------------------------------------------------------------


def test_progress_false_writes_nothing_and_progress_true_draws_a_bar(capfd, tmp_path):
    root = write_images(tmp_path / "images")
    dataset = datasets.ImageFolder(root, transform=image_transform())
    model = small_convnet()
    features.extract(model, dataset, batch_size=2, progress=False)  # miss: computes, stores
    features.extract(model, dataset, batch_size=2, progress=False)  # hit
    silent = capfd.readouterr()
    assert silent.out == "" and silent.err == ""
    features.extract(model, dataset, batch_size=2, cache=False, desc="scene15")
    loud = capfd.readouterr()
    assert "scene15" in loud.err and "9/9" in loud.err


# ---------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------


def test_default_num_workers_follows_the_measured_rule(monkeypatch, tmp_path):
    root = write_images(tmp_path / "images", per_class=30)
    folder = datasets.ImageFolder(root, transform=image_transform())
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    _set_cores(monkeypatch, 2)
    assert features.default_num_workers(folder, 8, cpu) == 0  # 2 cores: workers slow us down
    assert features.default_num_workers(folder, 8, cuda) == 1
    _set_cores(monkeypatch, 16)
    assert features.default_num_workers(folder, 8, cpu) == 4
    assert features.default_num_workers(folder, 8, cuda) == 8
    assert features.default_num_workers(folder, 64, cuda) == 0  # at most 2 batches
    assert features.default_num_workers(tensor_dataset(n=500), 8, cuda) == 0
    monkeypatch.setattr(_runtime.multiprocessing, "get_start_method", lambda **_: "spawn")
    assert features.default_num_workers(folder, 8, cuda) == 0  # spawning costs seconds
    big = datasets.ImageFolder(root, transform=image_transform())
    big.samples = big.samples * 20  # 1,800 items
    assert features.default_num_workers(big, 8, cuda) == 4
    big.transform = lambda image: image  # a lambda cannot be pickled for spawned workers
    assert features.default_num_workers(big, 8, cuda) == 0


def test_workers_and_decode_threads_give_the_same_features(tmp_path, monkeypatch):
    root = write_images(tmp_path / "images", per_class=5)
    dataset = Subset(datasets.ImageFolder(root, transform=image_transform()), range(14, -1, -1))
    model = small_convnet()
    _set_cores(monkeypatch, 2)
    assert features.default_num_workers(dataset, 4, torch.device("cpu")) == 0
    assert features.default_decode_threads(dataset, 4) == 2  # the default path on 2 cores
    plain = ListDataset(torch.zeros(15, 3, 4, 4), [0] * 15)
    assert features.default_decode_threads(plain, 4) == 0  # unknown: may not be thread-safe

    class Declared(ListDataset):
        thread_safe = True

    assert features.default_decode_threads(Declared(plain.images, plain.labels), 4) == 2

    def run(**kwargs):
        return features.extract(model, dataset, batch_size=4, cache=False, progress=False, **kwargs)

    serial, serial_labels = run(num_workers=0)  # one item after the other
    threaded, threaded_labels = run()  # 2 decode threads between forward passes
    parallel, parallel_labels = run(num_workers=2)  # 2 worker processes
    assert serial_labels.tolist() == [2] * 5 + [1] * 5 + [0] * 5
    for got, labels in ((threaded, threaded_labels), (parallel, parallel_labels)):
        assert torch.equal(got, serial) and torch.equal(labels, serial_labels)


def test_decode_threads_keep_their_tensor_ops_on_one_thread(monkeypatch):
    _set_cores(monkeypatch, 2)
    main_threads = torch.get_num_threads()
    seen = []

    class Recording(ListDataset):
        thread_safe = True

        def __getitem__(self, index):
            seen.append(torch.get_num_threads())  # what a Normalize here would run on
            return super().__getitem__(index)

    data = Recording(torch.randn(12, 3, 8, 8), list(range(12)))
    features.extract(small_convnet(), data, batch_size=4, cache=False, progress=False)
    assert len(seen) == 12 and set(seen) == {1}
    assert torch.get_num_threads() == main_threads  # the model's threads are left alone


def test_resolve_amp_defaults_to_float32_everywhere():
    cpu, cuda, mps = torch.device("cpu"), torch.device("cuda"), torch.device("mps")
    for device in (cpu, cuda, mps):
        assert features.resolve_amp(None, device) is None
        assert features.resolve_amp(False, device) is None
    assert features.resolve_amp(True, cpu) is torch.bfloat16
    assert features.resolve_amp(True, mps) is torch.float16
    assert features.resolve_amp("fp16", cpu) is torch.float16
    assert features.resolve_amp(torch.bfloat16, cpu) is torch.bfloat16
    with pytest.raises(ValueError):
        features.resolve_amp("int8", cpu)
    with pytest.raises(ValueError):
        features.resolve_amp(torch.float64, cpu)


def test_bf16_autocast_on_cpu_is_close_to_float32_and_returned_as_float32():
    model = with_head(small_convnet(batchnorm=False), 256)
    dataset = tensor_dataset(n=8)
    exact, _ = features.extract(model, dataset, cache=False, progress=False)
    mixed, _ = features.extract(model, dataset, amp=True, cache=False, progress=False)
    assert mixed.dtype == torch.float32
    assert not torch.equal(mixed, exact)  # autocast really ran in bfloat16
    relative = (mixed - exact).abs().max() / exact.abs().max()
    assert relative < 0.05
