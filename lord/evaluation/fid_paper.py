"""The FID protocol of the OverLORD paper's code (`evaluation/fid.py`, taken from StarGAN v2).

Its numbers are not comparable with the community's FID (lord.evaluation.inception): the network is
torchvision's ImageNet InceptionV3 (`inception_v3_google-0cc3c7bd.pth`), and each image is read as
an 8-bit PNG, resized with Pillow's bilinear filter first to 256x256 (the scripts' default
`--img_size`) and then to 299x299, scaled to [0, 1] and normalised with the ImageNet mean and
standard deviation; the features are the 2048-d average of the last block. The Fréchet distance
itself is the same formula (lord.evaluation.frechet).
"""

import torch
from torch import nn

from lord.evaluation.inception import INPUT_SIZE, ImageNetInceptionV3
from lord.evaluation.pil_resize import resize_8bit
from lord.weights import WeightFile, load_checked, load_weight_file

IMAGENET_INCEPTION_WEIGHTS = WeightFile(
    description="torchvision's ImageNet InceptionV3 weights (the paper's FID network)",
    url="https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth",
    file_name="inception_v3_google-0cc3c7bd.pth",
    env="LORD_IMAGENET_INCEPTION_WEIGHTS",
)
LOADER_SIZE = 256
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def preprocess(images):
    """Images in [0, 1], (N, C, H, W), C = 1 or 3 -> the (N, 3, 299, 299) network input the paper's
    data loader makes from their PNG files (grey images become RGB, as PIL's convert('RGB') does)."""
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    pixels = torch.round(images.clamp(0, 1) * 255)
    pixels = resize_8bit(pixels, LOADER_SIZE, LOADER_SIZE)
    pixels = resize_8bit(pixels, INPUT_SIZE, INPUT_SIZE)
    scaled = pixels.float() / 255
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    return (scaled - mean) / std


class PaperFIDFeatures(nn.Module):
    """Images in [0, 1], (N, C, H, W) of any size -> (N, 2048) features under the paper's protocol."""

    def __init__(self, network):
        super().__init__()
        self.network = network

    def forward(self, images):
        return self.network(preprocess(images))


def load_paper_inception(path=None, device=None, download=True):
    """The paper's FID feature network with the published weights, frozen, in eval mode; a
    UserError says how to provide the weights when they cannot be had."""
    state, origin = load_weight_file(IMAGENET_INCEPTION_WEIGHTS, path, download)
    network = load_checked(ImageNetInceptionV3(), state, IMAGENET_INCEPTION_WEIGHTS.description, origin)
    return PaperFIDFeatures(network).requires_grad_(False).eval().to(device or "cpu")
