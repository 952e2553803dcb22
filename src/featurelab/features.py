"""Batched feature extraction, fast on the machine at hand, with an on-disk cache.

.. code-block:: python

    from featurelab import backbones, data, features

    model, weights, _ = backbones.load_model("vgg16")          # already in eval mode
    extractor = ...  # your nn.Module (the TPs build them): (N, 3, 224, 224) -> (N, D)
    train = data.load_scene15("train", transform=weights.transforms())
    X_train, y_train = features.extract(extractor, train)      # (1500, D), (1500,)

    # CIFAR-10: decode the 32x32 images only, upsample whole batches to 224 on the device
    from torchvision.transforms import v2
    to_tensor = v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
                            v2.Normalize(mean=weights.transforms().mean, std=weights.transforms().std)])
    cifar = data.load_cifar10(train=False, transform=to_tensor)
    X, y = features.extract(extractor, cifar, resize=224)

What :func:`extract` does and does not do
-----------------------------------------
* **Train/eval mode: never touched.** ``extract`` runs the model in the mode it is in. The
  course teaches that ``model.eval()`` matters (dropout makes features random, batch norm in
  train mode uses batch statistics): call it yourself (``backbones.load_model`` and
  returns an eval-mode model). A model with any submodule in training mode
  is never served from, nor written to, the cache: its features are recomputed every call.
* **No lasting side effects on the model.** It is moved to ``device`` and its 4-D weights
  converted to ``channels_last`` for the run, then moved and converted back (the same
  ``Parameter`` objects, so optimisers keep working). ``torch.inference_mode``: no graph.
* **Speed.** ``channels_last`` weights (CPU, random weights, batch 32: 1.4x resnet18, 1.9x
  mobilenet_v3_large, 1.2-1.4x VGG16 on the course machine), pinned memory and
  ``non_blocking`` copies on CUDA, DataLoader workers sized to the machine (below),
  ``resize`` done on whole batches on the device, features written into one preallocated
  ``(N, *D)`` tensor (no ``torch.cat`` copy). ``bench/RESULTS.md`` has the numbers.
* **Loading** (``num_workers=None``). On a CPU device, decoding competes with the model for
  the same cores. Measured on 2 cores: one DataLoader worker decoding *while* the model's 2
  OpenMP threads run makes extraction 1.2x (mobilenet_v3_large) to 4.7x (resnet18) *slower*
  than decoding in the main process between forward passes (the OpenMP threads wait at
  every barrier for the one the worker preempted). So: CPU with <= 4 cores -> 0 workers, and
  the items of each batch are decoded *between* forward passes by one thread per core
  (:func:`default_decode_threads`; datasets known to be thread-safe only), each thread's own
  tensor ops kept to one OpenMP thread: measured on 2 cores with real JPEGs, 1.4-1.5x the
  data throughput of one-by-one loading and 1.05-1.12x end to end (mobilenet_v3_large,
  resnet18). Decode + transform cost 1-3 ms per image here, 5-30 % of a forward pass. More
  cores -> ``min(4, cores // 4)`` workers and the intra-op threads lowered by as many for
  the run (a heuristic, not measured here; restored after). CUDA/MPS (the model does not
  need the CPU) -> ``min(8, cores - 1)`` workers. Always 0 for a ``TensorDataset`` (sliced
  directly, no DataLoader) or a dataset of at most 2 batches. Where workers are spawned
  rather than forked (macOS, Windows, Python >= 3.14): 0 below 1,000 items or when the
  dataset cannot be pickled (a class defined in the notebook), else at most 4. Persistent
  workers off (nothing stays alive between calls), prefetch factor 4.
* **Batch norm folded** (``fold_batchnorm=True``). When the model has batch-norm layers, all in
  eval mode, and the dataset holds more than 2 batches, ``extract`` runs a *copy* of the model
  in which each ``BatchNorm`` that follows a convolution (or linear layer) is folded into that
  layer's weights (:func:`batchnorm_folded`, ``torch.fx`` conv-BN fusion): the same function,
  one pass over memory instead of two. Measured on 2 CPU cores, batch 32, channels_last:
  mobilenet_v3_large 1.8x (84 -> 154 images/s), resnet18 1.14x; results differ from the
  unfolded model by float rounding only (max 1e-5 of the largest feature). Nothing is
  folded (the model itself runs) when a module has hooks (they would no longer fire as
  written), when a batch norm is in train mode, or when the model cannot be traced
  (data-dependent control flow); the original model is never modified.
* **Precision** (``amp``). ``None`` (default) and ``False``: float32 on every device, so the
  features equal those of a plain ``model(images)`` loop wherever the notebook runs (a
  visible test comparing with ``model(x)`` must not fail only on a student's GPU; measured
  here: max difference 2e-6 to 2e-5 of the largest feature). ``True``: autocast, bfloat16 on
  CPU and on CUDA GPUs that support it, float16 on older GPUs (Colab's T4) and MPS; or name
  the dtype (``torch.bfloat16``, ``"fp16"`` ...). On this CPU (AVX512-BF16) bfloat16 runs
  1.7-2x faster, with relative L2 errors of 0.8 % (VGG16 relu7), 3 % (resnet18 layer4) and
  8-13 % (mobilenet_v3_large features), random weights. Features are returned as float32.
* **Progress.** A tqdm bar (``tqdm.auto``: a widget in Jupyter, stderr in a terminal) when
  ``progress=True``; ``progress=False`` writes nothing at all (use it in nbgrader test cells:
  a cell that writes to stderr scores 0).

The cache (``featurelab.cache``)
--------------------------------
``cache=None`` (default) or ``True``: the default folder (``$FEATURELAB_CACHE``, else
``featurelab.data.data_root() / "cache"``); ``cache=False``: off; a path: that folder.
``FEATURELAB_CACHE=off`` disables it everywhere. ``$FEATURELAB_SHARED_CACHE`` (optional) names
a read-only cache folder looked up first (never written; a bad entry there is a miss); new
entries go to the read-write folder only, and a read-write folder that cannot be written
costs one warning, not an error. A hit is reported ("N rows from the feature cache") through
the ``featurelab`` logger when ``progress=True``. The key (:mod:`featurelab.fingerprint`)
fingerprints what the module
computes (weights and function, not its name: a hand-written ``VGG16relu7`` equal to
an ``nn.Sequential`` of the same layers shares its entry), the data (file list, labels,
sizes, mtimes, transform), the device type, autocast dtype, ``resize``, ``pool`` and the
torch/torchvision versions. Batch size, workers, ``channels_last`` and batch-norm folding are
not in the key (they change results only by float rounding, ~1e-6 to 1e-5). A cache hit
costs hashing the weights, one 1-image forward pass (the probe of the module fingerprint;
remembered per model object, so skipped when the same unchanged model extracts again),
reading three dataset items and the checksummed file. Measured on 2 CPU cores: VGG16
(138 M parameters) 0.35-0.4 s with a new model object, 0.16 s with the same one; resnet18
and mobilenet_v3_large 0.03-0.07 s. See :mod:`featurelab.cache` for the format and folders.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, SequentialSampler
from torch.utils.data._utils.collate import default_collate

from . import cache as _cache
from . import fingerprint as _fingerprint
from ._batches import _batches, _resized, _split_batch
from ._log import get_logger, report
from ._runtime import (
    _autocast,
    _channels_last,
    _intra_op_threads,
    _is_tensor_dataset,
    _loading_plan,
    _on_device,
    _pick_device,
    _resize_size,
    batchnorm_folded,
    default_decode_threads,
    default_num_workers,
    resolve_amp,
)
from .cache import cache_info, clear_cache
from .device import auto_device
from .fingerprint import fingerprint_dataset, fingerprint_module

log = get_logger(__name__)

__all__ = [
    "extract",
    "auto_device",
    "fingerprint_module",
    "fingerprint_dataset",
    "cache_info",
    "clear_cache",
    "default_num_workers",
    "default_decode_threads",
    "batchnorm_folded",
    "resolve_amp",
]

_POOLS = ("avg", "max")


# ---------------------------------------------------------------------------------------------
# Model outputs, input shape, progress bar
# ---------------------------------------------------------------------------------------------


def _single_output(output: Any) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict) and len(output) == 1:
        return _single_output(next(iter(output.values())))
    if isinstance(output, (list, tuple)) and len(output) == 1:
        return _single_output(output[0])
    raise TypeError(
        f"the model returned {type(output).__name__} "
        f"{'with keys ' + str(list(output)) if isinstance(output, dict) else ''}; extract "
        "needs one tensor (e.g. create_feature_extractor(model, return_nodes=['layer4']))"
    )


def _pool(features: torch.Tensor, pool: str | None) -> torch.Tensor:
    if pool is None:
        return features
    if features.dim() != 4:
        raise ValueError(
            f"pool={pool!r} needs (N, C, H, W) feature maps; the model returned "
            f"{tuple(features.shape)}"
        )
    return features.mean(dim=(2, 3)) if pool == "avg" else features.amax(dim=(2, 3))


def _input_shape(item: Any, resize: tuple[int, int] | None) -> tuple[int, ...]:
    """The per-example input shape ``(C, H, W)`` the model sees, from one dataset item."""
    image = _split_batch(item)[0]
    if not isinstance(image, torch.Tensor):
        raise TypeError(
            f"the dataset yields images of type {type(image).__name__}; give it a transform "
            "that returns tensors, e.g. weights.transforms()"
        )
    shape = tuple(image.shape)
    if resize is not None and len(shape) == 3:
        shape = (shape[0], *resize)
    return shape


def _progress_bar(progress: bool, total: int | None, desc: str | None):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc or "features", unit="img", dynamic_ncols=True)


# ---------------------------------------------------------------------------------------------
# extract
# ---------------------------------------------------------------------------------------------


def extract(
    model: nn.Module,
    dataset: Dataset | DataLoader,
    *,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    num_workers: int | None = None,
    amp: bool | str | torch.dtype | None = None,
    channels_last: bool = True,
    fold_batchnorm: bool = True,
    resize: int | tuple[int, int] | None = None,
    pool: str | None = None,
    cache: bool | str | os.PathLike | None = None,
    desc: str | None = None,
    progress: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``model`` over ``dataset`` and return ``(features, labels)``.

    ``features``: ``(N, *D)`` float32 on CPU, the model's output per example (e.g.
    ``(N, 4096)`` for VGG16 relu7, ``(N, 512, 7, 7)`` for ResNet-18 layer4, ``(N, 512)`` with
    ``pool="avg"``); ``labels``: ``(N,)`` int64, in dataset order.

    ``dataset``: a map-style dataset of ``(image (C, H, W) tensor, label)`` pairs, a
    ``TensorDataset(images (N, C, H, W), labels (N,))``, or a ``DataLoader`` (used as it is:
    ``batch_size`` and ``num_workers`` are then ignored; cached only when it reads the
    dataset in order). ``model``: any module taking ``(B, C, H, W)`` and returning a tensor
    (or a one-entry dict, as ``create_feature_extractor`` does). Its train/eval mode is left
    as it is (see the module docstring: call ``model.eval()`` first).

    ``device``: None -> the model's device if it is not the CPU, else
    :func:`featurelab.device.auto_device` (cuda, mps, cpu). ``num_workers``: None -> see
    :func:`default_num_workers`. ``amp``: see :func:`resolve_amp`. ``channels_last``: run
    conv nets in NHWC memory layout (faster on CPU and tensor-core GPUs). ``fold_batchnorm``:
    run a copy with batch norms folded into the preceding layers when the dataset holds more
    than 2 batches (see :func:`batchnorm_folded`; ``False``: the model as it is).
    ``resize``: an int or ``(H, W)``: resize each batch on the device before the model
    (bilinear; antialiased only when shrinking), e.g. ``resize=224`` for 32x32 CIFAR-10
    images normalised but not resized by their transform. ``pool``: ``"avg"`` or ``"max"``: global pooling of
    ``(N, C, H, W)`` outputs to ``(N, C)`` before storage. ``cache``: None/True (default
    folder), False (off) or a folder (see the module docstring). ``desc``: progress bar
    label. ``progress=False``: nothing is written to stdout or stderr.
    """
    _check_args(model, batch_size, pool)
    resize_hw = _resize_size(resize)
    loader_given = isinstance(dataset, DataLoader)
    data = dataset.dataset if loader_given else dataset
    total = _length(data)
    target = _pick_device(model, device)
    amp_dtype = resolve_amp(amp, target)

    cache_dir, shared_dir = _cache_dirs(cache)
    if (cache_dir or shared_dir) and not _cacheable(model, dataset, loader_given, total):
        cache_dir = shared_dir = None

    workers, threads, decode_threads = (
        (0, None, 0)
        if loader_given or _is_tensor_dataset(data)
        else _loading_plan(data, batch_size, target, num_workers)
    )

    with _on_device(model, target):
        key = None
        if cache_dir is not None or shared_dir is not None:
            key = _cache_key(model, data, target, amp_dtype, resize_hw, pool)
            # The shared (read-only) cache first, then the read-write one.
            hit = _cache_hit(key, [shared_dir, cache_dir], desc, progress)
            if hit is not None:
                return hit
        runner = model
        if fold_batchnorm and (total is None or total > 2 * batch_size):
            runner = batchnorm_folded(model)  # a copy, or the model itself
        with _channels_last(runner, channels_last and target.type in ("cpu", "cuda")):
            with _intra_op_threads(threads):
                features, labels = _run(
                    runner,
                    dataset,
                    loader_given=loader_given,
                    total=total,
                    batch_size=batch_size,
                    device=target,
                    workers=workers,
                    decode_threads=decode_threads,
                    amp_dtype=amp_dtype,
                    resize=resize_hw,
                    pool=pool,
                    desc=desc,
                    progress=progress,
                )
    if key is not None and cache_dir is not None:
        info = _entry_info(model, data, len(features), target, amp_dtype, resize_hw, pool)
        _cache.store(cache_dir, key, features, labels, info)
    return features, labels


def _check_args(model: nn.Module, batch_size: int, pool: str | None) -> None:
    """Raise on a ``model`` that is not a module, a bad ``batch_size`` or an unknown ``pool``."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, not {type(model).__name__}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, not {batch_size!r}")
    if pool not in (None, *_POOLS):
        raise ValueError(f"pool must be None, 'avg' or 'max', not {pool!r}")


def _length(data: Any) -> int | None:
    """``len(data)``, None for a dataset without a length; error if it is empty."""
    try:
        total: int | None = len(data)
    except TypeError:
        total = None
    if total == 0:
        raise ValueError("the dataset is empty: nothing to extract")
    return total


def _cache_dirs(cache: bool | str | os.PathLike | None) -> tuple[Path | None, Path | None]:
    """``(read-write cache folder, read-only shared cache folder)``, each None when off.

    ``cache=False`` or ``$FEATURELAB_CACHE=off``: no cache at all. Otherwise the read-write
    folder is ``cache`` (a path) or the default one, and the shared folder is
    ``$FEATURELAB_SHARED_CACHE`` (see :mod:`featurelab.cache`).
    """
    if cache is False:
        return None, None
    if cache is None or cache is True:
        if _cache.cache_disabled_by_env():
            return None, None
        return _cache.default_cache_dir(), _cache.shared_cache_dir()
    if isinstance(cache, (str, os.PathLike)):
        return Path(cache).expanduser().absolute(), _cache.shared_cache_dir()
    raise TypeError(f"cache must be None, a bool or a folder path, not {cache!r}")


def _cacheable(model: nn.Module, dataset: Any, loader_given: bool, total: int | None) -> bool:
    if total is None or _fingerprint.is_training(model):
        return False
    if loader_given:
        return (
            isinstance(dataset.sampler, SequentialSampler)
            and not dataset.drop_last
            and dataset.collate_fn is default_collate
        )
    return True


def _cache_key(
    model: nn.Module,
    dataset: Any,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    resize: tuple[int, int] | None,
    pool: str | None,
) -> str | None:
    data_fingerprint, first = _fingerprint.dataset_fingerprint_and_first_item(dataset)
    if data_fingerprint is None:
        return None
    input_shape = _input_shape(first, resize)
    return _fingerprint.make_key(
        {
            "model": fingerprint_module(model, input_shape),
            "data": data_fingerprint,
            "device": device.type,
            "amp": str(amp_dtype) if amp_dtype else None,
            "resize": list(resize) if resize else None,
            "pool": pool,
        }
    )


def _cache_hit(
    key: str | None, folders: list[Path | None], desc: str | None, progress: bool
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(features, labels)`` stored under ``key`` in the first of ``folders`` that holds
    it, the hit reported through the logger; None on a miss."""
    hit = None if key is None else _cache.lookup(key, folders)
    if hit is None:
        return None
    what = desc or "features"
    report(log, "%s: %d rows from the feature cache", what, len(hit[0]), progress=progress)
    return hit[0], hit[1]


def _entry_info(
    model: nn.Module,
    data: Any,
    rows: int,
    device: torch.device,
    amp_dtype: torch.dtype | None,
    resize: tuple[int, int] | None,
    pool: str | None,
) -> dict[str, Any]:
    """What a new cache entry records about its run (shown by :func:`cache_info`; not the key)."""
    return {
        "model": type(model).__name__,
        "dataset": type(data).__name__,
        "n": rows,
        "device": device.type,
        "amp": str(amp_dtype) if amp_dtype else None,
        "resize": list(resize) if resize else None,
        "pool": pool,
    }


def _run(
    model: nn.Module,
    dataset: Any,
    *,
    loader_given: bool,
    total: int | None,
    batch_size: int,
    device: torch.device,
    workers: int,
    decode_threads: int,
    amp_dtype: torch.dtype | None,
    resize: tuple[int, int] | None,
    pool: str | None,
    desc: str | None,
    progress: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``model`` over every batch: ``(features (N, *D) float32 on CPU, labels (N,))``."""
    batches = _batches(
        dataset,
        loader_given=loader_given,
        batch_size=batch_size,
        device=device,
        workers=workers,
        decode_threads=decode_threads,
    )
    non_blocking = device.type == "cuda"
    autocast = _autocast(device, amp_dtype)
    bar = _progress_bar(progress, total, desc)
    features: torch.Tensor | None = None
    feature_chunks: list[torch.Tensor] = []
    label_chunks: list[torch.Tensor] = []
    done = 0
    try:
        with torch.inference_mode():
            for batch in batches:
                images, labels = _split_batch(batch)
                images = _resized(images.to(device, non_blocking=non_blocking), resize)
                with autocast:
                    output = _single_output(model(images))
                output = _pool(output.float(), pool)
                count = len(output)
                if total is not None:
                    if features is None:  # a normal tensor, not an inference tensor: the
                        with torch.inference_mode(False):  # caller may train a head on it
                            features = torch.empty((total, *output.shape[1:]))
                    features[done : done + count].copy_(output)
                else:
                    feature_chunks.append(output.cpu())
                label_chunks.append(torch.as_tensor(labels).reshape(-1).cpu())
                done += count
                if bar is not None:
                    bar.update(count)
    finally:
        if bar is not None:
            bar.close()
    return _assembled(features, feature_chunks, label_chunks, total, done)


def _assembled(
    features: torch.Tensor | None,
    feature_chunks: list[torch.Tensor],
    label_chunks: list[torch.Tensor],
    total: int | None,
    done: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``(features, labels)`` of a run: the preallocated rows actually filled (``done`` of
    ``total``), or the chunks joined when the length was unknown; integer labels as int64."""
    if total is None:
        features = torch.cat(feature_chunks)
    elif done != total:
        features = features[:done] if features is not None else torch.empty(0)
    labels_all = torch.cat(label_chunks) if label_chunks else torch.empty(0, dtype=torch.int64)
    if not labels_all.is_floating_point():
        labels_all = labels_all.to(torch.int64)
    if len(labels_all) != len(features):
        raise ValueError(f"{len(features)} feature rows but {len(labels_all)} labels")
    return features, labels_all
