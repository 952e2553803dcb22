"""Fingerprints: what a module computes, which examples a dataset holds, and the cache key.

Used by :mod:`featurelab.features` to key the on-disk cache (:mod:`featurelab.cache`, which
only knows the file format). The key (SHA-256, hex, :func:`make_key`) covers:

* the **module**, by function rather than by name (:func:`fingerprint_module`): the multiset
  of its parameter and buffer values (each tensor hashed from its raw bytes, names and
  registration order ignored) plus the bytes of its output on a fixed random probe batch of
  the real input shape. Two modules that hold the same tensors and compute the same thing hit
  the same entry, e.g. a student's ``nn.Module`` subclass and an ``nn.Sequential`` of the
  same layers. A structural hash (module types and ``extra_repr``) cannot do that
  safely: a ResNet ``BasicBlock`` and an ``nn.Sequential`` of the same layers hold the same
  leaves yet compute different things (the residual addition lives in ``forward``); the
  probe output tells them apart, the parameter values tell apart weights the probe might
  not exercise (a ReLU unit that is dead for the probe);
* the **data** (:func:`fingerprint_dataset`): the ordered file list with labels, sizes and
  modification times (``.samples`` of ``ImageFolder``-like datasets), or the hash of the
  arrays (``.data``/``.targets`` of torchvision's CIFAR-10, ``TensorDataset`` tensors),
  ``Subset`` indices, the ``repr`` of the transforms, and the bytes of a few transformed
  items (so a transform whose ``repr`` hides a change, e.g. a ``Lambda``, still changes the
  key; a random transform is detected and disables the cache);
* the extraction settings that change the numbers (given by the caller: device type,
  autocast dtype, ``resize``, ``pool``) and the torch / torchvision versions.

Module inspection helpers used by extraction live here too: :func:`state_tensors`,
:func:`module_device`, :func:`is_training`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import weakref
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch
from torch import nn

# Part of every fingerprint and key: bump it to invalidate all cached features at once.
KEY_FORMAT = 1
_CHUNK = 32 << 20  # large tensors are hashed in 32 MiB chunks on several threads
_THREADED_MIN_BYTES = 1 << 20
PROBE_BATCH = 1
PROBE_SEED = 20140101


def _raw_bytes(tensor: torch.Tensor) -> memoryview:
    """The tensor's values as bytes in C order, without a copy when already contiguous on CPU."""
    tensor = tensor.detach()
    if tensor.device.type != "cpu":
        tensor = tensor.cpu()
    tensor = tensor.contiguous()
    if tensor.is_conj():
        tensor = tensor.resolve_conj()
    if tensor.is_neg():
        tensor = tensor.resolve_neg()
    return memoryview(tensor.reshape(-1).view(torch.uint8).numpy())


def _chunks(data: memoryview) -> list[memoryview]:
    return [data[start : start + _CHUNK] for start in range(0, max(len(data), 1), _CHUNK)]


def _sha256(data: memoryview | bytes) -> bytes:
    return hashlib.sha256(data).digest()  # hashlib releases the GIL on large buffers


def tensor_digests(tensors: list[torch.Tensor], threads: int | None = None) -> list[str]:
    """SHA-256 (hex) of each tensor's dtype, shape and raw bytes, hashed on several threads.

    Large tensors are cut into 32 MiB chunks hashed in parallel (VGG16's 138 M parameters:
    ~0.3 s on 2 cores) and the chunk digests hashed again.
    """
    views = [_raw_bytes(tensor) for tensor in tensors]
    jobs = [(index, chunk) for index, view in enumerate(views) for chunk in _chunks(view)]
    threads = threads or min(8, os.cpu_count() or 1)
    # Only large chunks are worth a thread hand-off (~20 us each): MobileNetV3 has ~300 small
    # tensors, whose digests are cheaper to compute inline.
    large = [i for i, (_, chunk) in enumerate(jobs) if len(chunk) >= _THREADED_MIN_BYTES]
    parallel = threads > 1 and len(large) > 1
    with ThreadPoolExecutor(max_workers=threads) if parallel else nullcontext() as pool:
        futures = {i: pool.submit(_sha256, jobs[i][1]) for i in large} if parallel else {}
        chunk_digests = [
            None if i in futures else _sha256(chunk) for i, (_, chunk) in enumerate(jobs)
        ]
        for i, future in futures.items():
            chunk_digests[i] = future.result()
    per_tensor: list[list[bytes]] = [[] for _ in tensors]
    for (index, _), digest in zip(jobs, chunk_digests, strict=True):
        per_tensor[index].append(digest)
    digests = []
    for tensor, parts in zip(tensors, per_tensor, strict=True):
        head = f"{tensor.dtype}|{tuple(tensor.shape)}|".encode()
        digests.append(hashlib.sha256(head + b"".join(parts)).hexdigest())
    return digests


def state_tensors(module: nn.Module) -> list[torch.Tensor]:
    """The module's parameters then buffers (shared tensors once), in registration order."""
    tensors = [param for param in module.parameters()]
    tensors += [buffer for buffer in module.buffers()]
    return tensors


def module_device(module: nn.Module) -> torch.device:
    """The device of the module's first parameter (or buffer); CPU for a stateless module."""
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")


def is_training(module: nn.Module) -> bool:
    """True if the module or any submodule is in training mode."""
    return any(sub.training for sub in module.modules())


def _output_tensors(output: Any) -> list[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, dict):
        return [t for key in sorted(output, key=str) for t in _output_tensors(output[key])]
    if isinstance(output, (list, tuple)):
        return [t for item in output for t in _output_tensors(item)]
    return []


def probe_output(module: nn.Module, input_shape: tuple[int, ...]) -> list[torch.Tensor]:
    """The module's output on a fixed random batch ``(1, *input_shape)`` (float32, no autocast).

    Runs the module as it is (mode, device, weights); nothing is modified.
    """
    device = module_device(module)
    generator = torch.Generator().manual_seed(PROBE_SEED)
    probe = torch.randn((PROBE_BATCH, *input_shape), generator=generator).to(device)
    with torch.inference_mode(), torch.autocast(device.type, enabled=False):
        return _output_tensors(module(probe))


# The probe output of a module, remembered per module object: re-running a notebook cell, or
# extracting the train and the test set with one model, does not pay the probe forward pass
# again (VGG16: 0.3 s of the 0.45 s fingerprint on 2 CPU cores). Reused only while both the
# weight digests (recomputed every time) and the structure token below are unchanged.
_PROBES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
# Attributes that cannot change an inference forward pass: the tensors and submodules (compared
# separately), the train flag (the probe runs in eval mode), state-dict and backward hooks.
_SKIPPED_ATTRIBUTES = {
    "_parameters",
    "_buffers",
    "_modules",
    "training",
    "_non_persistent_buffers_set",
    "_backward_pre_hooks",
    "_backward_hooks",
    "_is_full_backward_hook",
    "_state_dict_hooks",
    "_state_dict_pre_hooks",
    "_load_state_dict_pre_hooks",
    "_load_state_dict_post_hooks",
}


def _token(value: Any, depth: int = 0) -> Any:
    """A comparable stand-in for an attribute value: the value itself when immutable, else its
    identity plus (for containers such as hook dictionaries) the identities of its items."""
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        return value
    if isinstance(value, (torch.dtype, torch.device, torch.memory_format)):
        return str(value)
    if isinstance(value, torch.Tensor):
        return ("tensor", id(value), value._version, value.data_ptr(), tuple(value.shape))
    if depth < 3 and isinstance(value, (tuple, list)):
        return (type(value).__name__, id(value), tuple(_token(v, depth + 1) for v in value))
    if depth < 3 and isinstance(value, dict):
        items = tuple((_token(k, depth + 1), _token(v, depth + 1)) for k, v in value.items())
        return ("dict", id(value), items)
    return (type(value).__qualname__, id(value))


def structure_token(module: nn.Module) -> tuple:
    """Everything but the weight values that decides what ``module`` computes, cheap to compare.

    Per submodule: its name, identity, class and the class's ``forward``, every plain attribute
    (strides, paddings, ``inplace`` flags, an instance-level ``forward``, hook dictionaries and
    their functions) and the identity, memory layout and device of each parameter and buffer;
    plus the global module hooks. Train/eval flags are left out (the probe runs in eval mode).
    Valid within one process only (identities).
    """
    from torch.nn.modules import module as module_globals

    parts: list[Any] = [
        _token(getattr(module_globals, name, None))
        for name in ("_global_forward_hooks", "_global_forward_pre_hooks")
    ]
    for name, sub in module.named_modules():
        kind = type(sub)
        attributes = tuple(
            (key, _token(value))
            for key, value in sub.__dict__.items()
            if key not in _SKIPPED_ATTRIBUTES
        )
        tensors = tuple(
            (key, None)
            if tensor is None
            else (key, id(tensor), tensor.data_ptr(), tensor.stride(), str(tensor.device))
            for table in (sub._parameters, sub._buffers)
            for key, tensor in table.items()
        )
        parts.append((name, id(sub), kind, id(getattr(kind, "forward", None)), attributes, tensors))
    return tuple(parts)


def fingerprint_module(module: nn.Module, input_shape: tuple[int, ...] = (3, 224, 224)) -> str:
    """A hex string that identifies what ``module`` computes (see the module docstring).

    Made of: the sorted SHA-256 digests of every parameter and buffer (values, dtype, shape;
    names and order ignored), the bytes of the module's output on a fixed random probe batch
    ``(1, *input_shape)`` computed in eval mode, and whether the module is in training mode.
    The module's train/eval flags are put back exactly as they were after the probe (eval for
    the probe: batch norm in train mode would update its running statistics).

    Equal for two modules with the same tensors and the same function on the same device
    (e.g. a hand-written ``VGG16relu7`` and an ``nn.Sequential`` of the same layers);
    different when a weight, the structure or the mode changes. Costs one forward pass of
    1 image plus hashing the parameters: 0.45 s for VGG16 (138 M parameters) on 2 CPU cores.
    The probe output is remembered per module object while its weight digests and
    :func:`structure_token` stay the same, so fingerprinting the same model object again
    costs the hashing alone (VGG16: ~0.17 s).
    Raises ``ValueError`` when the module cannot run on ``input_shape``.
    """
    flags = [(sub, sub.training) for sub in module.modules()]
    training = any(flag for _, flag in flags)
    state = sorted(tensor_digests(state_tensors(module)))
    token = (structure_token(module), tuple(state), tuple(input_shape))
    remembered = _PROBES.get(module)
    if remembered is not None and remembered[0] == token:
        probe = remembered[1]
    else:
        try:
            module.eval()
            outputs = probe_output(module, tuple(input_shape))
        except Exception as error:  # a shape mismatch in the user's module
            raise ValueError(
                f"cannot fingerprint {type(module).__name__}: it fails on a probe input of "
                f"shape (1, {', '.join(map(str, input_shape))}); pass input_shape=(C, H, W) "
                f"that the module accepts ({type(error).__name__}: {error})"
            ) from error
        finally:
            for sub, flag in flags:
                sub.training = flag
        probe = tensor_digests(outputs, threads=1)
        try:
            _PROBES[module] = (token, probe)
        except TypeError:  # a module that cannot be weakly referenced: nothing remembered
            pass
    payload = json.dumps(
        {"format": KEY_FORMAT, "state": state, "probe": probe, "training": training}
    )
    return hashlib.sha256(payload.encode()).hexdigest()


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def _clean_repr(obj: Any) -> str | None:
    """``repr(obj)`` without memory addresses (``<function <lambda> at 0x7f...>``)."""
    return None if obj is None else _ADDRESS.sub(" at 0x?", repr(obj))


def _array_digest(values: Any) -> str:
    if isinstance(values, torch.Tensor):
        return tensor_digests([values], threads=1)[0]
    array = np.ascontiguousarray(np.asarray(values))
    if array.dtype == object:
        return hashlib.sha256(repr(array.tolist()).encode()).hexdigest()
    head = f"{array.dtype.str}|{array.shape}|".encode()
    return hashlib.sha256(head + memoryview(array).cast("B")).hexdigest()


def _file_list_digest(samples: Any) -> str:
    """Digest of an ordered ``[(path, label), ...]`` list with each file's size and mtime."""
    digest = hashlib.sha256()
    for sample in samples:
        path, label = sample[0], sample[1]
        path = os.path.abspath(os.fspath(path))
        try:
            info = os.stat(path)
            stamp = f"{info.st_size}\t{info.st_mtime_ns}"
        except OSError:
            stamp = "missing"
        digest.update(f"{path}\t{label}\t{stamp}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def _samples_list(dataset: Any) -> list | None:
    samples = getattr(dataset, "samples", None)
    if isinstance(samples, (list, tuple)) and all(
        isinstance(s, (list, tuple)) and len(s) >= 2 for s in samples[:1]
    ):
        return samples
    return None


def _selected_samples(subset: Any) -> tuple[Any, list] | None:
    """(base dataset, its ``samples`` picked by the (nested) ``Subset`` indices, in order), or
    None when the base holds no ``samples`` list (then the parent's identity is used)."""
    from torch.utils.data import Subset

    indices = list(range(len(subset.indices)))
    node = subset
    while isinstance(node, Subset):
        indices = [node.indices[i] for i in indices]
        node = node.dataset
    samples = _samples_list(node)
    if samples is None:
        return None
    return node, [samples[int(i)] for i in indices]


def _kind(dataset: Any) -> str:
    return f"{type(dataset).__module__}.{type(dataset).__qualname__}"


def _transforms(dataset: Any) -> dict[str, str | None]:
    """The ``repr`` (addresses removed) of the dataset's ``transform``/``target_transform``."""
    return {
        name: _clean_repr(getattr(dataset, name, None))
        for name in ("transform", "target_transform")
        if getattr(dataset, name, None) is not None
    }


def _identity(dataset: Any) -> Any:
    """A JSON-able description of which examples ``dataset`` holds, or None if unknown."""
    from torch.utils.data import ConcatDataset, Subset, TensorDataset

    kind, transforms = _kind(dataset), _transforms(dataset)
    if isinstance(dataset, Subset):
        selected = _selected_samples(dataset)
        if selected is not None:  # only the files the subset reads (not the whole folder)
            base, samples = selected
            return {"kind": _kind(base), "files": _file_list_digest(samples), **_transforms(base)}
        parent = _identity(dataset.dataset)
        if parent is None:
            return None
        return {"subset": parent, "indices": _array_digest(np.asarray(dataset.indices))}
    if isinstance(dataset, ConcatDataset):
        parts = [_identity(part) for part in dataset.datasets]
        return None if any(part is None for part in parts) else {"concat": parts}
    if isinstance(dataset, TensorDataset):
        return {"tensors": [_array_digest(tensor) for tensor in dataset.tensors]}
    samples = _samples_list(dataset)
    if samples is not None:
        return {"kind": kind, "files": _file_list_digest(samples), **transforms}
    data, targets = getattr(dataset, "data", None), getattr(dataset, "targets", None)
    if isinstance(data, (np.ndarray, torch.Tensor)) and targets is not None:
        return {
            "kind": kind,
            "data": _array_digest(data),
            "targets": _array_digest(np.asarray(targets)),
            "train": getattr(dataset, "train", None),
            **transforms,
        }
    return None


def _item_digest(item: Any) -> str:
    digest = hashlib.sha256()
    for part in item if isinstance(item, (tuple, list)) else (item,):
        if isinstance(part, torch.Tensor):
            digest.update(tensor_digests([part], threads=1)[0].encode())
        elif isinstance(part, np.ndarray):
            digest.update(_array_digest(part).encode())
        elif hasattr(part, "tobytes") and hasattr(part, "size"):  # PIL image
            digest.update(f"{part.size}{getattr(part, 'mode', '')}".encode() + part.tobytes())
        else:
            digest.update(repr(part).encode())
    return digest.hexdigest()


def fingerprint_dataset(dataset: Any) -> str | None:
    """A hex string identifying the examples of ``dataset`` as the model will see them.

    Covers the dataset's identity (see :func:`_identity`: file list with sizes and mtimes,
    array hashes, subset indices, transform ``repr``) and the bytes of a few transformed
    items (first, middle, last). Returns None (do not cache) for a dataset of unknown kind,
    an empty one, or one whose items change from one read to the next (random augmentation).
    """
    return dataset_fingerprint_and_first_item(dataset)[0]


def dataset_fingerprint_and_first_item(dataset: Any) -> tuple[str | None, Any]:
    """:func:`fingerprint_dataset` and ``dataset[0]`` (None if it was not read)."""
    identity = _identity(dataset)
    if identity is None:
        return None, None
    try:
        size = len(dataset)
    except TypeError:
        return None, None
    if size == 0:
        return None, None
    first = dataset[0]
    items = [_item_digest(first)] + [
        _item_digest(dataset[index]) for index in sorted({size // 2, size - 1} - {0})
    ]
    if _item_digest(dataset[0]) != items[0]:  # random transform: features are not reusable
        return None, first
    payload = json.dumps({"format": KEY_FORMAT, "identity": identity, "items": items})
    return hashlib.sha256(payload.encode()).hexdigest(), first


def make_key(parts: dict[str, Any]) -> str:
    """SHA-256 (hex) of the JSON of ``parts`` (sorted keys) plus the format and versions."""
    import torchvision

    payload = {
        **parts,
        "format": KEY_FORMAT,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
