"""The generated files of the student edition (:mod:`autograder.edition`): ``pyproject.toml``
and ``environment.yml`` (from this repository's ``pyproject.toml``), ``README.md`` (Colab
badges, set-up, datasets), ``LICENSE`` and ``.gitignore``."""

from __future__ import annotations

import json

from . import identity as identity_mod
from .course import REPO_ROOT

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

PYPROJECT = REPO_ROOT / "pyproject.toml"
LAB_REQUIREMENTS = ("jupyterlab", "ipykernel")  # taken from the `course` extra of pyproject.toml
# Datasets per assignment, named as `python -m featurelab.data get NAME` takes them.
DATASETS = {
    "tp3_scene15_svm": "scene15",
    "tp4_cats_dogs_mobilenet": "petimages",
    "tp5_cifar10_clustering": "cifar10",
}
DATA_COMMAND = "python -m featurelab.data get"


def _pyproject() -> dict:
    return tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))


def _requirement_name(spec: str) -> str:
    name = spec
    for sep in "<>=!~[; @":
        name = name.split(sep)[0]
    return name.strip().lower()


def lab_requirements(project: dict) -> list[str]:
    extras = project.get("optional-dependencies", {})
    wanted = []
    for spec in [s for specs in extras.values() for s in specs]:
        if _requirement_name(spec) in LAB_REQUIREMENTS and spec not in wanted:
            wanted.append(spec)
    missing = set(LAB_REQUIREMENTS) - {_requirement_name(s) for s in wanted}
    return wanted + sorted(missing)


def _toml_list(items: list[str], indent: str = "    ") -> str:
    return "[\n" + "".join(f"{indent}{json.dumps(item)},\n" for item in items) + "]"


def pyproject_text(project: dict, package_data: list[str]) -> str:
    deps = project["dependencies"]
    lab = lab_requirements(project)
    data = ""
    if package_data:
        data = f"\n[tool.setuptools.package-data]\nfeaturelab = {_toml_list(package_data)}\n"
    return f"""[build-system]
requires = ["setuptools>=77"]
build-backend = "setuptools.build_meta"

[project]
name = "featurelab"
version = {json.dumps(project["version"])}
description = "Course package of the featurelab practical-work notebooks: transfer learning by feature extraction with pretrained CNNs (PyTorch)."
readme = "README.md"
requires-python = {json.dumps(project.get("requires-python", ">=3.10"))}
license = "MIT"
license-files = ["LICENSE"]
# What the notebooks need (Colab installs exactly this).
dependencies = {_toml_list(deps)}

[project.optional-dependencies]
# Working on your own machine: JupyterLab and the Python kernel.
lab = {_toml_list(lab)}

[tool.setuptools.packages.find]
where = ["src"]
{data}"""


def environment_text(project: dict) -> str:
    lines = "".join(
        f"      - {spec}\n" for spec in [*project["dependencies"], *lab_requirements(project)]
    )
    return (
        "# conda env create -f environment.yml && conda activate featurelab\n"
        "# (the same packages as pyproject.toml with its [lab] extra)\n"
        "name: featurelab\nchannels:\n  - conda-forge\ndependencies:\n  - python=3.11\n"
        f"  - pip\n  - pip:\n{lines}      - -e .\n"
    )


LICENSE_TEXT = """MIT License

Copyright (c) {holder}

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""

GITIGNORE_TEXT = """.venv/
__pycache__/
*.egg-info/
.ipynb_checkpoints/
/data/
/build/
"""


def _title(notebook, assignment: str) -> str:
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return assignment


def readme_text(identity: identity_mod.CourseIdentity, titles: dict[str, str]) -> str:
    badge = "https://colab.research.google.com/assets/colab-badge.svg"
    rows = "\n".join(
        f"| [{titles[a]}](notebooks/{a}/{a}.ipynb) | "
        f"{'`' + DATA_COMMAND + ' ' + DATASETS[a] + '`' if a in DATASETS else 'none'} | "
        f"[![Open In Colab]({badge})]({identity.colab_notebook_url(a)}) |"
        for a in titles
    )
    names = [DATASETS[a] for a in titles if a in DATASETS]
    dataset_lines = (
        (
            f"{DATA_COMMAND} NAME    # NAME: {', '.join(names)} (see the table)\n"
            f"{DATA_COMMAND} all     # every dataset of the course"
        )
        if names
        else "# no notebook of this edition needs a dataset"
    )
    return f"""# featurelab: transfer learning by feature extraction (student edition)

Practical-work notebooks (TPs) on **feature extraction with pretrained CNNs** in PyTorch, and
`featurelab`, the small helper package they import. This is the course version `{identity.ref}`.

| notebook | data | Colab |
|---|---|---|
{rows}

## On Colab

Click a notebook's badge. Its first cell installs the course package, on Colab only:

    {identity.pip_requirement}

Choose a GPU runtime (Runtime > Change runtime type) for the TPs that extract features from a
dataset. On Colab the parameters cell's `DOWNLOAD = None` means yes: a missing dataset or
pretrained weight file is downloaded when the notebook first needs it (free space checked,
progress bar, checksum). A runtime reset wipes the runtime's disk: set
`DATA_ROOT = "/content/drive/MyDrive/featurelab"` in the parameters cell to keep the data, the
weights and the feature cache on your Google Drive (the notebook mounts it and asks for your
permission once).

## On your own machine

Two commands (Python >= 3.10 and git):

```bash
git clone --branch {identity.ref} {identity.clone_url} featurelab-course && cd featurelab-course
python3 -m venv .venv && .venv/bin/python -m pip install -e ".[lab]"
```

then `.venv/bin/jupyter lab notebooks/`. With conda instead:
`conda env create -f environment.yml && conda activate featurelab`, then `jupyter lab notebooks/`.

## Data and pretrained weights

```bash
{dataset_lines}
```

downloads a dataset, checks its checksum and extracts it, into `$FEATURELAB_DATA` (default:
`data/` in this folder; `~/.cache/featurelab/data` when the package is installed elsewhere).
It skips what is already there and verified. TPs without a dataset in the table need none.
The pretrained ImageNet weights go to the torch hub cache (`$TORCH_HOME`):
`python -m featurelab.backbones get all` fetches them ahead of time (before working offline).
Or set `DOWNLOAD = True` in a notebook's parameters cell: it then fetches the data and weights it
misses itself.

Each notebook starts with a parameters cell: `PROFILE` (`full`, the default: the real data),
`DATA_ROOT`, `DEVICE` (cuda > mps > cpu) and `BATCH_SIZE`. `PROFILE = "smoke"` (or
`FEATURELAB_PROFILE=smoke`) runs a notebook on tiny generated data: a quick check that your code
runs, not of its results.

## Check your work: the visible tests

Each exercise is followed by a test cell that opens with `\"\"\"Check that ...\"\"\"`. Run the
notebook from the top (Kernel > Restart Kernel and Run All Cells): a test cell that finishes
without an error passed; an `AssertionError` says what is wrong. The grader runs these tests
and more on the notebook you hand in, so:

* write your code where it says `YOUR CODE HERE` and your answers in the answer cells;
* do not delete, split or edit the test cells, and hand in the `.ipynb` file itself
  (keep its name and its cell metadata);
* a notebook that runs from top to bottom without an error is the one that gets graded well.

## License

MIT (see `LICENSE`).
"""
