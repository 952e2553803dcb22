import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from PIL import Image

from featurelab import plots


def test_predicted_labels_reference_thresholds_logits_at_zero():
    from autograder.checks.references import predicted_labels

    assert predicted_labels(torch.tensor([[-0.1], [0.1], [2.0]])).tolist() == [0, 1, 1]
    assert predicted_labels(torch.tensor([[0.1, 0.9], [3.0, -1.0]])).tolist() == [1, 0]


def test_the_package_answers_no_graded_exercise():
    """The helpers that answered exercises (issue 10) are gone from the student package."""
    import featurelab
    from featurelab import backbones, metrics

    for module, name in [
        (backbones, "count_parameters"),
        (backbones, "cut"),
        (backbones, "ResNetTrunk"),
        (metrics, "cluster_accuracy"),
        (metrics, "clustering_report"),
    ]:
        assert not hasattr(module, name), name
    with pytest.raises(AttributeError):
        featurelab.train  # noqa: B018


def test_show_images_accepts_tensors_and_pil_and_unnormalises():
    images = torch.rand(5, 3, 16, 16)
    normalised = (images - torch.tensor(plots.IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(
        plots.IMAGENET_STD
    ).view(1, 3, 1, 1)
    fig = plots.show_images(
        normalised,
        titles=list("abcde"),
        mean=plots.IMAGENET_MEAN,
        std=plots.IMAGENET_STD,
        show=False,
    )
    shown = fig.axes[0].images[0].get_array()
    np.testing.assert_allclose(shown, images[0].permute(1, 2, 0).numpy(), atol=1e-5)
    assert [ax.get_title() for ax in fig.axes[:5]] == list("abcde")
    pil = [Image.new("L", (10, 12)), Image.new("RGB", (8, 8), (255, 0, 0))]
    assert plots.show_images(pil, show=False) is not None
    with pytest.raises(ValueError, match="titles"):
        plots.show_images(pil, titles=["one"], show=False)


def test_feature_maps_history_confusion_embedding():
    maps = torch.zeros(10, 4, 4)
    maps[7] += 5.0
    fig = plots.show_feature_maps(maps, max_maps=3, order="activation", show=False)
    assert fig.axes[0].get_title() == "7"
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        plots.show_feature_maps(torch.zeros(4, 4), show=False)
    history = {"loss": [1.0, 0.5], "val_loss": [1.1, 0.7], "acc": [0.5, 0.8], "val_acc": []}
    fig = plots.plot_history(history, show=False)
    assert len(fig.axes) == 2
    fig = plots.plot_confusion_matrix(np.array([[3, 1], [0, 4]]), ["cat", "dog"], show=False)
    assert fig.axes[0].get_xlabel() == "predicted"
    features = torch.randn(30, 6)
    labels = torch.arange(30) % 3
    assert plots.plot_embedding_2d(features, labels, show=False) is not None


def test_many_feature_maps_are_one_mosaic_image_scaled_per_map(monkeypatch):
    import matplotlib.pyplot as plt

    maps = torch.rand(512, 7, 7, generator=torch.Generator().manual_seed(0))
    maps[1] += 1000.0  # a constant offset: must not flatten map 0 or any other
    maps[2] = 3.0  # a constant map
    fig = plots.show_feature_maps(maps, max_maps=512, ncols=32, show=False)
    assert isinstance(fig, matplotlib.figure.Figure)
    assert len(fig.axes) == 1 and len(fig.axes[0].images) == 1
    shown = np.ma.filled(fig.axes[0].images[0].get_array().astype(float), np.nan)
    assert shown.shape == (16 * 8 - 1, 32 * 8 - 1)  # 16 rows x 32 columns of 7x7 + 1px border
    assert np.isnan(shown[7, :]).all() and np.isnan(shown[:, 7]).all()  # the borders are blank
    for channel in (0, 1, 3, 511):
        row, col = divmod(channel, 32)
        tile = shown[row * 8 : row * 8 + 7, col * 8 : col * 8 + 7]
        m = maps[channel].double()
        expected = ((m - m.min()) / (m.max() - m.min())).numpy()
        np.testing.assert_allclose(tile, expected, atol=1e-5)
        assert tile.min() == 0.0 and tile.max() == pytest.approx(1.0)
    np.testing.assert_array_equal(shown[0:7, 16:23], 0.0)  # map 2 is constant
    plt.close(fig)

    # the default ncols=8 layout, an unfilled last row, and show=True returning None
    fig = plots.show_feature_maps(maps[:100], max_maps=100, show=False)
    assert len(fig.axes) == 1
    shown = np.ma.filled(fig.axes[0].images[0].get_array().astype(float), np.nan)
    assert shown.shape == (13 * 8 - 1, 8 * 8 - 1)
    assert np.isnan(shown[12 * 8 :, 4 * 8 :]).all()  # cells 100..103 are empty
    plt.close(fig)
    assert plots.show_feature_maps(maps, max_maps=512) is None
    plt.close("all")

    # up to MOSAIC_ABOVE maps: one titled panel per map, as before; mosaic= forces a mode
    monkeypatch.setattr(plots, "MOSAIC_ABOVE", 4)
    fig = plots.show_feature_maps(maps, max_maps=4, show=False)
    assert [ax.get_title() for ax in fig.axes] == ["0", "1", "2", "3"]
    assert len(plots.show_feature_maps(maps, max_maps=5, show=False).axes) == 1
    assert len(plots.show_feature_maps(maps, max_maps=5, mosaic=False, show=False).axes) == 5
    assert len(plots.show_feature_maps(maps, max_maps=3, mosaic=True, show=False).axes) == 1
    plt.close("all")
