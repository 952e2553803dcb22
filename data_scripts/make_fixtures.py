#!/usr/bin/env python
"""Generate the tiny deterministic fixture datasets (a thin wrapper over featurelab.data).

    python data_scripts/make_fixtures.py [--root DIR]   # default: <data root>/fixtures

The smoke profile generates them on demand; this command (re)writes them explicitly.
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
    parser.add_argument("--root", type=Path, help="fixture folder (default: <data root>/fixtures)")
    args = parser.parse_args(argv)
    for name, folder in data.make_fixtures(args.root or data.data_root() / "fixtures").items():
        print(f"{name}: {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
