"""Execute a notebook top to bottom in the venv's kernel and report per-cell times.

    python -m tests.nbrun solutions/tp1_vgg16_architecture/tp1_vgg16_architecture.ipynb

Exits 1 on the first cell error (printing it). Used by the tests and by notebook writers;
the profile comes from the environment (e.g. FEATURELAB_PROFILE=smoke).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError


def run_notebook(path: Path, timeout: int = 600) -> tuple[nbformat.NotebookNode, list[float]]:
    """Execute ``path`` in its own folder; returns the executed notebook and per-cell seconds."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    times: list[float] = []
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            start = time.perf_counter()
            client.execute_cell(cell, index)
            times.append(time.perf_counter() - start)
    return nb, times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--timeout", type=int, default=600, help="per-cell timeout (s)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        nb, times = run_notebook(args.notebook, args.timeout)
    except CellExecutionError as error:
        print(f"FAILED: {args.notebook}\n{error}", file=sys.stderr)
        return 1
    for index, (cell, seconds) in enumerate(zip(nb.cells, times, strict=False)):
        if cell.cell_type == "code" and seconds > 0.5:
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id", "")
            print(f"  cell {index:3d} {grade_id:40s} {seconds:7.1f} s")
    print(f"OK {args.notebook}: {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
