"""Small random images in class folders (``folder/<class>/<index><suffix>``) for loader tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_images(
    folder: Path,
    classes: tuple[str, ...] = ("a", "b", "c"),
    per_class: int = 3,
    size: tuple[int, int] = (20, 24),
    seed: int = 0,
    suffix: str = ".png",
) -> Path:
    """``per_class`` seeded uniform-noise RGB images of ``size`` (W, H) per class; returns
    ``folder``."""
    rng = np.random.default_rng(seed)
    for name in classes:
        (folder / name).mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / name / f"{index}{suffix}")
    return folder
