#!/usr/bin/env python
"""Fetch the pretrained ImageNet weights into the torch hub cache ($TORCH_HOME).

    python data_scripts/get_weights.py                 # all: vgg16 mobilenet_v3_large resnet18
    python data_scripts/get_weights.py resnet18

Uses the torchvision weights API (``weights.get_state_dict``), which verifies the file's hash.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    from featurelab.backbones import SPECS, how_to_fetch, weights_cache_path
except ImportError:  # a fresh checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from featurelab.backbones import SPECS, how_to_fetch, weights_cache_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "names", nargs="*", default=["all"], choices=[*SPECS, "all"], help="backbones"
    )
    args = parser.parse_args(argv)
    names = list(SPECS) if "all" in args.names else list(dict.fromkeys(args.names))
    failures = 0
    for name in names:
        weights = SPECS[name].weights
        try:
            weights.get_state_dict(progress=True, check_hash=True)
        except Exception as error:  # URLError, HTTPError, hash mismatch: all mean "not fetched"
            failures += 1
            print(
                f"{name}: ERROR {type(error).__name__}: {error}\n{how_to_fetch(weights)}",
                file=sys.stderr,
            )
            continue
        print(f"{name}: ok {weights_cache_path(weights)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
