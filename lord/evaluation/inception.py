"""The InceptionV3 networks whose 2048-d pool features FID is computed from.

FID numbers are only comparable when computed with the same network. The community's is the
TensorFlow InceptionV3 of 2015-12-05, published for PyTorch as `pt_inception-2015-12-05-6726825d.pth`
(FIDInceptionV3). Its module names and tensor shapes follow torchvision's Inception3 (without the
auxiliary head, with a 1008-way fc), so the modules below carry the same names; its blocks differ
from torchvision's in their pooling: the average pools do not count the padding, and the last block
pools its pool branch with a max. The StarGAN v2 and OverLORD evaluation code uses torchvision's
own ImageNet InceptionV3 instead (ImageNetInceptionV3, `inception_v3_google-0cc3c7bd.pth`), whose
average pools count the padding; lord.evaluation.fid_paper holds that protocol.
"""

import torch
import torch.nn.functional as F
from torch import nn

from lord.weights import WeightFile, load_checked, load_weight_file

FID_WEIGHTS = WeightFile(
    description="the FID InceptionV3 weights",
    url="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
    file_name="pt_inception-2015-12-05-6726825d.pth",
    env="LORD_INCEPTION_WEIGHTS",
)
INPUT_SIZE = 299
FEATURE_DIM = 2048
N_LOGITS = 1008
IMAGENET_CLASSES = 1000


class BasicConv2d(nn.Module):
    """Convolution without bias, batch norm, ReLU."""

    def __init__(self, in_channels, out_channels, **conv_options):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **conv_options)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def average_pool(x, pad_counted=False):
    """3x3 average; by default over the real pixels only (the FID network's border windows do not
    count the padding, torchvision's do)."""
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=pad_counted)


class InceptionA(nn.Module):
    def __init__(self, in_channels, pool_features, pad_counted=False):
        super().__init__()
        self.pad_counted = pad_counted
        self.branch1x1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, kernel_size=1)

    def forward(self, x):
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(average_pool(x, self.pad_counted)),
        ], dim=1)


class InceptionB(nn.Module):
    def __init__(self, in_channels):
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x):
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, kernel_size=3, stride=2),
        ], dim=1)


class InceptionC(nn.Module):
    def __init__(self, in_channels, channels_7x7, pad_counted=False):
        super().__init__()
        self.pad_counted = pad_counted
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x):
        branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        branch7x7dbl = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            branch7x7dbl = layer(branch7x7dbl)
        return torch.cat([self.branch1x1(x), branch7x7, branch7x7dbl,
                          self.branch_pool(average_pool(x, self.pad_counted))], dim=1)


class InceptionD(nn.Module):
    def __init__(self, in_channels):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x):
        branch7x7x3 = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            branch7x7x3 = layer(branch7x7x3)
        return torch.cat([
            self.branch3x3_2(self.branch3x3_1(x)),
            branch7x7x3,
            F.max_pool2d(x, kernel_size=3, stride=2),
        ], dim=1)


class InceptionE(nn.Module):
    """`max_pool=True` is the FID network's last block, which max-pools its pool branch."""

    def __init__(self, in_channels, max_pool=False, pad_counted=False):
        super().__init__()
        self.max_pool = max_pool
        self.pad_counted = pad_counted
        self.branch1x1 = BasicConv2d(in_channels, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x):
        branch3x3 = self.branch3x3_1(x)
        branch3x3dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        if self.max_pool:
            pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        else:
            pooled = average_pool(x, self.pad_counted)
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(branch3x3), self.branch3x3_2b(branch3x3),
            self.branch3x3dbl_3a(branch3x3dbl), self.branch3x3dbl_3b(branch3x3dbl),
            self.branch_pool(pooled),
        ], dim=1)


class InceptionAux(nn.Module):
    """torchvision's auxiliary classifier: unused for features, kept so its weight file loads unchanged."""

    def __init__(self, in_channels, n_classes):
        super().__init__()
        self.conv0 = BasicConv2d(in_channels, 128, kernel_size=1)
        self.conv1 = BasicConv2d(128, 768, kernel_size=5)
        self.fc = nn.Linear(768, n_classes)


def pool_features(network, x):
    """The trunk shared by both networks, from a 299x299 input to the 2048-d mean of the last block."""
    x = network.Conv2d_2b_3x3(network.Conv2d_2a_3x3(network.Conv2d_1a_3x3(x)))
    x = F.max_pool2d(x, kernel_size=3, stride=2)
    x = network.Conv2d_4a_3x3(network.Conv2d_3b_1x1(x))
    x = F.max_pool2d(x, kernel_size=3, stride=2)
    for block in (network.Mixed_5b, network.Mixed_5c, network.Mixed_5d, network.Mixed_6a, network.Mixed_6b,
                  network.Mixed_6c, network.Mixed_6d, network.Mixed_6e, network.Mixed_7a, network.Mixed_7b,
                  network.Mixed_7c):
        x = block(x)
    return x.mean(dim=(2, 3))


def add_trunk(network, pad_counted):
    """The stem and blocks up to Mixed_6e, under torchvision's names (AuxLogits follows them there)."""
    network.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
    network.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
    network.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
    network.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
    network.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
    network.Mixed_5b = InceptionA(192, pool_features=32, pad_counted=pad_counted)
    network.Mixed_5c = InceptionA(256, pool_features=64, pad_counted=pad_counted)
    network.Mixed_5d = InceptionA(288, pool_features=64, pad_counted=pad_counted)
    network.Mixed_6a = InceptionB(288)
    network.Mixed_6b = InceptionC(768, channels_7x7=128, pad_counted=pad_counted)
    network.Mixed_6c = InceptionC(768, channels_7x7=160, pad_counted=pad_counted)
    network.Mixed_6d = InceptionC(768, channels_7x7=160, pad_counted=pad_counted)
    network.Mixed_6e = InceptionC(768, channels_7x7=192, pad_counted=pad_counted)


def add_last_blocks(network, pad_counted, last_max_pool):
    """Mixed_7a to Mixed_7c."""
    network.Mixed_7a = InceptionD(768)
    network.Mixed_7b = InceptionE(1280, pad_counted=pad_counted)
    network.Mixed_7c = InceptionE(2048, max_pool=last_max_pool, pad_counted=pad_counted)


class ImageNetInceptionV3(nn.Module):
    """torchvision's ImageNet InceptionV3 (`inception_v3_google-0cc3c7bd.pth` loads unchanged): a
    299x299 input, already normalised as the caller's protocol wants -> (N, 2048) pool features.

    The average pools count the padding, as torchvision's do; `AuxLogits` and `fc` are kept only so
    the weight file loads unchanged.
    """

    def __init__(self):
        super().__init__()
        add_trunk(self, pad_counted=True)
        self.AuxLogits = InceptionAux(768, IMAGENET_CLASSES)
        add_last_blocks(self, pad_counted=True, last_max_pool=False)
        self.fc = nn.Linear(FEATURE_DIM, IMAGENET_CLASSES)

    def forward(self, x):
        return pool_features(self, x)


class FIDInceptionV3(nn.Module):
    """Images in [0, 1], (N, C, H, W) of any size and 1 or 3 channels -> (N, 2048) pool features.

    Images are resized bilinearly to 299x299 and scaled to [-1, 1], the preprocessing the weights
    were converted with. `fc` is kept only so the weight file loads unchanged.
    """

    def __init__(self):
        super().__init__()
        add_trunk(self, pad_counted=False)
        add_last_blocks(self, pad_counted=False, last_max_pool=True)
        self.fc = nn.Linear(FEATURE_DIM, N_LOGITS)

    def forward(self, images):
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        x = F.interpolate(images, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        return pool_features(self, 2 * x - 1)


def load_weights(path=None, download=True):
    """(state dict, origin) of the FID weights: `path`, else $LORD_INCEPTION_WEIGHTS, else torch.hub
    (its cache, or a hash-checked download). A UserError says how to provide the file otherwise."""
    return load_weight_file(FID_WEIGHTS, path, download)


def load_inception(path=None, device=None, download=True):
    """The FID network with the published weights, frozen, in eval mode; never random weights."""
    state, origin = load_weights(path, download)
    network = load_checked(FIDInceptionV3(), state, FID_WEIGHTS.description, origin)
    return network.requires_grad_(False).eval().to(device or "cpu")
