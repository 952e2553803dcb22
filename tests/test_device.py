"""Under the autograder the grader decides the machine settings of the parameters cell (issue 11).

A student who ran on a Colab GPU (``DEVICE = "cuda"``) or a Mac (``"mps"``) and submits without
resetting the parameters must not lose points on a grading machine without that device.
"""

from __future__ import annotations

import pytest
import torch

from featurelab import device as device_mod
from featurelab import profiles
from featurelab.device import DEVICE_ENV, auto_device


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    monkeypatch.delenv(DEVICE_ENV, raising=False)


@pytest.fixture
def cpu_only(monkeypatch):
    """A machine with neither CUDA nor MPS, whatever runs the tests."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device_mod, "_mps_available", lambda: False)


@pytest.fixture
def grader(monkeypatch):
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")


def test_a_missing_device_asked_for_is_a_clear_error_for_students(cpu_only):
    with pytest.raises(RuntimeError, match="'cuda' was asked for"):
        auto_device("cuda")
    with pytest.raises(RuntimeError, match="'mps' was asked for"):
        auto_device("mps")
    assert auto_device("cpu") == torch.device("cpu")
    assert auto_device() == auto_device("auto") == torch.device("cpu")


@pytest.mark.parametrize("left_over", ["cuda", "mps", "cuda:1", torch.device("cuda"), "cpu", None])
def test_under_the_grader_the_device_of_the_parameters_cell_is_ignored(cpu_only, grader, left_over):
    assert auto_device(left_over) == torch.device("cpu")


def test_under_the_grader_the_best_device_of_the_grading_machine_is_used(monkeypatch, grader):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert auto_device("cpu") == torch.device("cuda")
    assert auto_device("mps") == torch.device("cuda")


def test_the_grader_can_pin_its_device(monkeypatch, grader):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert auto_device("cuda") == torch.device("cpu")


def test_device_environment_variable_is_the_default_outside_the_grader(monkeypatch, cpu_only):
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert auto_device() == torch.device("cpu")
    monkeypatch.setenv(DEVICE_ENV, "cuda")
    with pytest.raises(RuntimeError, match="'cuda' was asked for"):
        auto_device()
    assert auto_device("cpu") == torch.device("cpu")  # an explicit choice wins for students


def test_batch_size_is_the_students_except_under_the_grader(monkeypatch):
    assert profiles.batch_size(256) == 256
    assert profiles.batch_size(8) == 8
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert profiles.batch_size(256) == profiles.GRADER_BATCH_SIZE == 32
    assert profiles.batch_size(8) == 32


def test_data_root_parameter_is_the_students_except_under_the_grader(monkeypatch):
    assert (
        profiles.requested_data_root("/content/drive/MyDrive/data") == "/content/drive/MyDrive/data"
    )
    assert profiles.requested_data_root(None) is None
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert profiles.requested_data_root("/content/drive/MyDrive/data") is None
