#!/usr/bin/env python
"""Generate the tiny deterministic fixture datasets (a thin wrapper over featurelab.data).

    python data_scripts/make_fixtures.py [--root DIR]   # default: <data root>/fixtures

Same as ``python -m featurelab.data fixtures [--root DIR]`` (works in a pip install). The
smoke profile generates them on demand; this command (re)writes them explicitly.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    from featurelab.data import cli
except ImportError:  # a fresh checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from featurelab.data import cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, help="fixture folder (default: <data root>/fixtures)")
    args = parser.parse_args(argv)
    return cli.make_fixtures(args.root)


if __name__ == "__main__":
    sys.exit(main())
