import pytest

from featurelab.profiles import PROFILE_ENV, ProfileError, get_profile, resolve_profile


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    monkeypatch.delenv(PROFILE_ENV, raising=False)
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)


def test_default_is_full():
    assert resolve_profile() == "full"
    assert resolve_profile(None) == "full"


def test_requested_profile_is_used():
    assert resolve_profile("smoke") == "smoke"
    assert resolve_profile(" Grading ") == "grading"


def test_nbgrader_execution_means_grading_even_if_notebook_asks_otherwise(monkeypatch):
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert resolve_profile("full") == "grading"


def test_environment_variable_wins_over_everything(monkeypatch):
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    monkeypatch.setenv(PROFILE_ENV, "smoke")
    assert resolve_profile("full") == "smoke"


def test_unknown_profile_is_a_clear_error(monkeypatch):
    with pytest.raises(ProfileError, match="unknown profile 'fast'"):
        resolve_profile("fast")
    monkeypatch.setenv(PROFILE_ENV, "tiny")
    with pytest.raises(ProfileError, match=PROFILE_ENV):
        resolve_profile()


def test_profile_facts():
    assert get_profile("smoke").allow_random_weights
    assert not get_profile("full").allow_random_weights
    assert not get_profile("grading").allow_random_weights
    assert get_profile("full").per_class("scene15", "train") is None
    grading = get_profile("grading")
    for dataset in ("scene15", "petimages", "cifar10"):
        for split in ("train", "test"):
            assert grading.per_class(dataset, split) > 0


def test_what_a_profile_changes_lives_in_the_profile():
    full, grading, smoke = (get_profile(name) for name in ("full", "grading", "smoke"))
    assert (full.extra_passes, grading.extra_passes, smoke.extra_passes) == (True, False, True)
    assert (full.fixtures, grading.fixtures, smoke.fixtures) == (False, False, True)
    assert full.finetune_per_class is None and full.finetune_epochs is None  # the notebook's
    assert grading.finetune_epochs == smoke.finetune_epochs == 1
    assert full.loader_workers and not grading.loader_workers


def test_notebooks_read_the_profile_instead_of_branching_on_its_name():
    import json
    import re
    from pathlib import Path

    branching = re.compile(r"""profile\s*(==|!=|\bin\b)\s*[\[("']""")
    root = Path(__file__).resolve().parents[1] / "solutions"
    found = []
    for path in sorted(root.glob("*/*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            source = "".join(cell["source"])
            if cell["cell_type"] == "code" and branching.search(source):
                found.append(f"{path.name}: {branching.search(source).group(0)}")
    assert found == []


def test_a_resolved_profile_is_passed_down_as_a_value(monkeypatch, tmp_path):
    """Notebooks resolve PROFILE once (``profile = fl.profiles.get_profile(PROFILE)``) and pass
    the value on: the loaders use it as it is and prints show its name."""
    from featurelab.data import DatasetMissingError, dataset_dir

    smoke = get_profile("smoke")
    assert get_profile(smoke) is smoke
    assert resolve_profile(smoke) == "smoke"
    assert f"profile: {smoke}" == "profile: smoke"
    # the value resolved earlier stands, as the name it came from would have
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert get_profile(smoke) is smoke and get_profile("smoke").name == "grading"
    monkeypatch.delenv("NBGRADER_EXECUTION")
    assert dataset_dir("scene15", smoke, tmp_path) == dataset_dir("scene15", "smoke", tmp_path)
    assert dataset_dir("scene15", smoke, tmp_path).is_relative_to(tmp_path / "fixtures")
    with pytest.raises(DatasetMissingError):  # the full profile wants the real dataset
        dataset_dir("scene15", get_profile("full"), tmp_path)
