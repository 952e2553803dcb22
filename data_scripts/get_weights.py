#!/usr/bin/env python
"""Fetch the pretrained ImageNet weights into the torch hub cache ($TORCH_HOME).

    python data_scripts/get_weights.py                 # all: vgg16 mobilenet_v3_large resnet18
    python data_scripts/get_weights.py resnet18

Same as ``python -m featurelab.backbones get [NAME ...]`` (works in a pip install). Uses the
torchvision weights API (``weights.get_state_dict``), which verifies the file's hash.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    from featurelab.backbones import SPECS, get_weights
except ImportError:  # a fresh checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from featurelab.backbones import SPECS, get_weights


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "names", nargs="*", default=["all"], choices=[*SPECS, "all"], help="backbones"
    )
    args = parser.parse_args(argv)
    return get_weights(args.names)


if __name__ == "__main__":
    sys.exit(main())
