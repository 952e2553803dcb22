#!/usr/bin/env python
"""Download, verify and extract the course datasets (a thin wrapper over featurelab.data).

    python data_scripts/get_data.py scene15 petimages cifar10   # or: all
    python data_scripts/get_data.py all --verify-only            # check what is on disk, offline
    python data_scripts/get_data.py petimages --print-sha256     # a checksum to pin in REGISTRY

The same commands exist wherever the package is installed (pip too):
``python -m featurelab.data get|verify|sha256 NAME|all [--root DIR]``.
Data root: --root, else $FEATURELAB_DATA, else <repo>/data. Mirrors: $FEATURELAB_URL_<NAME>.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    from featurelab.data import REGISTRY, cli
except ImportError:  # a fresh checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from featurelab.data import REGISTRY, cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+", choices=[*REGISTRY, "all"], help="datasets")
    parser.add_argument(
        "--root", type=Path, help="data root (default: $FEATURELAB_DATA or <repo>/data)"
    )
    action = parser.add_mutually_exclusive_group()
    action.add_argument(
        "--verify-only", action="store_true", help="check files on disk, no download"
    )
    action.add_argument("--print-sha256", action="store_true", help="print the archive's sha256")
    args = parser.parse_args(argv)
    command = "verify" if args.verify_only else "sha256" if args.print_sha256 else "get"
    return cli.run(command, args.names, args.root)


if __name__ == "__main__":
    sys.exit(main())
