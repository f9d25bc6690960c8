"""LORD's networks (ICLR 2020): an AdaIN generator driven by a class code, and the encoders."""

import torch
from torch import nn
import torch.nn.functional as F


class Modulation(nn.Module):
    """Class code -> (bias, scale) of every AdaIN layer, one linear map.

    The published code has one linear map per layer and concatenates their outputs; this single map's
    weight is those maps' weights stacked in layer order, so the two compute the same.
    """

    def __init__(self, class_dim, n_adain_layers, adain_dim):
        super().__init__()
        self.n_adain_layers = n_adain_layers
        self.adain_dim = adain_dim
        self.linear = nn.Linear(class_dim, n_adain_layers * adain_dim * 2)

    def forward(self, class_code):
        params = self.linear(class_code)
        return params.view(-1, self.n_adain_layers, self.adain_dim, 2)


class AdaIN(nn.Module):
    """Instance normalisation whose per-channel scale and bias come from outside."""

    def __init__(self, eps=1e-5):
        super().__init__()
        self.eps = eps

    def forward(self, x, scale, bias):
        normalized = F.instance_norm(x, eps=self.eps)
        return torch.addcmul(bias[:, :, None, None], normalized, scale[:, :, None, None])


class Generator(nn.Module):
    """Content code -> image, with the class entering through AdaIN at every upsampling layer.

    content -> 3 fully connected layers -> (adain_dim, H/2^n, W/2^n) -> n x [2x upsample, 3x3 conv,
    LeakyReLU, AdaIN] -> 5x5 conv -> LeakyReLU -> 7x7 conv -> sigmoid. The LeakyReLU slope is
    PyTorch's default 0.01 in the published code.
    """

    def __init__(self, content_dim, class_dim, img_shape, n_adain_layers=4, adain_dim=256, final_conv_dim=64,
                 negative_slope=0.01):
        super().__init__()
        height, width, channels = img_shape
        factor = 2**n_adain_layers
        if height % factor or width % factor:
            raise ValueError(f"image size {height}x{width} is not divisible by 2^n_adain_layers = {factor}")
        self.initial_shape = (adain_dim, height // factor, width // factor)
        initial_size = adain_dim * (height // factor) * (width // factor)
        self.fc_layers = nn.Sequential(
            nn.Linear(content_dim, initial_size // 8), nn.LeakyReLU(negative_slope),
            nn.Linear(initial_size // 8, initial_size // 4), nn.LeakyReLU(negative_slope),
            nn.Linear(initial_size // 4, initial_size), nn.LeakyReLU(negative_slope),
        )
        self.modulation = Modulation(class_dim, n_adain_layers, adain_dim)
        self.upsample_convs = nn.ModuleList(
            nn.Conv2d(adain_dim, adain_dim, kernel_size=3, padding=1) for _ in range(n_adain_layers)
        )
        self.adain = AdaIN()
        self.activation = nn.LeakyReLU(negative_slope)
        self.last_convs = nn.Sequential(
            nn.Conv2d(adain_dim, final_conv_dim, kernel_size=5, padding=2), nn.LeakyReLU(negative_slope),
            nn.Conv2d(final_conv_dim, channels, kernel_size=7, padding=3), nn.Sigmoid(),
        )

    def forward(self, content_code, class_code):
        adain_params = self.modulation(class_code)
        x = self.fc_layers(content_code).view(-1, *self.initial_shape)
        for layer, conv in enumerate(self.upsample_convs):
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            x = self.activation(conv(x))
            x = self.adain(x, scale=adain_params[:, layer, :, 1], bias=adain_params[:, layer, :, 0])
        x = self.last_convs[1](self.last_convs[0](x))
        # The image in float32 even under autocast: bf16 would round each pixel by up to 1/256, a tenth
        # of a converged pixel loss. On a CPU under autocast this 3-channel convolution then runs in
        # channels_last, which oneDNN computes 1.6x faster than the default layout in float32.
        conv = self.last_convs[2]
        weight = conv.weight
        if x.device.type == "cpu" and x.dtype != weight.dtype:
            weight = weight.contiguous(memory_format=torch.channels_last)
        with torch.autocast(x.device.type, enabled=False):
            return self.last_convs[3](F.conv2d(x.float(), weight, conv.bias, padding=conv.padding))


class Encoder(nn.Module):
    """Image -> code: a 7x7 conv, four stride-2 convs (to H/16) and three fully connected layers.

    `center_input` (the toolkit's addition; off as published) feeds the convolutions 2x - 1 instead
    of the [0, 1] image: on images that are mostly a light background the first layer otherwise sees
    a large constant, and the class encoder learns its codes several times slower.
    """

    def __init__(self, img_shape, code_dim, channels=(64, 128, 256, 256, 256), fc_dim=256, negative_slope=0.01,
                 center_input=False):
        super().__init__()
        self.center_input = center_input
        height, width, img_channels = img_shape
        if len(channels) != 5:
            raise ValueError("the encoder takes five channel counts (one 7x7 conv, four stride-2 convs)")
        if height % 16 or width % 16:
            raise ValueError(f"image size {height}x{width} is not divisible by 16")
        layers = [nn.Conv2d(img_channels, channels[0], kernel_size=7, padding=3), nn.LeakyReLU(negative_slope)]
        for in_channels, out_channels in zip(channels[:-1], channels[1:]):
            layers += [nn.Conv2d(in_channels, out_channels, kernel_size=4, stride=2, padding=1),
                       nn.LeakyReLU(negative_slope)]
        self.conv_layers = nn.Sequential(*layers)
        self.fc_layers = nn.Sequential(
            nn.Linear(channels[-1] * (height // 16) * (width // 16), fc_dim), nn.LeakyReLU(negative_slope),
            nn.Linear(fc_dim, fc_dim), nn.LeakyReLU(negative_slope),
            nn.Linear(fc_dim, code_dim),
        )

    def forward(self, images):
        if self.center_input:
            images = images * 2 - 1
        return self.fc_layers(self.conv_layers(images).flatten(1))
