"""Pick the compute device: CUDA, then Apple MPS, then CPU."""

from __future__ import annotations

import torch


def auto_device(preferred: str | torch.device | None = None) -> torch.device:
    """Return ``preferred`` if given (``"cuda"``, ``"mps"``, ``"cpu"``), else the best available.

    Raises ``RuntimeError`` with a clear message when the preferred device is not available.
    """
    if preferred is not None and str(preferred) != "auto":
        device = torch.device(preferred)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' was asked for but no CUDA GPU is available")
        if device.type == "mps" and not _mps_available():
            raise RuntimeError("device 'mps' was asked for but Apple MPS is not available")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())
