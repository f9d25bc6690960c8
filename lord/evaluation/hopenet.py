"""Hopenet (Ruiz et al., 2018), the head-pose estimator behind the `face.head_pose` metric.

A ResNet-50 whose pooled features feed three linear heads, one per Euler angle (yaw, pitch, roll),
each scoring 66 bins of 3 degrees; the angle is the softmax expectation over the bins, 3 * E[bin]
- 99 degrees. The modules carry the names of the published weight files (torchvision's ResNet-50
Bottleneck blocks, `fc_yaw`, `fc_pitch`, `fc_roll`, and the unused `fc_finetune` that the files
hold), so `hopenet_robust_alpha1.pkl`, the model the OverLORD evaluation uses, loads unchanged.
Its input is the image resized to 224x224 with Pillow's bilinear filter (as their torchvision
`Resize(224)` does on square images), scaled to [0, 1] and normalised with the ImageNet statistics.
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lord.evaluation.pil_resize import resize_8bit
from lord.weights import WeightFile, load_checked, load_weight_file

HOPENET_WEIGHTS = WeightFile(
    description="the Hopenet head-pose weights (300W-LP, alpha 1, robust to image quality)",
    url="https://drive.google.com/open?id=1m25PrSE7g9D2q2XJVMR6IA7RaCvWSzCR",
    file_name="hopenet_robust_alpha1.pkl",
    env="LORD_HOPENET_WEIGHTS",
)
N_BINS = 66
BIN_DEGREES = 3.0
FIRST_BIN_DEGREES = -99.0
INPUT_SIZE = 224
RESNET50_BLOCKS = (3, 4, 6, 3)
EXPANSION = 4
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BATCH = 64


class Bottleneck(nn.Module):
    """torchvision's ResNet-50 block: 1x1, 3x3 (strided), 1x1 convolutions with batch norm, plus the
    input (projected by `downsample` when its shape changes)."""

    def __init__(self, in_channels, width, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, width * EXPANSION, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width * EXPANSION)
        self.downsample = downsample

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


def residual_stage(in_channels, width, n_blocks, stride):
    downsample = None
    if stride != 1 or in_channels != width * EXPANSION:
        downsample = nn.Sequential(
            nn.Conv2d(in_channels, width * EXPANSION, kernel_size=1, stride=stride, bias=False),
            nn.BatchNorm2d(width * EXPANSION),
        )
    blocks = [Bottleneck(in_channels, width, stride, downsample)]
    blocks += [Bottleneck(width * EXPANSION, width) for _ in range(1, n_blocks)]
    return nn.Sequential(*blocks)


class Hopenet(nn.Module):
    """Normalised (N, 3, 224, 224) images -> (yaw, pitch, roll) bin logits, each (N, 66)."""

    def __init__(self, n_bins=N_BINS):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        channels = 64
        for index, (width, n_blocks) in enumerate(zip((64, 128, 256, 512), RESNET50_BLOCKS)):
            setattr(self, f"layer{index + 1}", residual_stage(channels, width, n_blocks, 1 if index == 0 else 2))
            channels = width * EXPANSION
        self.fc_yaw = nn.Linear(channels, n_bins)
        self.fc_pitch = nn.Linear(channels, n_bins)
        self.fc_roll = nn.Linear(channels, n_bins)
        self.fc_finetune = nn.Linear(channels + 3, 3)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), kernel_size=3, stride=2, padding=1)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        features = F.avg_pool2d(x, kernel_size=7).flatten(1)
        return self.fc_yaw(features), self.fc_pitch(features), self.fc_roll(features)


def expected_angle(logits):
    """Degrees from bin logits: the softmax expectation of the bin index, times 3, minus 99."""
    bins = torch.arange(logits.shape[1], device=logits.device, dtype=torch.float32)
    return (logits.float().softmax(dim=1) * bins).sum(dim=1) * BIN_DEGREES + FIRST_BIN_DEGREES


def preprocess(images):
    """uint8 (N, H, W, C) square images -> the normalised (N, 3, 224, 224) input."""
    pixels = torch.as_tensor(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    if pixels.shape[1] == 1:
        pixels = pixels.expand(-1, 3, -1, -1)
    pixels = resize_8bit(pixels, INPUT_SIZE, INPUT_SIZE).float() / 255
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (pixels - mean) / std


class HeadPoseEstimator:
    """uint8 (N, H, W, C) images -> (N, 3) float64 array of yaw, pitch and roll in degrees."""

    def __init__(self, network, device):
        self.network = network
        self.device = device

    @torch.no_grad()
    def __call__(self, images):
        angles = []
        for start in range(0, len(images), BATCH):
            inputs = preprocess(images[start:start + BATCH]).to(self.device)
            angles.append(torch.stack([expected_angle(logits) for logits in self.network(inputs)], dim=1).cpu())
        return torch.cat(angles).double().numpy()


def load_head_pose(path=None, device=None):
    """The head-pose estimator with the published Hopenet weights, found at `path`, at
    $LORD_HOPENET_WEIGHTS or in torch.hub's cache (they are published on Google Drive, which cannot
    be downloaded from unattended); a UserError says how to provide them otherwise."""
    state, origin = load_weight_file(HOPENET_WEIGHTS, path, download=False)
    network = load_checked(Hopenet(), state, HOPENET_WEIGHTS.description, origin)
    device = device or "cpu"
    return HeadPoseEstimator(network.requires_grad_(False).eval().to(device), device)
