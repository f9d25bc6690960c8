"""LPIPS, the learned perceptual image distance of Zhang et al. (2018) (lower = more similar).

Deep features of both images are taken at five layers of an ImageNet network, normalised to unit
length along the channels, and their squared difference is weighted per channel by the published
linear calibration layers (1x1 convolutions without bias, non-negative), averaged over space and
summed over layers. The backbone modules are laid out like torchvision's `alexnet().features` and
`vgg16().features`, so the official ImageNet files load unchanged (`features.N.weight/bias`), and
the calibration file of the `lpips` package (v0.1 `alex.pth` / `vgg.pth`) loads unchanged too: its
`linK.model.1.weight` entries become `calibration.K.weight` here.
"""

from dataclasses import dataclass

import torch
from torch import nn

from lord.errors import UserError
from lord.weights import VGG16_WEIGHTS, WeightFile, load_checked, load_weight_file
from lord.networks.vgg import vgg16_feature_layers

LPIPS_ENV = "LORD_LPIPS_WEIGHTS"
LPIPS_URL = "https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/{name}.pth"
SCALING_SHIFT = (-0.030, -0.088, -0.188)
SCALING_SCALE = (0.458, 0.448, 0.450)
NORMALISE_EPS = 1e-10


@dataclass(frozen=True)
class Backbone:
    taps: tuple
    channels: tuple
    weights: WeightFile
    calibration: WeightFile


def alexnet_feature_layers():
    """torchvision's `alexnet().features`, the same indices."""
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
    )


def _calibration_file(name, sha256_prefix):
    return WeightFile(
        description=f"the LPIPS v0.1 linear calibration weights for {name}",
        url=LPIPS_URL.format(name=name),
        file_name=f"{name}.pth",
        env=LPIPS_ENV,
        hub_file_name=f"lpips-v0.1-{name}-{sha256_prefix}.pth",
    )


BACKBONES = {
    "alex": Backbone(
        taps=(1, 4, 7, 9, 11),
        channels=(64, 192, 384, 256, 256),
        weights=WeightFile(
            description="the torchvision AlexNet ImageNet weights",
            url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
            file_name="alexnet-owt-7be5be79.pth",
            env="LORD_ALEXNET_WEIGHTS",
        ),
        calibration=_calibration_file("alex", "df73285e"),
    ),
    "vgg": Backbone(
        taps=(3, 8, 15, 22, 29),
        channels=(64, 128, 256, 512, 512),
        weights=VGG16_WEIGHTS,
        calibration=_calibration_file("vgg", "a78928a0"),
    ),
}


def calibration_key(layer):
    """The name of a calibration layer's weight in the `lpips` package's files."""
    return f"lin{layer}.model.1.weight"


def _check_backbone_name(backbone):
    if backbone not in BACKBONES:
        raise UserError(f"unknown LPIPS backbone {backbone!r}; expected one of {', '.join(BACKBONES)}")
    return BACKBONES[backbone]


def _unit_channels(features):
    return features / (features.square().sum(dim=1, keepdim=True).sqrt() + NORMALISE_EPS)


class LPIPS(nn.Module):
    """Per-image LPIPS distance between two (N, C, H, W) batches in [0, 1] (C = 1 or 3)."""

    def __init__(self, backbone="alex"):
        super().__init__()
        spec = _check_backbone_name(backbone)
        self.backbone = backbone
        self.taps = spec.taps
        layers = alexnet_feature_layers() if backbone == "alex" else vgg16_feature_layers()
        self.features = layers[: spec.taps[-1] + 1]
        self.calibration = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=1, bias=False) for c in spec.channels)
        self.register_buffer("shift", torch.tensor(SCALING_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALING_SCALE).view(1, 3, 1, 1), persistent=False)

    def load_backbone(self, state, origin="the backbone file"):
        """Take the `features.*` tensors of a torchvision ImageNet file; the classifier is not used."""
        features = {key[len("features."):]: value for key, value in state.items() if key.startswith("features.")}
        load_checked(self.features, features, BACKBONES[self.backbone].weights.description, origin)

    def load_calibration(self, state, origin="the calibration file"):
        spec = BACKBONES[self.backbone]
        renamed = {}
        for key, value in state.items():
            layer = next((i for i in range(len(spec.channels)) if key == calibration_key(i)), None)
            renamed[f"{layer}.weight" if layer is not None else key] = value
        load_checked(self.calibration, renamed, spec.calibration.description, origin)
        if any(bool((layer.weight < 0).any()) for layer in self.calibration):
            raise UserError(f"{origin} has negative calibration weights, so it is not an LPIPS weight file")

    def tapped_features(self, images):
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        x = (2 * images - 1 - self.shift.to(images.dtype)) / self.scale.to(images.dtype)
        outputs = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.taps:
                outputs.append(x)
        return outputs

    def forward(self, a, b):
        if a.shape != b.shape:
            raise ValueError(f"image batches differ in shape: {tuple(a.shape)} and {tuple(b.shape)}")
        distance = 0
        for features, calibration in zip(self.tapped_features(torch.cat([a, b])), self.calibration):
            features_a, features_b = _unit_channels(features).chunk(2)
            distance = distance + calibration((features_a - features_b).square()).mean(dim=(1, 2, 3))
        return distance


def load_lpips(backbone="alex", weights=None, backbone_weights=None, device=None, download=True):
    """LPIPS with the published weights, frozen, in eval mode.

    `weights`: the calibration file (else $LORD_LPIPS_WEIGHTS, a file or a directory holding
    alex.pth / vgg.pth); `backbone_weights`: the torchvision file (else $LORD_ALEXNET_WEIGHTS or
    $LORD_VGG16_WEIGHTS); either else from torch.hub's cache or a hash-checked download.
    """
    spec = _check_backbone_name(backbone)
    metric = LPIPS(backbone)
    metric.load_calibration(*load_weight_file(spec.calibration, weights, download))
    metric.load_backbone(*load_weight_file(spec.weights, backbone_weights, download))
    return metric.requires_grad_(False).eval().to(device or "cpu")


def lpips_available(backbone="alex", weights=None, backbone_weights=None, download=True):
    """Whether `load_lpips` with these arguments would succeed; never raises a UserError, so an
    evaluation can record null for LPIPS on a machine without the weight files."""
    try:
        load_lpips(backbone, weights, backbone_weights, download=download)
    except UserError:
        return False
    return True
