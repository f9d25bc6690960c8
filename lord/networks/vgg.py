"""VGG16 features and the perceptual distance used as LORD's reconstruction loss.

`VGG16Features.features` is laid out exactly like torchvision's `vgg16().features` (a Sequential of
conv/ReLU/max-pool modules with the same indices), so the official ImageNet weight file
`vgg16-397923af.pth` loads unchanged (its `features.N.weight` / `features.N.bias` entries).
"""

import os
from pathlib import Path

import torch
from torch import nn

from lord.errors import UserError

VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
WEIGHTS_ENV = "LORD_VGG16_WEIGHTS"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def vgg16_feature_layers():
    layers, in_channels = [], 3
    for item in VGG16_LAYOUT:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(in_channels, item, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            in_channels = item
    return nn.Sequential(*layers)


def _describe_missing(tried):
    return (
        "VGG16 ImageNet weights are needed for the perceptual loss but none could be loaded ("
        + "; ".join(tried)
        + f"). Download {VGG16_URL} on a machine with internet and point {WEIGHTS_ENV}=/path/to/"
        "vgg16-397923af.pth (or --set perceptual_loss.weights=PATH) at it, or put it in the torch hub "
        "cache, or use --set perceptual_loss.type=l1 for a plain pixel loss"
    )


def load_vgg16_state_dict(path=None, download=True):
    """The `features.*` tensors of the torchvision VGG16 weight file.

    Order: an explicit path (config), then $LORD_VGG16_WEIGHTS, then torch.hub's cache or download
    (hash-checked). Never random weights: if none can be had, a UserError says how to provide them.
    """
    tried = []
    for source, candidate in (("config perceptual_loss.weights", path), (WEIGHTS_ENV, os.environ.get(WEIGHTS_ENV))):
        if not candidate:
            continue
        candidate = Path(candidate).expanduser()
        if not candidate.is_file():
            tried.append(f"{source} points to {candidate}, which does not exist")
            continue
        try:
            state = torch.load(candidate, map_location="cpu", weights_only=True)
        except Exception as error:  # a corrupt or foreign file
            raise UserError(f"cannot load VGG16 weights from {candidate}: {error}") from None
        return _features_only(state, candidate)
    if download:
        try:
            state = torch.hub.load_state_dict_from_url(
                VGG16_URL, map_location="cpu", check_hash=True, progress=False, weights_only=True
            )
            return _features_only(state, VGG16_URL)
        except Exception as error:  # offline, a proxy error or a hash mismatch
            tried.append(f"download from {VGG16_URL} failed: {type(error).__name__}: {error}")
    raise UserError(_describe_missing(tried or ["no path given"]))


def _features_only(state, origin):
    if not isinstance(state, dict):
        raise UserError(f"{origin} is not a VGG16 state_dict")
    features = {key: value for key, value in state.items() if key.startswith("features.")}
    if not features:
        raise UserError(f"{origin} holds no 'features.*' tensors; is it torchvision's vgg16 weight file?")
    return features


class VGG16Features(nn.Module):
    """The outputs of chosen `features` indices, for images already normalised for ImageNet."""

    def __init__(self, layer_ids=(2, 7, 12, 21, 30)):
        super().__init__()
        self.layer_ids = tuple(sorted(layer_ids))
        if not self.layer_ids or self.layer_ids[0] < 0 or self.layer_ids[-1] > 30:
            raise ValueError(f"VGG16 feature layer ids must lie in 0..30, got {layer_ids}")
        self.features = vgg16_feature_layers()[: self.layer_ids[-1] + 1]

    def load_features(self, state_dict):
        own = self.state_dict()
        needed = {key: value for key, value in state_dict.items() if key in own}
        missing = sorted(set(own) - set(needed))
        if missing:
            raise UserError(f"the VGG16 weight file lacks {', '.join(missing)}")
        wrong = [f"{key}: {tuple(needed[key].shape)} != {tuple(own[key].shape)}"
                 for key in needed if needed[key].shape != own[key].shape]
        if wrong:
            raise UserError(f"the VGG16 weight file has tensors of the wrong shape: {'; '.join(wrong)}")
        self.load_state_dict(needed)

    def forward(self, x):
        outputs = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.layer_ids:
                outputs.append(x)
        return outputs


class PerceptualLoss(nn.Module):
    """L1 on pixels plus the mean L1 of VGG16 features at `layer_ids`, per image.

    Images in [0, 1]; grayscale is repeated to three channels and everything is normalised with the
    ImageNet statistics before VGG. The VGG weights are frozen.
    """

    def __init__(self, layer_ids=(2, 7, 12, 21, 30), weights_path=None, download=True):
        super().__init__()
        self.vgg = VGG16Features(layer_ids)
        self.vgg.load_features(load_vgg16_state_dict(weights_path, download=download))
        self.vgg.requires_grad_(False)
        self.vgg.eval()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode=True):
        super().train(mode)
        self.vgg.eval()
        return self

    def normalize(self, images):
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        return (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)

    def forward(self, generated, target):
        batch = generated.shape[0]
        loss = (generated - target).abs().reshape(batch, -1).mean(dim=1)
        with torch.no_grad():
            target_features = self.vgg(self.normalize(target))
        for generated_feature, target_feature in zip(self.vgg(self.normalize(generated)), target_features):
            loss = loss + (generated_feature - target_feature).abs().reshape(batch, -1).float().mean(dim=1)
        return loss


class PixelLoss(nn.Module):
    """Mean absolute pixel error per image: the offline stand-in for the perceptual loss."""

    def forward(self, generated, target):
        return (generated - target).abs().reshape(generated.shape[0], -1).mean(dim=1)


def reconstruction_loss(perceptual_config, download=True):
    """The loss module a config's `perceptual_loss` block asks for."""
    if perceptual_config["type"] == "l1":
        return PixelLoss()
    return PerceptualLoss(perceptual_config["layers"], perceptual_config.get("weights"), download=download)
