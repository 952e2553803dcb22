"""The loaders on real images (../shared/realdata); skipped, with the reason, when absent."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from featurelab import data

pytestmark = pytest.mark.realdata


@pytest.fixture
def full_profile(monkeypatch):
    monkeypatch.delenv("FEATURELAB_PROFILE", raising=False)
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)


def real_folder(realdata_dir, name):
    folder = realdata_dir / name
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    return folder


def test_scene15_has_the_standard_split_and_loads_as_rgb(realdata_dir, full_profile, tmp_path):
    folder = real_folder(realdata_dir, "scene15")
    # The registry's structure check (exact per-class counts) accepts the real dataset.
    data.check_layout(data.REGISTRY["scene15"], data.list_files(folder), where=str(folder))
    train = data.load_scene15("train", root=folder)
    test = data.load_scene15("test", root=folder)
    assert (len(train), len(test)) == (1500, 2985)
    assert train.classes == test.classes == list(data.SCENE15_CLASSES)
    assert np.bincount(train.targets).tolist() == [100] * 15
    assert np.bincount(test.targets).tolist() == list(data.SCENE15_TEST_COUNTS.values())
    assert data.load_scene15("train", root=realdata_dir).samples == train.samples  # parent root
    for index in range(0, len(test), 299):
        image, label = test[index]
        pixels = np.asarray(image)
        assert image.mode == "RGB" and label == test.targets[index]
        assert np.array_equal(pixels[..., 0], pixels[..., 1])  # grey photos stay grey
    # The originals are single-channel JPEGs: a real photo saved as mode "L" loads as RGB.
    grey = tmp_path / "grey.jpg"
    with Image.open(train.samples[0][0]) as image:
        image.convert("L").save(grey, quality=90)
    loaded = data.load_rgb(grey)
    assert loaded.mode == "RGB" and np.asarray(loaded).shape[2] == 3


def test_scene15_grading_subset_feeds_a_dataloader(realdata_dir, full_profile):
    folder = real_folder(realdata_dir, "scene15")
    prep = transforms.Compose(
        [transforms.Resize(224), transforms.CenterCrop(224), transforms.ToTensor()]
    )
    subset = data.load_scene15("test", prep, profile="grading", root=folder)
    assert np.bincount(subset.targets).tolist() == [10] * 15
    loader = torch.utils.data.DataLoader(subset, batch_size=50, num_workers=2)
    shapes = [images.shape for images, _ in loader]
    assert shapes == [(50, 3, 224, 224)] * 3


def test_petimages_sample_splits_80_20_stratified(
    realdata_dir, full_profile, tmp_path, monkeypatch, capsys
):
    folder = real_folder(realdata_dir, "petimages_sample")
    monkeypatch.setenv("FEATURELAB_DATA", str(tmp_path))  # the scan manifest goes here
    before = sorted(p.name for p in folder.iterdir())
    train = data.load_petimages("train", root=folder)  # progress=True: the summary is shown
    test = data.load_petimages("test", root=folder, progress=False)
    assert "1,000 readable images" in capsys.readouterr().out
    assert train.classes == ["Cat", "Dog"] and train.skipped == test.skipped == 0
    assert np.bincount(train.targets).tolist() == [400, 400]
    assert np.bincount(test.targets).tolist() == [100, 100]
    assert not {p for p, _ in train.samples} & {p for p, _ in test.samples}
    assert all(train[i][0].mode == "RGB" for i in range(0, 800, 97))
    assert sorted(p.name for p in folder.iterdir()) == before  # nothing written into shared data
    assert len(list((tmp_path / "manifests").glob("PetImages-*.json"))) == 1
