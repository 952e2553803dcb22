"""Every committed notebook (sources and release) follows the course conventions:
no outputs or execution counts, nbgrader metadata kept, unique grade ids, a Colab badge and a
Colab-only setup cell, a tagged parameters cell, graded cells with points, a closing Summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENTS = (
    "tp1_vgg16_architecture",
    "tp2_imagenet_prediction",
    "tp3_scene15_svm",
    "tp4_cats_dogs_mobilenet",
    "tp5_cifar10_clustering",
    "tp6_resnet18_features",
)
NOTEBOOKS = [
    pytest.param(ROOT / folder / aid / f"{aid}.ipynb", id=f"{folder}/{aid}")
    for aid in ASSIGNMENTS
    for folder in ("solutions", "notebooks")
]


def _load(path: Path) -> dict:
    assert path.is_file(), f"missing notebook {path.relative_to(ROOT)}"
    return json.loads(path.read_text())


def _source(cell) -> str:
    source = cell["source"]
    return source if isinstance(source, str) else "".join(source)


@pytest.mark.parametrize("path", NOTEBOOKS)
def test_no_outputs_and_no_execution_counts(path):
    for cell in _load(path)["cells"]:
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"outputs in {_source(cell)[:60]!r}"
            assert cell.get("execution_count") is None, f"execution count in {_source(cell)[:60]!r}"


@pytest.mark.parametrize("path", NOTEBOOKS)
def test_course_conventions(path):
    nb = _load(path)
    cells = nb["cells"]
    assert "colab.research.google.com/assets/colab-badge.svg" in _source(cells[0])
    assert any(c["cell_type"] == "code" and "google.colab" in _source(c) for c in cells[:4]), (
        "a setup cell that installs the package only on Colab"
    )
    assert any(
        "parameters" in c["metadata"].get("tags", []) and "PROFILE" in _source(c) for c in cells
    ), "a parameters cell tagged 'parameters' with PROFILE"
    assert "Summary" in _source(cells[-1]), "a closing Summary cell"
    assert nb["metadata"]["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("path", NOTEBOOKS)
def test_nbgrader_metadata(path):
    cells = _load(path)["cells"]
    grade_ids = []
    autograded = manual = 0
    for cell in cells:
        meta = cell["metadata"].get("nbgrader")
        if meta is None:
            continue
        assert meta.get("schema_version") == 3
        grade_ids.append(meta["grade_id"])
        if meta.get("grade"):
            assert meta.get("points", 0) > 0, f"graded cell {meta['grade_id']} without points"
            if cell["cell_type"] == "code" and not meta.get("solution"):
                autograded += 1
                assert meta.get("locked"), f"test cell {meta['grade_id']} must be locked"
            elif cell["cell_type"] == "markdown" and meta.get("solution"):
                manual += 1
    assert len(grade_ids) == len(set(grade_ids)), "duplicate grade ids"
    assert autograded >= 2, "each TP has autograded test cells"
    assert manual >= 1, "each TP asks questions answered in markdown (manually graded)"
