"""featurelab: transfer learning by feature extraction with pretrained CNNs, the course kit.

``import featurelab as fl`` gives the helper modules the notebooks use:

* ``fl.profiles``  full / grading / smoke: data sizes, weights policy, thresholds
* ``fl.data``      dataset registry, downloads with checksums, loaders, tiny fixtures
* ``fl.backbones`` pretrained VGG16 / MobileNetV3-Large / ResNet-18, offline weights policy
* ``fl.features``  fast batched feature extraction with an on-disk cache
* ``fl.metrics``   NMI, ARI, confusion matrix, accuracy
* ``fl.plots``     image grids, feature maps, training curves, confusion matrices
* ``fl.device``    automatic device choice (cuda > mps > cpu)

No helper answers a graded exercise (the references live on the instructor side).
Submodules are imported lazily so that ``import featurelab`` stays cheap.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_SUBMODULES = (
    "backbones",
    "data",
    "device",
    "features",
    "metrics",
    "plots",
    "profiles",
    "reporting",
)


def __getattr__(name: str):
    if name == "report_metric":  # fl.report_metric(name, value): see featurelab.reporting
        return importlib.import_module(f"{__name__}.reporting").report_metric
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_SUBMODULES))
