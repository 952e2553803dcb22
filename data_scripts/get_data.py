#!/usr/bin/env python
"""Download, verify and extract the course datasets (a thin wrapper over featurelab.data).

    python data_scripts/get_data.py scene15 petimages cifar10   # or: all
    python data_scripts/get_data.py all --verify-only            # check what is on disk, offline
    python data_scripts/get_data.py petimages --print-sha256     # a checksum to pin in REGISTRY

Data root: --root, else $FEATURELAB_DATA, else <repo>/data. Mirrors: $FEATURELAB_URL_<NAME>.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    from featurelab import data
except ImportError:  # a fresh checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from featurelab import data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+", choices=[*data.REGISTRY, "all"], help="datasets")
    parser.add_argument(
        "--root", type=Path, help="data root (default: $FEATURELAB_DATA or <repo>/data)"
    )
    action = parser.add_mutually_exclusive_group()
    action.add_argument(
        "--verify-only", action="store_true", help="check files on disk, no download"
    )
    action.add_argument("--print-sha256", action="store_true", help="print the archive's sha256")
    args = parser.parse_args(argv)
    names = list(data.REGISTRY) if "all" in args.names else list(dict.fromkeys(args.names))
    failures = 0
    for name in names:
        try:
            if args.verify_only:
                for path in data.verify(name, args.root):
                    print(f"{name}: verified {path}")
            elif args.print_sha256:
                sha256 = data.archive_sha256(name, args.root)
                pin = f"pin it in REGISTRY or ${data.get_spec(name).sha256_env}"
                print(f"{name}: sha256 {sha256} ({pin})")
            else:
                print(f"{name}: ready in {data.prepare(name, args.root)}")
        except data.DataError as error:
            failures += 1
            print(f"{name}: ERROR {error}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
