"""Reference checks for tp3_scene15_svm (15 Scene: VGG16 relu7 + linear SVM).

The hidden tests of ``solutions/tp3_scene15_svm`` call these functions. Everything here is
independent of the weights (works with the random-initialised network of the smoke profile):
the student's code is compared with reference code *on the same model instance* and on fixed,
seeded probe inputs. Comparisons go through the monkeypatch-proof helpers of
:mod:`autograder.checks`.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.svm import LinearSVC
from torch import nn

from . import _PRISTINE, _as_tensor, tensors_close

# Shared with other assignments (re-exported: the hidden tests call them from this module).
from . import all_in_eval_mode as all_in_eval_mode
from . import num_parameters as num_parameters
from . import relative_error as relative_error
from . import shares_parameters as shares_parameters

ASSIGNMENT = "tp3_scene15_svm"
NUM_CLASSES = 15
RELU7_DIM = 4096
# features (14,714,688) + fc6 (25088*4096 + 4096) + fc7 (4096*4096 + 4096)
RELU7_NUM_PARAMS = 134_260_544
# Images per split in the profiles whose datasets are fixed; "smoke" uses the fixtures whole
# (their size is whatever featurelab.data.make_fixtures generates).
SPLIT_SIZES = {
    "full": {"train": 1500, "test": 2985},  # 100 train per class, the rest test (Lazebnik split)
    "grading": {"train": 15 * 10, "test": 15 * 10},  # Profile.per_class("scene15", ...)
}
PROBE_SEED = 20140101


def probe_images(n: int = 2, size: int = 224, seed: int = PROBE_SEED) -> torch.Tensor:
    """A fixed batch of ImageNet-normalised-looking inputs ``(n, 3, size, size)``."""
    generator = torch.Generator().manual_seed(seed + size)
    return torch.randn(n, 3, size, size, generator=generator)


def probe_grey(n: int = 3, height: int = 5, width: int = 7) -> torch.Tensor:
    """A fixed greyscale batch ``(n, 1, H, W)`` with values in [0, 1]."""
    generator = torch.Generator().manual_seed(PROBE_SEED + 1)
    return torch.rand(n, 1, height, width, generator=generator)


def reference_to_three_channels(grey: torch.Tensor) -> torch.Tensor:
    """``(N, 1, H, W) -> (N, 3, H, W)``: the grey plane copied into R, G and B."""
    return grey.repeat(1, 3, 1, 1)


def reference_relu7(model: nn.Module) -> nn.Module:
    """The reference relu7 extractor on ``model`` (shares its parameters)."""
    from featurelab.backbones import cut

    return cut(model, "vgg16", "relu7")


def reference_relu7_features(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """relu7 features ``(N, 4096)`` of ``images`` ``(N, 3, H, W)`` by the reference cut."""
    with torch.inference_mode():
        return reference_relu7(model).eval()(images).clone()


def probe_features(seed: int = PROBE_SEED) -> torch.Tensor:
    """``(6, 32)`` float32 rows of very different norms (incl. negative values)."""
    generator = torch.Generator().manual_seed(seed)
    rows = torch.randn(6, 32, generator=generator)
    scales = torch.tensor([1e-3, 0.5, 1.0, 3.0, 40.0, 1e3]).unsqueeze(1)
    return rows * scales


def reference_l2_normalize(features: torch.Tensor) -> torch.Tensor:
    """Rows of ``features`` ``(N, D)`` divided by their L2 norm (zero rows stay zero)."""
    return torch.nn.functional.normalize(features, p=2.0, dim=1)


def rows_have_unit_norm(features, atol: float = 1e-4) -> bool:
    """True when every row of ``features`` ``(N, D)`` has L2 norm 1 (within ``atol``)."""
    tensor = _as_tensor(features).double()
    norms = torch.linalg.vector_norm(tensor, dim=1)
    return tensors_close(norms, torch.ones_like(norms), rtol=0.0, atol=atol)


def same_directions(normalised, original, atol: float = 1e-4) -> bool:
    """True when each row of ``normalised`` points like the matching row of ``original``
    (cosine similarity 1)."""
    a, b = _as_tensor(normalised).double(), _as_tensor(original).double()
    cosines = torch.nn.functional.cosine_similarity(a, b, dim=1)
    return tensors_close(cosines, torch.ones_like(cosines), rtol=0.0, atol=atol)


def synthetic_svm_problem(seed: int = PROBE_SEED):
    """A linearly separable 3-class problem whose *test* labels are 20% wrong on purpose.

    Returns ``(X_train, y_train, X_test, y_test, expected_test_accuracy)``. Any sensible
    linear classifier separates the three far-apart blobs perfectly, so its test accuracy is
    exactly 0.8 (the flipped labels) while its training accuracy is 1.0.
    """
    rng = np.random.default_rng(seed)
    dim, per_class = 20, 30
    centres = np.zeros((3, dim), dtype=np.float32)
    centres[0, 0], centres[1, 1], centres[2, 2] = 10.0, 10.0, 10.0

    def blobs(n):
        x = np.concatenate([c + 0.3 * rng.standard_normal((n, dim)) for c in centres])
        return x.astype(np.float32), np.repeat(np.arange(3), n)

    x_train, y_train = blobs(per_class)
    x_test, y_test = blobs(10)
    flipped = rng.permutation(len(y_test))[: len(y_test) // 5]
    y_test = y_test.copy()
    y_test[flipped] = (y_test[flipped] + 1) % 3
    return x_train, y_train, x_test, y_test, 0.8


def is_linear_svc(classifier, c: float = 1.0) -> bool:
    """True when ``classifier`` is a fitted scikit-learn ``LinearSVC`` with ``C == c``."""
    return (
        _PRISTINE["isinstance"](classifier, LinearSVC)
        and _PRISTINE["abs"](float(classifier.C) - c) < 1e-12
        and hasattr(classifier, "coef_")
    )


def accuracy_of(classifier, features, labels) -> float:
    """Fraction of ``labels`` that ``classifier.predict(features)`` gets right."""
    predicted = np.asarray(classifier.predict(_as_tensor(features).numpy()))
    truth = _as_tensor(labels).numpy()
    return float((predicted == truth).mean())


def expected_split_size(split: str, profile: str, root=None) -> int:
    """Number of 15 Scene images in ``split`` for ``profile`` (fixtures: as generated)."""
    if profile in SPLIT_SIZES:
        return SPLIT_SIZES[profile][split]
    from featurelab.data import load_scene15

    return _PRISTINE["len"](load_scene15(split, profile=profile, root=root))


def split_targets(split: str, profile: str, root=None) -> torch.Tensor:
    """Labels ``(N,)`` of ``split`` in dataset order."""
    from featurelab.data import load_scene15

    return torch.as_tensor(load_scene15(split, profile=profile, root=root).targets)


def first_image(split: str, profile: str, root=None) -> torch.Tensor:
    """The first image of ``split`` as the network sees it: ``(1, 3, 224, 224)``."""
    from featurelab.backbones import preprocessing
    from featurelab.data import load_scene15

    dataset = load_scene15(split, transform=preprocessing("vgg16"), profile=profile, root=root)
    return dataset[0][0].unsqueeze(0)
