"""VGG16 features and the perceptual distance used as LORD's reconstruction loss.

`VGG16Features.features` is laid out exactly like torchvision's `vgg16().features` (a Sequential of
conv/ReLU/max-pool modules with the same indices), so the official ImageNet weight file
`vgg16-397923af.pth` loads unchanged (its `features.N.weight` / `features.N.bias` entries); finding
that file is lord/weights.py's job.
"""

import torch
from torch import nn

from lord.errors import UserError

VGG16_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
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


class VGG16Features(nn.Module):
    """The outputs of chosen `features` indices, for images already normalised for ImageNet."""

    def __init__(self, layer_ids=(2, 7, 12, 21, 30)):
        super().__init__()
        self.layer_ids = tuple(sorted(layer_ids))
        if not self.layer_ids or self.layer_ids[0] < 0 or self.layer_ids[-1] > 30:
            raise ValueError(f"VGG16 feature layer ids must lie in 0..30, got {layer_ids}")
        self.features = vgg16_feature_layers()[: self.layer_ids[-1] + 1]

    def load_features(self, state_dict, origin="the VGG16 weight file"):
        """Load the `features.*` tensors this module needs from a torchvision VGG16 state dict."""
        own = self.state_dict()
        needed = {key: value for key, value in state_dict.items() if key in own}
        missing = sorted(set(own) - set(needed))
        if missing:
            raise UserError(f"{origin} lacks {', '.join(missing)}; is it torchvision's vgg16 weight file?")
        wrong = [f"{key}: {tuple(needed[key].shape)} != {tuple(own[key].shape)}"
                 for key in needed if needed[key].shape != own[key].shape]
        if wrong:
            raise UserError(f"{origin} has tensors of the wrong shape: {'; '.join(wrong)}")
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

    Images in [0, 1]; grayscale is repeated to three channels, and with `normalize` everything is
    standardised with the ImageNet statistics before VGG (the published LORD feeds VGG the [0, 1]
    images as they are; OverLORD normalises except for AFHQ). The VGG weights are frozen.
    """

    def __init__(self, layer_ids, vgg16_state, origin="the VGG16 weight file", normalize=True):
        super().__init__()
        self.standardize = normalize
        self.vgg = VGG16Features(layer_ids)
        self.vgg.load_features(vgg16_state, origin)
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
        if not self.standardize:
            return images
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
