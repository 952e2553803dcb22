"""How :func:`featurelab.features.extract` reads a dataset: the batches it feeds the model
(a ``TensorDataset`` sliced, items decoded by threads, or a ``DataLoader``) and their resizing
on the device."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data._utils.collate import default_collate

from ._runtime import _is_tensor_dataset, _single_threaded_torch


def _split_batch(batch: Any) -> tuple[torch.Tensor, Any]:
    if isinstance(batch, (list, tuple)) and len(batch) == 2:
        return batch[0], batch[1]
    raise TypeError(
        "extract needs a dataset whose items are (image, label) pairs; got a batch of type "
        f"{type(batch).__name__}. Wrap bare image tensors as TensorDataset(images, labels)."
    )


def _tensor_batches(dataset: TensorDataset, batch_size: int) -> Iterator[tuple[Any, Any]]:
    if len(dataset.tensors) != 2:
        raise TypeError(
            f"extract needs a TensorDataset(images, labels), this one holds "
            f"{len(dataset.tensors)} tensor(s)"
        )
    images, labels = dataset.tensors
    for start in range(0, len(images), batch_size):
        yield images[start : start + batch_size], labels[start : start + batch_size]


def _threaded_batches(dataset: Any, batch_size: int, threads: int) -> Iterator[Any]:
    """Batches decoded by ``threads`` threads *between* forward passes, never during one.

    PIL decoding and resizing and the tensor ops of the transforms release the GIL, so the
    items of one batch decode in parallel on all cores; the pool is idle while the model
    computes, so it never competes with the intra-op threads (see the module docstring of
    :mod:`featurelab.features`).
    """
    size = len(dataset)
    with ThreadPoolExecutor(
        max_workers=threads,
        thread_name_prefix="featurelab-decode",
        initializer=_single_threaded_torch,
    ) as pool:
        for start in range(0, size, batch_size):
            indices = range(start, min(size, start + batch_size))
            yield default_collate(list(pool.map(dataset.__getitem__, indices)))


def _batches(
    dataset: Any,
    *,
    loader_given: bool,
    batch_size: int,
    device: torch.device,
    workers: int,
    decode_threads: int,
) -> Iterable[Any]:
    """The batches of ``dataset`` in order: a given ``DataLoader`` as it is, a
    ``TensorDataset`` sliced, items decoded by ``decode_threads`` threads (more than 1), else
    a ``DataLoader`` with ``workers`` workers (pinned memory on CUDA)."""
    if loader_given:
        return dataset
    if _is_tensor_dataset(dataset):
        return _tensor_batches(dataset, batch_size)
    if decode_threads > 1:
        return _threaded_batches(dataset, batch_size, decode_threads)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
        prefetch_factor=4 if workers else None,
    )


def _resized(images: torch.Tensor, resize: tuple[int, int] | None) -> torch.Tensor:
    """``images`` ``(B, C, H, W)`` resized to ``(B, C, *resize)`` (bilinear, antialiased only
    when shrinking); unchanged when ``resize`` is None or already their size."""
    if resize is None or tuple(images.shape[-2:]) == resize:
        return images
    shrinking = resize[0] < images.shape[-2] or resize[1] < images.shape[-1]
    return F.interpolate(
        images.float(), size=resize, mode="bilinear", align_corners=False, antialias=shrinking
    )
