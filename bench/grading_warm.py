"""Grading with a shared, warm feature cache: seconds per graded notebook, grading profile.

    .venv/bin/python bench/grading_warm.py [--n 3] [--assignments tp3_scene15_svm,...] [--json PATH]

What an instructor's ``python -m autograder grade`` does with a class: every submission is
graded in the ``grading`` profile (fixed, seeded subsets of the real datasets) and all of them
share one feature cache. For each TP this script grades one solution submission into an empty
cache (cold: the correct pipeline's features are extracted once), then ``--n`` more solution
submissions, each under its own student id (warm: a correct pipeline hits the shared entries).
One worker (``--jobs 1``), so each notebook has the machine's cores to itself, as in the issue's
target (the median warm notebook at most 30 s on 2 cores). It prints seconds per notebook (the
autograder's own per-submission wall clock: kernel start, every cell, nbgrader's bookkeeping)
and the median over all warm notebooks.

The data and weights are stand-ins built in a temporary folder, so that it runs offline:

* datasets from the real images in ``../shared/realdata`` (``FEATURELAB_REALDATA``): 15 Scene
  and the PetImages sample hard-linked in their real layouts (the PetImages sample doubled
  with mirrored copies, so that TP4's judge has held-out images); CIFAR-10 written in the python-batch
  format from the 10,000 test JPEGs (the test batch, and the same images spread over the five
  training batches: the real training pickles are not on this machine);
* "pretrained" weights: seeded random networks saved under torchvision's checkpoint file names
  in a private ``TORCH_HOME`` (the grading profile refuses random weights, the checkpoint loader
  accepts any file already in its cache). Same architectures, same cost; accuracies are
  meaningless, so a TP whose hidden tests check an accuracy threshold may lose those points
  (reported, not an error here).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

from extract import realdata_dir  # noqa: E402  (bench/extract.py, next to this file)

from autograder import batch as batching  # noqa: E402
from autograder import course, students  # noqa: E402
from autograder.submissions import Submission  # noqa: E402
from featurelab import backbones  # noqa: E402
from featurelab import data as fl_data  # noqa: E402


def _linked_copy(source: Path, target: Path) -> None:
    """``source`` copied to ``target``, files hard-linked where possible. Not a symbolic link:
    the grading sandbox mounts the data root alone, where a link out of it would dangle."""

    def link(src, dst) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link)
    for folder in [target, *(p for p in target.rglob("*") if p.is_dir())]:
        folder.chmod(0o755)


def _mirrored_copies(folder: Path) -> None:
    """Each JPEG of ``folder`` once more, mirrored: the 500 images per class of the PetImages
    sample leave no held-out test image for TP4's judge in the grading profile (300 + 100 per
    class); 1,000 per class do."""
    for path in sorted(folder.glob("*.jpg")):
        with Image.open(path) as image:
            mirrored = image.convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            mirrored.save(folder / f"{path.stem}_mirrored.jpg", quality=90)


def build_data_root(realdata: Path, root: Path) -> Path:
    """A featurelab data root whose three datasets come from the real images (see above)."""
    _linked_copy(realdata / "scene15", root / "scene15" / "15SceneData")
    _linked_copy(realdata / "petimages_sample" / "PetImages", root / "petimages" / "PetImages")
    for name in ("Cat", "Dog"):
        _mirrored_copies(root / "petimages" / "PetImages" / name)
    folder = root / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    classes = fl_data.CIFAR10_CLASSES
    images, labels, names = [], [], []
    for label, name in enumerate(classes):
        for path in sorted((realdata / "cifar10_test_jpg" / "test" / name).iterdir()):
            with Image.open(path) as image:
                images.append(np.asarray(image.convert("RGB")))
            labels.append(label)
            names.append(f"{name}_{path.stem}.png")
    order = np.random.default_rng(0).permutation(len(labels))
    rows = np.stack(images)[order].transpose(0, 3, 1, 2).reshape(len(labels), 3072)
    labels = [labels[i] for i in order]
    names = [names[i] for i in order]

    def batch(filename: str, description: str, part: slice) -> None:
        fl_data._write_cifar_pickle(
            folder / filename,
            {
                "batch_label": fl_data._Py2Str(description.encode()),
                "labels": labels[part],
                "data": np.ascontiguousarray(rows[part]),
                "filenames": [fl_data._Py2Str(n.encode()) for n in names[part]],
            },
        )

    batch("test_batch", "testing batch 1 of 1", slice(None))
    size = len(labels) // 5
    for number in range(5):
        batch(
            f"data_batch_{number + 1}",
            f"training batch {number + 1} of 5",
            slice(number * size, (number + 1) * size),
        )
    fl_data._write_cifar_pickle(
        folder / "batches.meta",
        {
            "num_cases_per_batch": size,
            "label_names": [fl_data._Py2Str(n.encode()) for n in classes],
            "num_vis": 3072,
        },
    )
    return root


def stand_in_weights(torch_home: Path) -> None:
    """Seeded random networks saved where torchvision looks for the pretrained checkpoints."""
    os.environ["TORCH_HOME"] = str(torch_home)
    for name in ("vgg16", "resnet18", "mobilenet_v3_large"):
        model, weights, _ = backbones.load_model(name, pretrained=False)
        path = backbones.weights_cache_path(weights)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), path)


def main(argv: list[str] | None = None) -> int:
    available = course.assignments(course.REPO_ROOT)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--assignments", default=",".join(available))
    parser.add_argument("--n", type=int, default=3, help="warm submissions per TP")
    parser.add_argument("--realdata", default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    assignments = [a for a in args.assignments.split(",") if a]
    unknown = sorted(set(assignments) - set(available))
    if unknown:
        sys.exit(f"not in solutions/: {', '.join(unknown)}")
    realdata = realdata_dir(args.realdata)
    started_all = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="featurelab-bench-warm-") as tmp:
        work = Path(tmp)
        os.environ["FEATURELAB_DATA"] = str(build_data_root(realdata, work / "data"))
        stand_in_weights(work / "torch")
        cache = work / "cache"
        template = batching.build_template(course.REPO_ROOT, assignments, work / "grading-work")
        options = batching.Options(profile="grading", timeout_cell=900)
        rows = []
        print(
            f"# grading profile, 1 job, {os.cpu_count()} cores, shared cache; seconds per notebook",
            flush=True,
        )
        for assignment in assignments:
            source = course.read_notebook(course.source_notebook(course.REPO_ROOT, assignment))
            solved = students.solved_release(source, template.release(assignment).notebook)
            batches = {"cold": ["cold00"], "warm": [f"warm{i:02d}" for i in range(args.n)]}
            for phase, people in batches.items():
                subs = []
                for who in people:
                    path = work / "submissions" / phase / f"{who}_{assignment}.ipynb"
                    students.write(solved, path)
                    subs.append(Submission(who, assignment, path, path.name, "flat"))
                load = os.getloadavg()[0]
                result = batching.grade_batch(
                    subs,
                    out=work / "out" / assignment / phase,
                    course_root=course.REPO_ROOT,
                    assignments=assignments,  # the template built above, not another one
                    options=options,
                    jobs=1,
                    cache_dir=cache,
                    progress=False,
                    resume=False,
                    work_dir=work / "grading-work",  # the template course is built once
                )
                for record in result.records:
                    lost = [
                        f"{cell.grade_id}: {cell.message.strip().splitlines()[-1][:120]}"
                        if cell.message.strip()
                        else cell.grade_id
                        for cell in record.cells
                        if cell.kind == "auto" and (cell.score or 0) < cell.points
                    ]
                    row = {
                        "assignment": assignment,
                        "phase": phase,
                        "student": record.student,
                        "seconds": record.seconds,
                        "score": record.score,
                        "max_score": record.max_score,
                        "status": record.status,
                        "load_before": round(load, 2),
                        "lost": lost,
                    }
                    rows.append(row)
                    print(
                        f"{assignment:26s} {phase:4s} {record.seconds:7.1f} s  "
                        f"{record.score:g}/{record.max_score:g} {record.status} "
                        f"(load {load:.1f})",
                        flush=True,
                    )
                    if phase == "cold":  # the same notebook every time: list what it lost once
                        for item in lost:
                            print(f"    lost {item}", flush=True)
        warm = [row["seconds"] for row in rows if row["phase"] == "warm"]
        cold = [row["seconds"] for row in rows if row["phase"] == "cold"]
        summary = {
            "warm_median_s": statistics.median(warm) if warm else None,
            "warm_max_s": max(warm) if warm else None,
            "cold_median_s": statistics.median(cold) if cold else None,
            "per_assignment_warm_median_s": {
                a: statistics.median(
                    [r["seconds"] for r in rows if r["assignment"] == a and r["phase"] == "warm"]
                )
                for a in assignments
                if args.n
            },
            "cache_entries": len(list(cache.glob("*.features"))) if cache.is_dir() else 0,
            "total_s": round(time.monotonic() - started_all, 1),
        }
        print(json.dumps(summary, indent=2))
        if args.json:
            Path(args.json).write_text(json.dumps({"rows": rows, "summary": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
