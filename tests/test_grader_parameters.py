"""Every parameters cell says the grader decides the machine settings, and the notebooks that
use DATA_ROOT / BATCH_SIZE route them through featurelab.profiles before any use (issue 11)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "solutions").glob("*/*.ipynb"))


def _code_cells(path: Path) -> list[str]:
    notebook = json.loads(path.read_text(encoding="utf-8"))
    return ["".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code"]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.parent.name)
def test_parameters_cell_says_the_grader_decides(path):
    cells = _code_cells(path)
    index = next(i for i, source in enumerate(cells) if "PROFILE = None" in source)
    parameters = cells[index]
    assert "the grader decides all of these" in parameters
    assert "DOWNLOAD = None" in parameters and "/content/drive/MyDrive" in parameters
    setup = cells[index + 1]
    assert "fl.device.auto_device(DEVICE)" in setup
    # DATA_ROOT always: it also says where the weights and the cache live (Google Drive)
    assert "DATA_ROOT = fl.profiles.requested_data_root(DATA_ROOT)" in setup
    assert "DOWNLOAD = fl.profiles.allow_downloads(DOWNLOAD)" in setup
    later = "\n".join(cells[index + 2 :])
    if "BATCH_SIZE" in later:
        assert "BATCH_SIZE = fl.profiles.batch_size(BATCH_SIZE)" in setup
