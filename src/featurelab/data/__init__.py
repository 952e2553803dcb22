"""Datasets: one registry, resumable verified downloads, safe extraction, loaders, fixtures.

Three datasets, each in its own folder of the data root (:func:`data_root`): the archive
``<name>/<filename>`` and the extracted folder next to it::

    scene15/15SceneData.zip               scene15/15SceneData/{train,test}/<Class>/*.jpg
    petimages/kagglecatsanddogs_5340.zip  petimages/PetImages/{Cat,Dog}/<N>.jpg
    cifar10/cifar-10-python.tar.gz        cifar10/cifar-10-batches-py/
    fixtures/                             the same three layouts, tiny and generated
                                          (smoke profile, :func:`make_fixtures`)

``prepare(name)`` downloads (with a byte progress bar, resuming an interrupted download with an
HTTP ``Range`` request), verifies (checksum, or the archive's structure where no checksum is
published) and extracts (into a temporary folder renamed into place). ``ensure(name,
download=True)`` does the same after checking the free disk space. ``dataset_dir(name,
profile)`` says where a dataset is, or raises :class:`DatasetMissingError` naming the command to
run. The loaders return map-style datasets with ``.classes`` (list[str]) and ``.targets``
(list[int]) whose items are ``(transform(image), label)`` with ``image`` a PIL RGB image.

From a shell (works in a pip install)::

    python -m featurelab.data get NAME|all [--root DIR]     download, verify, extract
    python -m featurelab.data verify NAME|all [--root DIR]  check what is on disk, offline
    python -m featurelab.data fixtures [--root DIR]         (re)generate the tiny fixtures
    python -m featurelab.data sha256 NAME [--root DIR]      the archive's sha256, to pin

Modules: :mod:`.registry` (data root, specs, errors, structure checks), :mod:`.archives`
(verify and extract archives), :mod:`.download` (``.part``, resume, verify, rename),
:mod:`.prepare` (prepare / ensure / verify, where a dataset is), :mod:`.loaders` (datasets,
subsets, scanning PetImages), :mod:`.fixtures` (generated smoke fixtures), :mod:`.cli`.
Everything public is re-exported here: ``featurelab.data.X`` is the name to use.
"""

from __future__ import annotations

from ..profiles import get_profile
from .archives import extract_dataset, safe_extract, verify_archive
from .download import download, fetch
from .fixtures import (
    FIXTURE_COUNTS,
    FIXTURE_PETIMAGES_ODD,
    FIXTURES_VERSION,
    _Py2Pickler,
    _Py2Str,
    _write_cifar_pickle,
    ensure_fixtures,
    fixture_paths,
    fixtures_version,
    make_fixtures,
)
from .loaders import (
    MANIFEST_FORMAT,
    CIFAR10Batches,
    ImageListDataset,
    load_cifar10,
    load_petimages,
    load_rgb,
    load_scene15,
    scan_images,
    stratified_indices,
    stratified_split,
)
from .prepare import (
    archive_sha256,
    check_free_space,
    dataset_dir,
    ensure,
    prepare,
    space_needed,
    verify,
)
from .registry import (
    CIFAR10_CLASSES,
    CIFAR10_FILES,
    DATA_ENV,
    GET_DATA_COMMAND,
    IMAGE_SUFFIXES,
    PETIMAGES_CLASSES,
    REGISTRY,
    SCENE15_CLASSES,
    SCENE15_TEST_COUNTS,
    USER_AGENT,
    ChecksumError,
    DataError,
    DatasetMissingError,
    DatasetSpec,
    DownloadError,
    InsufficientSpaceError,
    UnsafeArchiveError,
    VerificationError,
    _repo_dir,
    check_layout,
    data_root,
    file_digest,
    get_data_command,
    get_spec,
    how_to_get,
    list_files,
)

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_FILES",
    "DATA_ENV",
    "FIXTURES_VERSION",
    "FIXTURE_COUNTS",
    "FIXTURE_PETIMAGES_ODD",
    "GET_DATA_COMMAND",
    "IMAGE_SUFFIXES",
    "MANIFEST_FORMAT",
    "PETIMAGES_CLASSES",
    "REGISTRY",
    "SCENE15_CLASSES",
    "SCENE15_TEST_COUNTS",
    "USER_AGENT",
    "CIFAR10Batches",
    "ChecksumError",
    "DataError",
    "DatasetMissingError",
    "DatasetSpec",
    "DownloadError",
    "ImageListDataset",
    "InsufficientSpaceError",
    "UnsafeArchiveError",
    "VerificationError",
    "archive_sha256",
    "check_free_space",
    "check_layout",
    "data_root",
    "dataset_dir",
    "download",
    "ensure",
    "ensure_fixtures",
    "extract_dataset",
    "fetch",
    "file_digest",
    "fixture_paths",
    "fixtures_version",
    "get_data_command",
    "get_profile",
    "get_spec",
    "how_to_get",
    "list_files",
    "load_cifar10",
    "load_petimages",
    "load_rgb",
    "load_scene15",
    "make_fixtures",
    "prepare",
    "safe_extract",
    "scan_images",
    "space_needed",
    "stratified_indices",
    "stratified_split",
    "verify",
    "verify_archive",
]

# The public classes keep the module name they had before the split: pickles (DataLoader
# workers), reprs and the feature-cache keys (which include a dataset's class path) stay the
# same, and ``featurelab.data.X`` is where they are found.
for _cls in (
    CIFAR10Batches,
    ImageListDataset,
    DatasetSpec,
    DataError,
    DownloadError,
    VerificationError,
    ChecksumError,
    UnsafeArchiveError,
    DatasetMissingError,
    InsufficientSpaceError,
):
    _cls.__module__ = __name__
del _cls
# Kept for scripts written against the single-module version (bench/grading_warm.py).
_PRIVATE_REEXPORTS = (_Py2Pickler, _Py2Str, _write_cifar_pickle, _repo_dir)
