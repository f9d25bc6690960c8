import pytest
import torch
import torch.nn.functional as F

from lord.errors import UserError
from lord.networks.vgg import PerceptualLoss, VGG16Features
from lord.weights import VGG16_WEIGHTS, load_weight_file, reconstruction_loss

# torchvision's vgg16 weight file: features.<index> for the 13 convolutions, then the classifier.
CONV_SHAPES = {
    0: (64, 3), 2: (64, 64), 5: (128, 64), 7: (128, 128), 10: (256, 128), 12: (256, 256), 14: (256, 256),
    17: (512, 256), 19: (512, 512), 21: (512, 512), 24: (512, 512), 26: (512, 512), 28: (512, 512),
}
CLASSIFIER_SHAPES = {0: (4096, 25088), 3: (4096, 4096), 6: (1000, 4096)}


def fake_vgg16_file(path, up_to=30, classifier=False):
    generator = torch.Generator().manual_seed(0)
    state = {}
    for index, (out_channels, in_channels) in CONV_SHAPES.items():
        if index > up_to:
            continue
        state[f"features.{index}.weight"] = torch.randn(out_channels, in_channels, 3, 3, generator=generator) * 0.05
        state[f"features.{index}.bias"] = torch.randn(out_channels, generator=generator) * 0.01
    if classifier:
        for index, shape in CLASSIFIER_SHAPES.items():
            state[f"classifier.{index}.weight"] = torch.zeros(shape)
            state[f"classifier.{index}.bias"] = torch.zeros(shape[0])
    torch.save(state, path)
    return state


def test_feature_layout_matches_torchvision_indices():
    features = VGG16Features((2, 7, 12, 21, 30)).features
    assert len(features) == 31
    conv_indices = {i for i, layer in enumerate(features) if isinstance(layer, torch.nn.Conv2d)}
    assert conv_indices == set(CONV_SHAPES)
    assert all(isinstance(features[i], torch.nn.MaxPool2d) for i in (4, 9, 16, 23, 30))
    for index, (out_channels, in_channels) in CONV_SHAPES.items():
        assert features[index].weight.shape == (out_channels, in_channels, 3, 3)


def test_full_weight_file_in_torchvision_layout_loads(tmp_path, monkeypatch):
    state = fake_vgg16_file(tmp_path / "vgg16-397923af.pth", classifier=True)
    monkeypatch.setenv("LORD_VGG16_WEIGHTS", str(tmp_path / "vgg16-397923af.pth"))
    loss = reconstruction_loss({"type": "vgg", "layers": [2, 7, 12, 21, 30], "weights": None}, download=False)
    torch.testing.assert_close(loss.vgg.features[28].weight, state["features.28.weight"])
    images = torch.rand(2, 3, 32, 32)
    assert loss(images, images).abs().max() < 1e-6
    assert (loss(images, torch.rand(2, 3, 32, 32)) > 0).all()


def test_tiny_weight_file_gives_the_expected_features(tmp_path):
    state = fake_vgg16_file(tmp_path / "tiny.pth", up_to=2)
    vgg = VGG16Features((2,))
    vgg.load_features(load_weight_file(VGG16_WEIGHTS, tmp_path / "tiny.pth", download=False)[0])
    x = torch.randn(1, 3, 8, 8)
    expected = F.conv2d(F.relu(F.conv2d(x, state["features.0.weight"], state["features.0.bias"], padding=1)),
                        state["features.2.weight"], state["features.2.bias"], padding=1)
    torch.testing.assert_close(vgg(x)[0], expected)


def test_grayscale_is_repeated_and_normalised(tmp_path):
    fake_vgg16_file(tmp_path / "tiny.pth", up_to=2)
    loss = PerceptualLoss((2,), torch.load(tmp_path / "tiny.pth", weights_only=True))
    gray = torch.rand(2, 1, 16, 16)
    torch.testing.assert_close(loss(gray, gray * 0.5), loss(gray.expand(-1, 3, -1, -1), gray.expand(-1, 3, -1, -1) * 0.5))


def test_missing_file_gives_the_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("LORD_VGG16_WEIGHTS", str(tmp_path / "absent.pth"))
    with pytest.raises(UserError) as error:
        reconstruction_loss({"type": "vgg", "layers": [2], "weights": None}, download=False)
    message = str(error.value)
    assert "LORD_VGG16_WEIGHTS" in message and "perceptual_loss.type=l1" in message and "does not exist" in message


def test_a_file_without_features_is_refused(tmp_path):
    torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
    with pytest.raises(UserError, match="features"):
        reconstruction_loss({"type": "vgg", "layers": [2], "weights": str(tmp_path / "other.pth")}, download=False)


def test_wrong_shapes_are_named(tmp_path):
    torch.save({"features.0.weight": torch.zeros(8, 3, 3, 3), "features.0.bias": torch.zeros(8),
                "features.2.weight": torch.zeros(64, 64, 3, 3), "features.2.bias": torch.zeros(64)},
               tmp_path / "wrong.pth")
    with pytest.raises(UserError, match="features.0.weight"):
        reconstruction_loss({"type": "vgg", "layers": [2], "weights": str(tmp_path / "wrong.pth")}, download=False)
