"""Plots the notebooks show: image grids, feature-map grids, training curves, confusion
matrices and 2-D embeddings.

Every function draws one figure. By default it is shown (``plt.show()``) and ``None`` is
returned, so a plotting call at the end of a notebook cell displays the figure exactly once;
with ``show=False`` the :class:`matplotlib.figure.Figure` is returned instead (tests, saving).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _finish(fig: Figure, show: bool) -> Figure | None:
    fig.tight_layout()
    if show:
        plt.show()
        return None
    return fig


def _grid(n: int, ncols: int | None, cell: float) -> tuple[Figure, np.ndarray]:
    ncols = max(1, min(n, ncols or math.ceil(math.sqrt(n))))
    nrows = max(1, math.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(cell * ncols, cell * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    return fig, axes


def to_displayable(image, mean=None, std=None) -> np.ndarray:
    """An image as an ``(H, W, 3)`` or ``(H, W)`` float array in ``[0, 1]`` for ``imshow``.

    Accepts a PIL image, an ``(H, W[, C])`` array, or a ``(C, H, W)`` tensor; tensors
    normalised with ``mean``/``std`` (per channel) are un-normalised first.
    """
    if isinstance(image, torch.Tensor):
        array = image.detach().cpu().float()
        if array.ndim == 3 and array.shape[0] in (1, 3):
            if mean is not None and std is not None:
                m = torch.as_tensor(mean, dtype=array.dtype).view(-1, 1, 1)
                s = torch.as_tensor(std, dtype=array.dtype).view(-1, 1, 1)
                array = array * s + m
            array = array.permute(1, 2, 0)
        array = array.numpy()
    else:
        array = np.asarray(image)
        if array.dtype == np.uint8:
            array = array.astype(np.float32) / 255.0
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    return np.clip(array, 0.0, 1.0)


def show_images(
    images,
    titles: Sequence[str] | None = None,
    ncols: int | None = None,
    mean=None,
    std=None,
    title_colors: Sequence[str] | None = None,
    cell_size: float = 2.5,
    suptitle: str | None = None,
    show: bool = True,
) -> Figure | None:
    """A grid of images with optional titles.

    ``images``: a ``(N, C, H, W)`` tensor, or a sequence of PIL images / arrays / ``(C, H, W)``
    tensors. Pass ``mean`` and ``std`` (e.g. :data:`IMAGENET_MEAN`, :data:`IMAGENET_STD`) to
    show normalised tensors as the eye sees them. ``title_colors`` colours each title (e.g.
    green for right, red for wrong predictions).
    """
    items = list(images)
    if not items:
        raise ValueError("show_images needs at least one image")
    if titles is not None and len(titles) != len(items):
        raise ValueError(f"{len(titles)} titles for {len(items)} images")
    fig, axes = _grid(len(items), ncols, cell_size)
    for i, (ax, image) in enumerate(zip(axes.flat, items, strict=False)):
        array = to_displayable(image, mean, std)
        ax.imshow(array, cmap="gray" if array.ndim == 2 else None, vmin=0, vmax=1)
        if titles is not None:
            color = title_colors[i] if title_colors is not None else "black"
            ax.set_title(str(titles[i]), fontsize=9, color=color)
    if suptitle:
        fig.suptitle(suptitle)
    return _finish(fig, show)


# More feature maps than this are drawn as one mosaic image (see show_feature_maps): one
# matplotlib axis per map costs ~15 ms each, i.e. seconds for the 512 maps of a VGG/ResNet layer.
MOSAIC_ABOVE = 64
# The longer side of a mosaic figure, in inches, at most (the cells shrink to fit).
MOSAIC_MAX_INCHES = 16.0


def show_feature_maps(
    maps,
    max_maps: int = 64,
    ncols: int = 8,
    order: str = "index",
    cmap: str = "viridis",
    cell_size: float = 1.3,
    suptitle: str | None = None,
    show: bool = True,
    *,
    mosaic: bool | None = None,
) -> Figure | None:
    """Feature maps ``(C, H, W)`` (or ``(1, C, H, W)``) as a grid of ``min(C, max_maps)`` panels.

    ``order="index"`` shows channels 0, 1, ...; ``order="activation"`` shows the channels with
    the largest mean activation first. Each panel is scaled to its own min/max.

    ``mosaic``: ``None`` (default) draws one titled axis per map for up to
    :data:`MOSAIC_ABOVE` maps and, above that, tiles the maps row by row (``ncols`` per row,
    separated by a one-pixel blank border) into a single ``(rows * (H + 1) - 1,
    ncols * (W + 1) - 1)`` image drawn with one ``imshow``, each map still min/max-scaled on
    its own (a constant map shows as 0). Fast, but without channel numbers: read the tiles in
    ``order``. ``True``/``False`` force one mode.
    """
    tensor = torch.as_tensor(maps).detach().cpu().float()
    if tensor.ndim == 4 and tensor.shape[0] == 1:
        tensor = tensor[0]
    if tensor.ndim != 3:
        raise ValueError(f"feature maps must be (C, H, W), got shape {tuple(tensor.shape)}")
    if order == "activation":
        channels = torch.argsort(tensor.mean(dim=(1, 2)), descending=True)[:max_maps].tolist()
    elif order == "index":
        channels = list(range(min(max_maps, tensor.shape[0])))
    else:
        raise ValueError("order must be 'index' or 'activation'")
    if mosaic is None:
        mosaic = len(channels) > MOSAIC_ABOVE
    if mosaic:
        fig = _feature_mosaic(tensor[channels], ncols, cmap, cell_size)
    else:
        fig, axes = _grid(len(channels), ncols, cell_size)
        for ax, channel in zip(axes.flat, channels, strict=False):
            ax.imshow(tensor[channel].numpy(), cmap=cmap)
            ax.set_title(str(channel), fontsize=7)
    if suptitle:
        fig.suptitle(suptitle)
    return _finish(fig, show)


def _mosaic_array(maps: torch.Tensor, ncols: int, border: int = 1) -> np.ndarray:
    """Tile ``(N, H, W)`` maps row by row, ``ncols`` per row, into one float array.

    Each map is scaled to ``[0, 1]`` by its own min and max (a constant map becomes 0); the
    ``border`` pixels between tiles and the empty cells of the last row are NaN. Shape
    ``(rows * (H + border) - border, ncols * (W + border) - border)`` with
    ``rows = ceil(N / ncols)`` (``ncols`` is capped at ``N``).
    """
    n, height, width = maps.shape
    ncols = max(1, min(n, ncols))
    nrows = max(1, math.ceil(n / ncols))
    low = maps.amin(dim=(1, 2), keepdim=True)
    span = maps.amax(dim=(1, 2), keepdim=True) - low
    scaled = (maps - low) / torch.where(span > 0, span, torch.ones_like(span))
    tiles = torch.full((nrows * ncols, height + border, width + border), float("nan"))
    tiles[:n, :height, :width] = scaled
    grid = tiles.view(nrows, ncols, height + border, width + border).permute(0, 2, 1, 3)
    grid = grid.reshape(nrows * (height + border), ncols * (width + border))
    return grid[: grid.shape[0] - border, : grid.shape[1] - border].numpy()


def _feature_mosaic(maps: torch.Tensor, ncols: int, cmap: str, cell_size: float) -> Figure:
    image = _mosaic_array(maps, ncols)
    n = maps.shape[0]
    ncols = max(1, min(n, ncols))
    nrows = max(1, math.ceil(n / ncols))
    width, height = cell_size * ncols, cell_size * nrows
    shrink = min(1.0, MOSAIC_MAX_INCHES / max(width, height))
    fig, ax = plt.subplots(figsize=(max(width * shrink, 2.0), max(height * shrink, 2.0)))
    colormap = plt.get_cmap(cmap).with_extremes(bad="white")
    ax.imshow(image, cmap=colormap, vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.axis("off")
    return fig


def plot_history(history: Mapping[str, Sequence[float]], show: bool = True) -> Figure | None:
    """Loss and accuracy curves per epoch from a history dict.

    Keys ``loss``/``val_loss`` go to the left panel, ``acc``/``val_acc`` to the right one
    (missing keys are skipped): ``{"loss": [...], "val_loss": [...], "acc": [...], ...}``.
    """
    panels = [("loss", ("loss", "val_loss")), ("accuracy", ("acc", "val_acc"))]
    present = [(name, [k for k in keys if history.get(k)]) for name, keys in panels]
    present = [(name, keys) for name, keys in present if keys]
    if not present:
        raise ValueError(f"history has no loss/acc curves (keys: {sorted(history)})")
    fig, axes = plt.subplots(1, len(present), figsize=(5 * len(present), 3.5), squeeze=False)
    for ax, (name, keys) in zip(axes.flat, present, strict=False):
        for key in keys:
            values = list(history[key])
            ax.plot(range(1, len(values) + 1), values, marker="o", label=key)
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend()
    return _finish(fig, show)


def plot_confusion_matrix(
    matrix,
    class_names: Sequence[str] | None = None,
    normalize: bool = True,
    title: str | None = None,
    show: bool = True,
) -> Figure | None:
    """A ``(K, K)`` confusion matrix (rows: true class, columns: predicted) as a heat map.

    With ``normalize=True`` each row is divided by its total (per-class recall on the diagonal).
    """
    counts = np.asarray(matrix, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"confusion matrix must be square (K, K), got {counts.shape}")
    k = counts.shape[0]
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    if len(names) != k:
        raise ValueError(f"{len(names)} class names for a {k}x{k} matrix")
    values = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1) if normalize else counts
    size = max(4.0, 0.45 * k + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(values, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(k), names, rotation=90, fontsize=8)
    ax.set_yticks(range(k), names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 20:
        for i in range(k):
            for j in range(k):
                text = f"{values[i, j]:.2f}" if normalize else f"{int(values[i, j])}"
                color = "white" if values[i, j] > values.max() / 2 else "black"
                ax.text(j, i, text, ha="center", va="center", fontsize=6, color=color)
    if title:
        ax.set_title(title)
    return _finish(fig, show)


def plot_embedding_2d(
    features,
    labels,
    class_names: Sequence[str] | None = None,
    method: str = "pca",
    title: str | None = None,
    seed: int = 0,
    show: bool = True,
) -> Figure | None:
    """Scatter plot of ``(N, D)`` features projected to 2-D (``"pca"`` or ``"tsne"``),
    coloured by the ``(N,)`` integer ``labels``."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = np.asarray(torch.as_tensor(features).detach().cpu().float().flatten(1))
    y = np.asarray(torch.as_tensor(labels).detach().cpu())
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{x.shape[0]} feature rows for {y.shape[0]} labels")
    if method == "pca":
        points = PCA(n_components=2, random_state=seed).fit_transform(x)
    elif method == "tsne":
        perplexity = max(2.0, min(30.0, (x.shape[0] - 1) / 3))
        points = TSNE(2, perplexity=perplexity, random_state=seed, init="pca").fit_transform(x)
    else:
        raise ValueError("method must be 'pca' or 'tsne'")
    fig, ax = plt.subplots(figsize=(6, 5))
    cmap = plt.get_cmap("tab20" if len(np.unique(y)) > 10 else "tab10")
    for label in np.unique(y):
        mask = y == label
        name = class_names[label] if class_names is not None else str(label)
        ax.scatter(
            points[mask, 0], points[mask, 1], s=12, color=cmap(int(label) % cmap.N), label=name
        )
    ax.legend(fontsize=7, markerscale=1.5, loc="best", ncol=2 if len(np.unique(y)) > 8 else 1)
    ax.set_title(title or f"{method.upper()} of features {tuple(x.shape)}")
    return _finish(fig, show)
