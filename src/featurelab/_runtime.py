"""How extraction runs on this machine: device placement, threads, mixed precision, data
loading workers, batch-norm folding (used by :func:`featurelab.features.extract`)."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from torch import nn
from torch.utils.data import TensorDataset

from . import fingerprint as _fingerprint
from .device import auto_device

_SPAWN_MIN_ITEMS = 1000
_AMP_NAMES = {
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
}


# ---------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------


def _cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def resolve_amp(amp: bool | str | torch.dtype | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` on ``device`` (None: float32, no autocast).

    ``None`` or ``False``: None (float32 everywhere, the default). ``True``: bfloat16 on CPU
    and on CUDA GPUs that support it, float16 on other CUDA GPUs and on MPS. A dtype or one
    of ``"bf16" "fp16" "bfloat16" "float16" "half"``: that dtype.
    """
    if amp is None or amp is False:
        return None
    if isinstance(amp, str):
        if amp.lower() not in _AMP_NAMES:
            raise ValueError(f"amp={amp!r}: use None, True, False, 'bf16' or 'fp16'")
        return _AMP_NAMES[amp.lower()]
    if isinstance(amp, torch.dtype):
        if amp not in (torch.bfloat16, torch.float16):
            raise ValueError(f"amp={amp}: autocast supports torch.bfloat16 and torch.float16")
        return amp
    if amp is not True:
        raise TypeError(f"amp must be None, a bool, a dtype or a string, not {amp!r}")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float16 if device.type == "mps" else torch.bfloat16


def _autocast(device: torch.device, amp_dtype: torch.dtype | None) -> Any:
    """The autocast context of a run: ``amp_dtype`` when given, else autocast explicitly off
    on CPU and CUDA (float32 even inside a caller's autocast block), else a no-op."""
    if amp_dtype is not None:
        return torch.autocast(device.type, dtype=amp_dtype)
    if device.type in ("cpu", "cuda"):
        return torch.autocast(device.type, enabled=False)
    return nullcontext()


def default_num_workers(dataset: Any, batch_size: int, device: torch.device) -> int:
    """How many DataLoader workers :func:`extract` uses when ``num_workers=None``.

    See the module docstring for the measurements behind the rule.
    """
    if _is_tensor_dataset(dataset):
        return 0
    try:
        if len(dataset) <= 2 * batch_size:
            return 0
    except TypeError:
        pass
    cores = _cpu_cores()
    if device.type == "cpu":
        workers = 0 if cores <= 4 else min(4, cores // 4)
    else:
        workers = max(0, min(8, cores - 1))
    if workers and multiprocessing.get_start_method(allow_none=False) != "fork":
        # spawn / forkserver (macOS, Windows, Python >= 3.14): each worker starts a fresh
        # interpreter (seconds) and receives the pickled dataset (a class defined in a
        # notebook cannot be pickled): only worth it for large datasets.
        try:
            if len(dataset) < _SPAWN_MIN_ITEMS:
                return 0
            pickle.dumps(dataset)
        except Exception:
            return 0
        workers = min(workers, 4)
    return workers


def default_decode_threads(dataset: Any, batch_size: int) -> int:
    """Threads that decode each batch when :func:`extract` loads data in the main process.

    One per core (if more than one) for datasets holding more than one batch that are safe to
    read from several threads at once: torchvision's ``DatasetFolder``/``ImageFolder`` and
    ``CIFAR10``, featurelab's loaders, any dataset class with a true ``thread_safe``
    attribute, and ``Subset`` / ``ConcatDataset`` of those. Else 0: plain DataLoader loading,
    one item after the other (also what an explicit ``num_workers=0`` gives).
    """
    if not _thread_safe(dataset):
        return 0
    try:
        if len(dataset) <= batch_size:
            return 0
    except TypeError:
        return 0
    cores = _cpu_cores()
    return cores if cores > 1 else 0


def _thread_safe(dataset: Any) -> bool:
    from torch.utils.data import ConcatDataset, Subset
    from torchvision.datasets import CIFAR10, DatasetFolder, ImageFolder

    if isinstance(dataset, Subset):
        return _thread_safe(dataset.dataset)
    if isinstance(dataset, ConcatDataset):
        return all(_thread_safe(part) for part in dataset.datasets)
    if getattr(type(dataset), "thread_safe", False) is True:
        return True
    # torchvision's loaders: open + decode + transform, no shared state. (A subclass may add
    # some: only the classes themselves and featurelab's CIFAR10Batches are trusted.)
    kind = type(dataset)
    return kind in (CIFAR10, DatasetFolder, ImageFolder) or (
        kind.__module__ == "featurelab.data" and kind.__name__ == "CIFAR10Batches"
    )


def _single_threaded_torch() -> None:
    """Run in each decode thread: its tensor ops (``ToTensor``, ``Normalize``) stay on it.

    Without this, each decode thread opens its own OpenMP team as wide as the machine, and the
    spinning team members compete with the model's threads. ``omp_set_num_threads`` (through
    threadpoolctl) only changes the calling thread; ``torch.set_num_threads`` would change the
    process-wide default too (and clear oneDNN's kernel cache).
    """
    torch.get_num_threads()  # torch sets this thread's OpenMP width on first use: do it first
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1, user_api="openmp")
    except Exception:  # threadpoolctl missing or no OpenMP found: decode anyway
        pass


def _is_tensor_dataset(dataset: Any) -> bool:
    return isinstance(dataset, TensorDataset)


def _resize_size(resize: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if resize is None:
        return None
    if isinstance(resize, int) and not isinstance(resize, bool) and resize > 0:
        return (resize, resize)
    if (
        isinstance(resize, (tuple, list))
        and len(resize) == 2
        and all(isinstance(v, int) and v > 0 for v in resize)
    ):
        return (int(resize[0]), int(resize[1]))
    raise ValueError(f"resize must be None, a positive int or (height, width), not {resize!r}")


def _pick_device(model: nn.Module, device: str | torch.device | None) -> torch.device:
    if device is not None:
        return auto_device(device)
    current = _fingerprint.module_device(model)
    return current if current.type != "cpu" else auto_device()


# ---------------------------------------------------------------------------------------------
# Temporary changes to the model, undone afterwards
# ---------------------------------------------------------------------------------------------


def _check_devices(model: nn.Module, device: torch.device) -> torch.device | None:
    """The model's single device (None for a stateless model); error if spread over several."""
    devices = {t.device for t in _fingerprint.state_tensors(model)}
    if len(devices) > 1:
        raise ValueError(
            f"the model's tensors are on several devices ({sorted(map(str, devices))}); "
            f"put it on one device (model.to({str(device)!r})) before extract"
        )
    return next(iter(devices)) if devices else None


@contextmanager
def _on_device(model: nn.Module, device: torch.device) -> Iterator[None]:
    """Move ``model`` to ``device`` for the block, then back where it was."""
    original = _check_devices(model, device)
    moved = original is not None and original != device
    if moved:
        model.to(device)
    try:
        yield
    finally:
        if moved:
            model.to(original)


@contextmanager
def _channels_last(model: nn.Module, enabled: bool) -> Iterator[None]:
    """Make the model's 4-D parameters and buffers channels_last for the block, then undo.

    Parameters keep their identity (``param.data`` is swapped), so optimisers and hooks that
    hold them are unaffected; the original storage is put back on exit.
    """
    swapped: list[tuple[dict, str, torch.Tensor, bool]] = []
    try:
        if enabled:
            for module in model.modules():
                for table, is_param in ((module._parameters, True), (module._buffers, False)):
                    for name, tensor in table.items():
                        if (
                            tensor is None
                            or tensor.dim() != 4
                            or tensor.is_contiguous(memory_format=torch.channels_last)
                        ):
                            continue
                        new = tensor.data.contiguous(memory_format=torch.channels_last)
                        if is_param:
                            swapped.append((table, name, tensor.data, True))
                            tensor.data = new
                        else:
                            swapped.append((table, name, tensor, False))
                            table[name] = new
        yield
    finally:
        for table, name, original, is_param in reversed(swapped):
            if is_param:
                table[name].data = original
            else:
                table[name] = original


def _has_hooks(model: nn.Module) -> bool:
    from torch.nn.modules import module as module_globals

    global_hooks = (
        getattr(module_globals, "_global_forward_hooks", None),
        getattr(module_globals, "_global_forward_pre_hooks", None),
    )
    if any(hooks for hooks in global_hooks):
        return True
    names = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return any(getattr(sub, name, None) for sub in model.modules() for name in names)


def batchnorm_folded(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with each eval-mode batch norm folded into the layer before it.

    ``BatchNorm`` after ``Conv1d/2d/3d`` or ``Linear`` (whose output feeds nothing else)
    becomes part of that layer's weights and bias: ``bn(conv(x)) == conv'(x)`` up to float
    rounding (~1e-6 relative), and one memory pass instead of two. Uses ``torch.fx``
    (``torch.fx.experimental.optimization.fuse``); the copy is a ``GraphModule`` on the
    model's device with the same train/eval flags.

    Returns ``model`` itself (not a copy) when there is nothing to fold or folding would change
    what runs: no batch-norm layer, a batch norm in training mode (it would use batch
    statistics), hooks on any submodule or global module hooks (they would no longer fire as
    registered), or a model that ``torch.fx`` cannot trace (data-dependent control flow).
    ``model`` is never modified.
    """
    norms = [sub for sub in model.modules() if isinstance(sub, nn.modules.batchnorm._BatchNorm)]
    if not norms or any(norm.training for norm in norms) or _has_hooks(model):
        return model
    from torch.fx.experimental.optimization import fuse

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            folded = fuse(model)  # deep copy, symbolic trace, fold
    except Exception:  # untraceable forward: run the model as it is
        return model
    left = sum(isinstance(sub, nn.modules.batchnorm._BatchNorm) for sub in folded.modules())
    if left == len(norms):
        return model  # nothing followed a conv/linear: no gain, keep the original
    folded.training = model.training
    for sub in folded.modules():  # the plain containers torch.fx made for submodule paths
        if type(sub) is nn.Module:
            sub.training = model.training
    return folded


@contextmanager
def _intra_op_threads(count: int | None) -> Iterator[None]:
    if count is None or count == torch.get_num_threads():
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _loading_plan(
    data: Any, batch_size: int, target: torch.device, num_workers: int | None
) -> tuple[int, int | None, int]:
    """``(DataLoader workers, intra-op threads or None to leave them, decode threads)`` for a
    dataset that decodes its items (see :func:`default_num_workers`)."""
    workers = default_num_workers(data, batch_size, target) if num_workers is None else num_workers
    threads = None
    if target.type == "cpu" and workers and num_workers is None:
        threads = max(1, min(torch.get_num_threads(), _cpu_cores() - workers))
    decode_threads = 0
    if num_workers is None and workers == 0:
        decode_threads = default_decode_threads(data, batch_size)
    return workers, threads, decode_threads
