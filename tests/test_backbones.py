"""Backbones: cut points and shapes with random weights, and the offline weights policy."""

import urllib.error

import pytest
import torch
import torchvision.models._api as weights_api

from autograder.checks import references
from featurelab import backbones
from featurelab.profiles import PROFILE_ENV


@pytest.fixture(autouse=True)
def empty_hub_cache(tmp_path, monkeypatch):
    """No weights cached and no network: every test starts from a clean torch hub cache."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv(PROFILE_ENV, raising=False)
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("offline (test)")

    monkeypatch.setattr(weights_api, "load_state_dict_from_url", offline)


@pytest.fixture(scope="module")
def random_models():
    return {name: backbones.load_model(name, pretrained=False)[0] for name in backbones.SPECS}


def test_parameter_counts_match_torchvision(random_models):
    for name, model in random_models.items():
        assert references.count_parameters(model) == backbones.SPECS[name].num_params
    vgg = random_models["vgg16"]
    assert references.count_parameters(vgg.features) == 14_714_688
    assert references.count_parameters(vgg.classifier) == 123_642_856


@pytest.mark.parametrize("name", ["vgg16", "mobilenet_v3_large", "resnet18"])
def test_every_cut_point_has_the_documented_shape(name, random_models):
    model = random_models[name]
    probe = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    for point in backbones.SPECS[name].cut_points:
        with torch.inference_mode():
            out = references.cut(model, name, point)(probe)
        assert tuple(out.shape) == (2, *backbones.SPECS[name].feature_shapes[point]), point


def test_vgg16_relu7_is_the_first_five_classifier_layers_and_shares_weights(random_models):
    vgg = random_models["vgg16"]
    relu7 = references.cut(vgg, "vgg16", "relu7")
    probe = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected = vgg.classifier[:5](torch.flatten(vgg.avgpool(vgg.features(probe)), 1))
        assert torch.equal(relu7(probe), expected)
        assert (relu7(probe) >= 0).all()
    assert relu7[0] is vgg.features  # shared, not copied


def test_resnet_layer4_trunk_matches_the_forward_of_the_full_network(random_models):
    resnet = random_models["resnet18"]
    captured = {}
    handle = resnet.layer4.register_forward_hook(lambda m, i, o: captured.setdefault("x", o))
    probe = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        resnet(probe)
        trunk_out = references.cut(resnet, "resnet18", "layer4")(probe)
    handle.remove()
    assert torch.equal(trunk_out, captured["x"])


def test_unknown_names_are_clear_errors(random_models):
    with pytest.raises(KeyError, match="unknown backbone 'alexnet'"):
        backbones.spec("alexnet")
    with pytest.raises(ValueError, match="no cut point 'layer3'"):
        references.cut(random_models["resnet18"], "resnet18", "layer3")


def test_random_init_is_seeded_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    first, _, _ = backbones.load_model("resnet18", pretrained=False)
    after = torch.rand(1)
    second, _, _ = backbones.load_model("resnet18", pretrained=False)
    assert torch.equal(before, after)
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_smoke_profile_falls_back_to_random_weights_loudly(capsys):
    model, weights, pretrained = backbones.load_model("resnet18", "smoke")
    assert pretrained is False
    assert weights is backbones.SPECS["resnet18"].weights
    assert len(weights.meta["categories"]) == 1000
    out = capsys.readouterr()
    assert "RANDOM-INITIALISED" in out.out
    assert out.err == ""  # nbgrader zeroes test cells that write to stderr
    assert not model.training


@pytest.mark.parametrize("profile", ["full", "grading"])
def test_other_profiles_refuse_random_weights_with_instructions(profile):
    with pytest.raises(backbones.WeightsUnavailableError) as error:
        backbones.load_model("resnet18", profile)
    message = str(error.value)
    assert "python -m featurelab.backbones get resnet18" in message
    assert "resnet18-f37072fd.pth" in message
    assert "offline (test)" in message


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_cached_weights_are_loaded_without_touching_the_file(zip_format):
    """Both checkpoint formats load (zip is memory-mapped); training the model leaves the file."""
    reference, _, _ = backbones.load_model("resnet18", pretrained=False)
    state = {k: v + 1.0 if v.is_floating_point() else v for k, v in reference.state_dict().items()}
    path = backbones.weights_cache_path(backbones.SPECS["resnet18"].weights)
    path.parent.mkdir(parents=True)
    torch.save(state, path, _use_new_zipfile_serialization=zip_format)
    stored = path.read_bytes()
    for profile in ("smoke", "full"):
        model, _, pretrained = backbones.load_model("resnet18", profile)
        assert pretrained is True and not model.training
        for key, value in model.state_dict().items():
            assert torch.equal(value, state[key]), key
        assert all(
            p.requires_grad and isinstance(p, torch.nn.Parameter) for p in model.parameters()
        )
        with torch.no_grad():
            model.fc.weight.mul_(0.0)  # copy on write: the mapped file is never written
    assert path.read_bytes() == stored


def test_a_damaged_cached_checkpoint_is_a_clear_error():
    path = backbones.weights_cache_path(backbones.SPECS["resnet18"].weights)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"half a download")
    with pytest.raises(backbones.WeightsUnavailableError) as error:
        backbones.load_model("resnet18", "full")
    assert "python -m featurelab.backbones get resnet18" in str(error.value)


def test_preprocessing_is_the_weights_transforms():
    image = torch.randint(0, 256, (3, 300, 260), dtype=torch.uint8)
    out = backbones.preprocessing("vgg16")(image)
    assert out.shape == (3, 224, 224)
    assert torch.allclose(out, backbones.SPECS["vgg16"].weights.transforms()(image))


def test_random_batchnorm_networks_keep_input_dependent_features(random_models):
    """Calibrated batch-norm statistics: random MobileNetV3 features neither vanish nor collapse."""
    model = random_models["mobilenet_v3_large"]
    assert not model.training
    probe = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        features = model.features(probe)
    assert features.abs().mean() > 1e-2
    assert (features[0] - features[1]).abs().mean() > 1e-2
