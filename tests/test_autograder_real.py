"""The real course, graded end to end in ONE parallel batch (2 workers, smoke profile).

The batch holds, for every TP: the solution as a student would submit it (full marks, no error
in any cell: this is also the notebooks' execution test under nbgrader) and the blank release
(zero on every autograded cell); the demo's typical mistakes (each must lose exactly the points
of the test cells it should); and, on the cheapest TP, the pathological submissions whose
outcome depends on a real notebook's content (stripped metadata recovered on a 50-cell
notebook, monkeypatching against the real hidden tests, an edited test cell, a duplicated
answer cell, another TP's notebook). The other fixtures (crashes, time and memory limits,
deleted cells, stderr, broken files) run on the toy course (tests/test_autograder_toy.py):
they test the machinery, not a notebook, and the limits they need are per batch and would not
fit the real notebooks' feature extraction.
"""

from __future__ import annotations

import os

import pytest

from autograder import batch as batching
from autograder import course, demo, students
from autograder.submissions import Submission
from tests.data import fixture_submissions as fx

pytestmark = pytest.mark.slow

ROOT = course.REPO_ROOT
ASSIGNMENTS = course.assignments(ROOT)
# Longest first, so that the two workers finish together and the cheap blank releases of the
# VGG16 TPs run after their solutions (the feature cache then serves them).
COST_ORDER = [
    "tp3_scene15_svm",
    "tp5_cifar10_clustering",
    "tp4_cats_dogs_mobilenet",
    "tp2_imagenet_prediction",
    "tp1_vgg16_architecture",
    "tp6_resnet18_features",
]

CHEAP = "tp6_resnet18_features"  # one photo through ResNet-18: the cheapest TP to execute
CHEAP_TARGET = fx.Target(
    assignment=CHEAP,
    answer="ex5_most_active",
    tests=("test_ex5_most_active",),
    function="most_active_channels",
    # ranks channels by |mean|: right on post-ReLU maps (the visible asserts pass), wrong on
    # the hidden probes with negative means
    wrong=("feature_maps.mean(dim=(1, 2))", "feature_maps.mean(dim=(1, 2)).abs()"),
    other="tp1_vgg16_architecture",
)
# fixture -> (status, test cells that must score 0 (None: not graded), words of the reason)
CHEAP_FIXTURES = {
    "stripped_metadata": ("repaired", (), "nbgrader metadata was missing"),
    "monkeypatch": ("ok", ("test_ex5_most_active",), ""),
    "edited_test": ("repaired", ("test_ex5_most_active",), "test_ex5_most_active edited"),
    "duplicated_cell": ("repaired", (), "ex5_most_active appears 2 times"),
    "other_assignment": (
        "wrong_assignment",
        None,
        "this is the notebook of tp1_vgg16_architecture",
    ),
}

# Correct work submitted in ways the instructions allow (issue 11); each keeps full marks:
# name -> (assignment, builder(source, release) -> notebook).
VARIANTS = {
    # the parameters cell of a Colab GPU / a Mac, with a data folder and a batch size of its own
    "colab_parameters": (
        "tp1_vgg16_architecture",
        lambda source, release: fx.left_over_parameters(source, release, "cuda"),
    ),
    "mac_parameters": (
        "tp6_resnet18_features",
        lambda source, release: fx.left_over_parameters(source, release, "mps"),
    ),
    # TP2 Ex. 4 restores the defaults after the experiment, as TP5's own locked cell does
    "restored_requires_grad": (
        "tp2_imagenet_prediction",
        lambda source, release: fx.solved_with(
            source,
            release,
            "ex4_eval_experiment",
            "model.requires_grad_(True)  # back to the defaults of the loaded model",
        ),
    ),
}

if not ASSIGNMENTS:
    pytest.skip("no source notebook in solutions/ yet", allow_module_level=True)


def _order(assignment: str) -> int:
    return COST_ORDER.index(assignment) if assignment in COST_ORDER else len(COST_ORDER)


@pytest.fixture(scope="module")
def batch(tmp_path_factory, fixture_root):
    """Everything graded at once; returns ``{(student, assignment): record}``."""
    root = tmp_path_factory.mktemp("real-batch")
    out = root / "out"
    folder = root / "submissions"
    template = batching.build_template(ROOT, ASSIGNMENTS, out / ".work")
    first, later = [], []
    for assignment in sorted(ASSIGNMENTS, key=_order):
        source = course.read_notebook(course.source_notebook(ROOT, assignment))
        release_nb = template.release(assignment).notebook
        for who, notebook, queue in (
            ("solution", students.solved_release(source, release_nb), first),
            ("blank", students.blank_release(release_nb), later),
        ):
            path = folder / f"{who}_{assignment}.ipynb"
            students.write(notebook, path)
            queue.append(Submission(who, assignment, path, path.name, "flat"))
        for name, (variant_of, build) in VARIANTS.items():
            if variant_of == assignment:
                path = fx.write_notebook(
                    build(source, release_nb), folder / f"{name}_{assignment}.ipynb"
                )
                later.append(Submission(name, assignment, path, path.name, "flat"))
    mistakes = [item for item in demo.DEMO if item.edits and item.assignment in ASSIGNMENTS]
    for item, path in zip(
        mistakes,
        demo.build_submissions(folder / "demo", template, ROOT, tuple(mistakes)),
        strict=True,
    ):
        later.append(Submission(item.student, item.assignment, path, path.name, "flat"))
    if CHEAP in ASSIGNMENTS and CHEAP_TARGET.other in ASSIGNMENTS:
        written = fx.write_fixtures(
            folder / "fixtures", ROOT, template.root, CHEAP_TARGET, list(CHEAP_FIXTURES)
        )
        for name, path in written.items():
            later.append(Submission(name, CHEAP, path, path.name, "flat"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FEATURELAB_DATA", str(fixture_root.parent))
        result = batching.grade_batch(
            first + later,
            out=out,
            course_root=ROOT,
            jobs=2,
            options=batching.Options(profile="smoke", timeout_cell=600),
            progress=False,
            work_dir=out / ".work",
            # no cache warm-up: each solution is in the batch anyway
            # (tests/test_hostile.py covers the warm-up)
            warm_up_min=10_000,
        )
    return {(r.student, r.assignment): r for r in result.records}


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_solution_gets_full_marks_without_any_error(batch, assignment):
    record = batch[("solution", assignment)]
    failing = [
        (c.grade_id, c.message)
        for c in record.cells
        if c.kind == "auto" and (c.score or 0) < c.points
    ]
    assert failing == [] and record.status == "ok", record.reason
    assert record.score == record.max_score > 0
    assert record.code_errors == [], "a cell of the solution raised an error"
    assert record.attempts == 1


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_blank_release_scores_zero(batch, assignment):
    record = batch[("blank", assignment)]
    assert record.status == "ok", record.reason
    passing = [c.grade_id for c in record.cells if c.kind == "auto" and (c.score or 0) > 0]
    assert passing == [], "these tests pass on the blank release"
    assert record.score == 0


@pytest.mark.parametrize(
    "assignment",
    sorted(
        {"tp3_scene15_svm", "tp4_cats_dogs_mobilenet", "tp5_cifar10_clustering"} & set(ASSIGNMENTS)
    ),
)
def test_solutions_report_their_metric(batch, assignment):
    assert "accuracy" in batch[("solution", assignment)].metrics


@pytest.mark.parametrize("name", [n for n, (a, _) in VARIANTS.items() if a in ASSIGNMENTS])
def test_correct_variants_keep_full_marks(batch, name):
    assignment = VARIANTS[name][0]
    record, solution = batch[(name, assignment)], batch[("solution", assignment)]
    assert record.status == "ok", record.reason
    lost = [
        (c.grade_id, c.score, c.points, c.message)
        for c in record.cells
        if c.kind == "auto" and (c.score or 0) < c.points
    ]
    assert lost == []
    assert record.score == solution.score == record.max_score > 0
    assert record.code_errors == []
    if name == "restored_requires_grad":
        scores = {c.grade_id: (c.score, c.points) for c in record.cells}
        assert scores["test_ex4_eval_experiment"] == (2, 2)


@pytest.mark.parametrize(
    "item",
    [i for i in demo.DEMO if i.edits and i.assignment in ASSIGNMENTS],
    ids=lambda i: f"{i.student}-{i.assignment}",
)
def test_demo_mistakes_lose_exactly_their_points(batch, item):
    record = batch[(item.student, item.assignment)]
    assert demo.check_outcomes([record], (item,)) == []
    solution = batch[("solution", item.assignment)]
    lost_points = sum(c.points for c in record.cells if c.grade_id in item.loses)
    assert record.score == solution.score - lost_points


@pytest.mark.skipif(CHEAP not in ASSIGNMENTS, reason=f"{CHEAP} not written yet")
@pytest.mark.parametrize("name", list(CHEAP_FIXTURES))
def test_pathological_submissions_of_a_real_tp(batch, name):
    record = batch[(name, CHEAP)]
    status, zero, words = CHEAP_FIXTURES[name]
    assert record.status == status, record.reason
    assert words in record.reason
    if zero is None:
        assert record.score == 0 and record.cells == []
        return
    lost = {c.grade_id for c in record.cells if c.kind == "auto" and (c.score or 0) < c.points}
    assert lost == set(zero), [(c.grade_id, c.message) for c in record.cells]


def test_no_grading_process_left_behind(batch):
    import psutil

    workers = [
        p
        for p in psutil.process_iter(["cmdline"])
        if "autograder.worker" in " ".join(p.info["cmdline"] or []) and p.ppid() == os.getpid()
    ]
    assert workers == []
