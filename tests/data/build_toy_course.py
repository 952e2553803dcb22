"""Write the toy nbgrader course the autograder tests grade (a few seconds per submission).

    python tests/data/build_toy_course.py      # rewrites tests/data/toy_course/solutions/toy/toy.ipynb

A second, smaller assignment ``toy2`` exists so that "the notebook of another assignment" can be
submitted. The toy notebook has what a real TP has, in miniature: locked instruction cells, three solution
cells with autograded test cells (visible asserts, then hidden collectors that record the
student's results on the judge's probes with ``featurelab.evidence``), one manually graded
markdown answer and a metric reported with ``featurelab.reporting.report_metric``. Its judges
live in ``tests/data/toy_course/checks/<assignment>.py`` (outside the sandbox).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

TOY_COURSE = Path(__file__).resolve().parent / "toy_course"
TOY_NOTEBOOK = TOY_COURSE / "solutions" / "toy" / "toy.ipynb"
TOY2_NOTEBOOK = TOY_COURSE / "solutions" / "toy2" / "toy2.ipynb"


def _meta(grade_id: str, *, grade: bool, solution: bool, locked: bool, points: int | None = None):
    meta = {
        "grade": grade,
        "grade_id": grade_id,
        "locked": locked,
        "schema_version": 3,
        "solution": solution,
        "task": False,
    }
    if points is not None:
        meta["points"] = points
    return {"nbgrader": meta}


def _readonly(cell_id: str, cell):
    cell.id = cell_id
    cell.metadata.update(_meta(cell_id, grade=False, solution=False, locked=True))
    return cell


def _solution(cell_id: str, source: str):
    cell = new_code_cell(source)
    cell.id = cell_id
    cell.metadata.update(_meta(cell_id, grade=False, solution=True, locked=False))
    return cell


def _test(cell_id: str, source: str, points: int):
    cell = new_code_cell(source)
    cell.id = cell_id
    cell.metadata.update(_meta(cell_id, grade=True, solution=False, locked=True, points=points))
    return cell


def _answer(cell_id: str, source: str, points: int):
    cell = new_markdown_cell(source)
    cell.id = cell_id
    cell.metadata.update(_meta(cell_id, grade=True, solution=True, locked=False, points=points))
    return cell


def build() -> nbformat.NotebookNode:
    cells = [
        _readonly(
            "title",
            new_markdown_cell(
                "# Toy assignment\n\nA miniature TP that the autograder tests grade in seconds."
            ),
        ),
        _readonly("setup", new_code_cell("import numpy as np\nimport torch")),
        _readonly(
            "ex1_text",
            new_markdown_cell(
                "### Exercise 1 (2 points)\n\nWrite `square(x)` that squares its input element-wise."
            ),
        ),
        _solution(
            "ex1_square",
            (
                "def square(x):\n"
                '    """Return ``x * x`` element-wise (numbers, arrays or tensors)."""\n'
                "    ### BEGIN SOLUTION\n"
                "    return x * x\n"
                "    ### END SOLUTION"
            ),
        ),
        _test(
            "test_ex1_square",
            (
                '"""Check that square squares."""\n'
                "assert square(3) == 9\n"
                "### BEGIN HIDDEN TESTS\n"
                "from featurelab import evidence as _evidence\n"
                "\n"
                "_evidence.record(\n"
                '    "test_ex1_square",\n'
                "    visible=_evidence.attempt(square, 3),\n"
                '    probe=_evidence.attempt(square, _evidence.probes().tensors("ex1")["x"]),\n'
                ")\n"
                "### END HIDDEN TESTS"
            ),
            points=2,
        ),
        _readonly(
            "ex2_text",
            new_markdown_cell(
                "### Exercise 2 (3 points)\n\nWrite `normalise_rows(features)` that scales every row "
                "of a `(N, D)` tensor to unit L2 norm."
            ),
        ),
        _solution(
            "ex2_normalise",
            (
                "def normalise_rows(features):\n"
                '    """Rows of ``features`` (N, D) divided by their L2 norm: (N, D)."""\n'
                "    ### BEGIN SOLUTION\n"
                "    return features / features.norm(dim=1, keepdim=True)\n"
                "    ### END SOLUTION"
            ),
        ),
        _test(
            "test_ex2_normalise",
            (
                '"""Check that every row has unit norm."""\n'
                "out = normalise_rows(torch.ones(2, 4))\n"
                "assert tuple(out.shape) == (2, 4)\n"
                "### BEGIN HIDDEN TESTS\n"
                "from featurelab import evidence as _evidence\n"
                "\n"
                "_evidence.record(\n"
                '    "test_ex2_normalise",\n'
                "    visible=_evidence.attempt(normalise_rows, torch.ones(2, 4)),\n"
                '    probe=_evidence.attempt(normalise_rows, _evidence.probes().tensors("ex2")["features"]),\n'
                ")\n"
                "### END HIDDEN TESTS"
            ),
            points=3,
        ),
        _readonly(
            "q1_text",
            new_markdown_cell(
                "### Question 1 (1 point)\n\nWhy normalise feature rows before a linear classifier?"
            ),
        ),
        _answer(
            "q1_why_normalise",
            (
                "### BEGIN SOLUTION\n"
                "So that every image weighs the same whatever its contrast: the classifier compares "
                "directions, not magnitudes.\n\n"
                "**Rubric (1 point):** 0.5 pt: the norm depends on the contrast, not on the class; "
                "0.5 pt: normalised rows are compared by their direction only.\n"
                "### END SOLUTION"
            ),
            points=1,
        ),
        _readonly(
            "ex3_text",
            new_markdown_cell(
                "### Exercise 3 (1 point)\n\nWrite `accuracy(predictions, targets)` for two `(N,)` "
                "tensors of labels."
            ),
        ),
        _solution(
            "ex3_accuracy",
            (
                "def accuracy(predictions, targets):\n"
                '    """Fraction of equal entries of two (N,) label tensors, as a float."""\n'
                "    ### BEGIN SOLUTION\n"
                "    return (predictions == targets).float().mean().item()\n"
                "    ### END SOLUTION"
            ),
        ),
        _readonly(
            "ex3_report",
            new_code_cell(
                "from featurelab.reporting import report_metric\n"
                "\n"
                "toy_accuracy = accuracy(torch.tensor([0, 1, 1, 0]), torch.tensor([0, 1, 0, 0]))\n"
                'report_metric("accuracy", toy_accuracy)\n'
                'print(f"accuracy = {toy_accuracy:.2f}")'
            ),
        ),
        _test(
            "test_ex3_accuracy",
            (
                '"""Check the accuracy of the toy predictions."""\n'
                "assert abs(toy_accuracy - 0.75) < 1e-9\n"
                "### BEGIN HIDDEN TESTS\n"
                "from featurelab import evidence as _evidence\n"
                "\n"
                '_probe = _evidence.probes().tensors("ex3")\n'
                "_evidence.record(\n"
                '    "test_ex3_accuracy",\n'
                "    toy_accuracy=toy_accuracy,\n"
                '    probe=_evidence.attempt(accuracy, _probe["predictions"], _probe["targets"]),\n'
                ")\n"
                "### END HIDDEN TESTS"
            ),
            points=1,
        ),
        _readonly("summary", new_markdown_cell("## Summary\n\n- Squares, norms and accuracies.")),
    ]
    return _notebook(cells)


def build_toy2() -> nbformat.NotebookNode:
    cells = [
        _readonly("title", new_markdown_cell("# Toy assignment 2\n\nAnother tiny TP.")),
        _readonly("ex1_text", new_markdown_cell("### Exercise 1 (1 point)\n\nWrite `cube(x)`.")),
        _solution(
            "ex1_cube",
            (
                "def cube(x):\n"
                '    """Return ``x ** 3``."""\n'
                "    ### BEGIN SOLUTION\n"
                "    return x ** 3\n"
                "    ### END SOLUTION"
            ),
        ),
        _test(
            "test_ex1_cube",
            (
                '"""Check that cube cubes."""\n'
                "assert cube(2) == 8\n"
                "### BEGIN HIDDEN TESTS\n"
                "from featurelab import evidence as _evidence\n"
                "\n"
                '_evidence.record("test_ex1_cube", visible=_evidence.attempt(cube, 2),\n'
                "                 probe=_evidence.attempt(cube, -3))\n"
                "### END HIDDEN TESTS"
            ),
            points=1,
        ),
        _readonly("summary", new_markdown_cell("## Summary\n\n- Cubes.")),
    ]
    return _notebook(cells)


def _notebook(cells) -> nbformat.NotebookNode:
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    return nb


if __name__ == "__main__":
    for path, notebook in ((TOY_NOTEBOOK, build()), (TOY2_NOTEBOOK, build_toy2())):
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, path)
        print(f"wrote {path}")
