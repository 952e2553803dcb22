"""Shared pytest fixtures (keep this file small and generic)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def fixture_root(tmp_path_factory) -> Path:
    """The generated fixture datasets, built once per test session (read-only by convention).

    ``fixture_root`` is ``<tmp data root>/fixtures`` holding ``scene15/15SceneData``,
    ``petimages/PetImages`` and ``cifar10/cifar-10-batches-py`` (see
    ``featurelab.data.make_fixtures``). Pass one of those folders as a loader's ``root``, or
    ``monkeypatch.setenv("FEATURELAB_DATA", str(fixture_root.parent))`` so that the smoke
    profile finds them.
    """
    from featurelab.data import ensure_fixtures

    root = tmp_path_factory.mktemp("data") / "fixtures"
    root.parent.chmod(0o755)  # pytest makes 0700 folders: the grading sandbox's user reads it
    ensure_fixtures(root)
    return root


@pytest.fixture(scope="session")
def realdata_dir() -> Path:
    """The real images folder ($FEATURELAB_REALDATA, else ``<repo>/../shared/realdata``).

    Skips the test, saying why, when the folder is absent.
    """
    path = Path(os.environ.get("FEATURELAB_REALDATA") or REPO.parent / "shared" / "realdata")
    if not path.is_dir():
        pytest.skip(f"real images not found at {path} (set FEATURELAB_REALDATA to their folder)")
    return path
