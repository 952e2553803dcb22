"""``python -m featurelab.data``: a thin command line over the functions of this package.

    python -m featurelab.data get NAME|all [--root DIR]      download, verify, extract (checks
                                                             free disk space first)
    python -m featurelab.data verify NAME|all [--root DIR]   check what is on disk, offline
    python -m featurelab.data fixtures [--root DIR]          (re)generate the tiny fixtures
                                                             (default: <data root>/fixtures)
    python -m featurelab.data sha256 NAME [--root DIR]       the archive's sha256, to pin

Data root: --root, else $FEATURELAB_DATA, else <repo>/data in a checkout, else
~/.cache/featurelab/data. Mirrors: $FEATURELAB_URL_<NAME>. Exit status 1 when any dataset
failed (each failure is reported on stderr with what to do).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import registry
from .fixtures import make_fixtures as _make_fixtures
from .prepare import archive_sha256, ensure, verify


def run(action: str, names: list[str], root: Path | None = None) -> int:
    """Do ``action`` (``get``, ``verify`` or ``sha256``) for each dataset of ``names``
    (``"all"``: every registered one); print one line per dataset; return the exit status."""
    if "all" in names:
        names = list(registry.REGISTRY)
    failures = 0
    for name in dict.fromkeys(names):
        try:
            if action == "verify":
                for path in verify(name, root):
                    print(f"{name}: verified {path}")
            elif action == "sha256":
                sha256 = archive_sha256(name, root)
                pin = f"pin it in REGISTRY or ${registry.get_spec(name).sha256_env}"
                print(f"{name}: sha256 {sha256} ({pin})")
            elif action == "get":
                print(f"{name}: ready in {ensure(name, root=root, download=True)}")
            else:
                raise ValueError(f"unknown action {action!r}")
        except registry.DataError as error:
            failures += 1
            print(f"{name}: ERROR {error}", file=sys.stderr)
    return 1 if failures else 0


def make_fixtures(root: Path | None = None) -> int:
    """Write the fixtures under ``root`` (default ``<data root>/fixtures``); print their folders."""
    for name, folder in _make_fixtures(root or registry.data_root() / "fixtures").items():
        print(f"{name}: {folder}")
    return 0


def build_parser(prog: str = "python -m featurelab.data") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Course datasets: download, verify, fixtures.",
        epilog=f"datasets: {', '.join(registry.REGISTRY)}",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    choices = [*registry.REGISTRY, "all"]
    root_help = (
        "data root (default: $FEATURELAB_DATA, else <repo>/data or ~/.cache/featurelab/data)"
    )
    for command, text in (
        ("get", "download, verify and extract (checks free disk space first)"),
        ("verify", "check the archive and the extracted folder on disk, offline"),
        ("sha256", "print the archive's sha256 (downloaded if needed), to pin in the registry"),
    ):
        sub = commands.add_parser(command, help=text, description=text)
        sub.add_argument("names", nargs="+", choices=choices, metavar="NAME", help="dataset|all")
        sub.add_argument("--root", type=Path, help=root_help)
    sub = commands.add_parser("fixtures", help="(re)generate the tiny fixture datasets")
    sub.add_argument("--root", type=Path, help="fixture folder (default: <data root>/fixtures)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "fixtures":
        return make_fixtures(args.root)
    return run(args.command, args.names, args.root)
