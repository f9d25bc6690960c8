"""OverLORD's networks: the StyleGAN2 generator fed with the concatenated codes, the StyleGAN2
discriminator, and StarGAN-v2-style residual encoders, as the published OverLORD builds them from
rosinality's StyleGAN2 layers.

The modules carry the published modules' attribute names, so a state dict of the original maps onto
them by name (see lord/interop.py). Plain PyTorch only (no custom kernels): the modulated convolution
scales the input by the style and the output by the demodulation coefficients around one ordinary
convolution, which computes the same as a grouped convolution with per-sample weights and runs as
plain cuDNN/oneDNN convolutions; the blur filters are fixed, non-trainable depthwise convolutions.
"""

import math

import torch
from torch import nn
import torch.nn.functional as F

MIN_IMG_SIZE = 32
MAX_IMG_SIZE = 512
ACTIVATION_GAIN = math.sqrt(2)
BLUR_TAPS = (1.0, 3.0, 3.0, 1.0)


def channels_at(resolution, channel_base, channel_max):
    """StyleGAN2's width at a resolution: channel_base 32768 and channel_max 512 give the published
    widths (rosinality's channel_multiplier 2): 512 up to 64 px, then 256, 128, 64, 32."""
    return min(channel_base // resolution, channel_max)


def check_architecture(img_size, img_channels, channel_base, channel_max):
    """Fail early with the reason instead of with a shape error deep inside a forward pass."""
    if not isinstance(img_size, int) or img_size & (img_size - 1) or not MIN_IMG_SIZE <= img_size <= MAX_IMG_SIZE:
        raise ValueError(f"img_size must be a power of two from {MIN_IMG_SIZE} to {MAX_IMG_SIZE}, got {img_size!r}")
    if img_channels < 1:
        raise ValueError(f"img_channels must be positive, got {img_channels}")
    if channels_at(img_size, channel_base, channel_max) < 1:
        raise ValueError(
            f"channel_base={channel_base}, channel_max={channel_max} leave no channels at {img_size} px "
            f"(channels at resolution r are min(channel_base // r, channel_max))"
        )


def resolutions_up_to(img_size):
    return [2**i for i in range(2, int(math.log2(img_size)) + 1)]


def float32_matmul(a, b):
    """a @ b in at least float32 even under autocast: for the small statistics that normalise activations."""
    dtype = torch.promote_types(torch.promote_types(a.dtype, b.dtype), torch.float32)
    with torch.autocast(a.device.type, enabled=False):
        return a.to(dtype) @ b.to(dtype)


def blur_kernel(gain=1.0):
    """The 4x4 low-pass filter: the outer product of [1, 3, 3, 1], normalised to sum to `gain`."""
    taps = torch.tensor(BLUR_TAPS)
    kernel = torch.outer(taps, taps)
    return kernel / kernel.sum() * gain


def depthwise(kernel, channels, dtype):
    return kernel.to(dtype).expand(channels, 1, *kernel.shape)


class Blur(nn.Module):
    """The low-pass filter after padding (before, after) on both axes; `gain` 4 after a 2x upsampling."""

    def __init__(self, pad, gain=1.0):
        super().__init__()
        self.register_buffer("kernel", blur_kernel(gain), persistent=False)
        self.pad = tuple(pad)

    def forward(self, x):
        before, after = self.pad
        x = F.pad(x, [before, after, before, after])
        return F.conv2d(x, depthwise(self.kernel, x.shape[1], x.dtype), groups=x.shape[1])


class Upsample(nn.Module):
    """2x upsampling by zero insertion and the blur (gain 4), as one strided depthwise transposed
    convolution: the same as padding (2, 1) around the zero-inserted image and filtering."""

    def __init__(self):
        super().__init__()
        self.register_buffer("kernel", blur_kernel(gain=4.0), persistent=False)

    def forward(self, x):
        return F.conv_transpose2d(x, depthwise(self.kernel, x.shape[1], x.dtype), stride=2, padding=1,
                                  groups=x.shape[1])


def scaled_leaky_relu(x, bias=None):
    """Leaky ReLU (slope 0.2) of x + bias, scaled by sqrt(2) so activations keep unit variance."""
    if bias is not None:
        x = x + bias.view(1, -1, *([1] * (x.ndim - 2))).to(x.dtype)
    return F.leaky_relu(x, 0.2) * ACTIVATION_GAIN


class FusedLeakyReLU(nn.Module):
    """A per-channel bias followed by the scaled leaky ReLU."""

    def __init__(self, channels, bias=True):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels)) if bias else None

    def forward(self, x):
        return scaled_leaky_relu(x, self.bias)


class EqualLinear(nn.Module):
    """Linear layer with equalized learning rate: N(0, 1) weights scaled by lr_mul / sqrt(fan_in) at
    run time, so Adam's step is the same for every layer whatever its fan-in."""

    def __init__(self, in_features, out_features, bias=True, bias_init=0.0, lr_mul=1.0, activation=False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.scale = lr_mul / math.sqrt(in_features)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x):
        bias = None if self.bias is None else self.bias * self.lr_mul
        if self.activation:
            # gain * leaky_relu(y + b) = leaky_relu(gain * y + gain * b) for a positive gain: the gain
            # joins the weight and the bias, and the activation is the only pass over the output.
            if bias is not None:
                bias = bias * ACTIVATION_GAIN
            return F.leaky_relu(F.linear(x, self.weight * (self.scale * ACTIVATION_GAIN), bias), 0.2, inplace=True)
        return F.linear(x, self.weight * self.scale, bias)


class EqualConv2d(nn.Module):
    """Convolution with equalized learning rate (see EqualLinear)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = 1 / math.sqrt(in_channels * kernel_size**2)
        self.stride = stride
        self.padding = padding

    def forward(self, x, activation=None, gain=1.0):
        """`activation`: a FusedLeakyReLU to apply next; `gain`: a positive factor on the output. Both
        join the convolution's weight and bias (gain * leaky_relu(y + b) = leaky_relu(gain * y + gain * b)),
        so the activation, where there is one, is the only pass over the output."""
        bias = self.bias
        if activation is not None:
            gain = gain * ACTIVATION_GAIN
            bias = activation.bias
        if bias is not None:
            bias = (bias * gain if gain != 1.0 else bias).to(x.dtype)
        weight = (self.weight * (self.scale * gain)).to(x.dtype)
        out = F.conv2d(x, weight, bias, stride=self.stride, padding=self.padding)
        return out if activation is None else F.leaky_relu(out, 0.2, inplace=True)


class ModulatedConv2d(nn.Module):
    """Convolution whose input channels are scaled per sample by a style (an affine map of the code,
    bias 1 at the start), with demodulation: each output channel is rescaled to unit expected variance
    for unit-variance inputs. `upsample`: a stride-2 transposed convolution followed by the blur. The
    weight is (out, in, k, k); the published layer keeps it with a leading batch axis of 1, which
    `channels_last` cannot take."""

    def __init__(self, in_channels, out_channels, kernel_size, style_dim, demodulate=True, upsample=False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channels, bias_init=1.0)
        self.scale = 1 / math.sqrt(in_channels * kernel_size**2)
        self.demodulate = demodulate
        self.upsample = upsample
        if upsample:
            self.blur = Blur(pad=(1, 1), gain=4.0)

    def forward(self, x, style, activation_bias=None):
        """`activation_bias`: also add this per-channel bias and apply the scaled leaky ReLU (what
        StyledConv does next), fused with the demodulation into two passes over the output."""
        style = self.modulation(style)
        weight = self.weight * self.scale
        x = x * style[:, :, None, None].to(x.dtype)
        if self.upsample:
            x = self.blur(F.conv_transpose2d(x, weight.transpose(0, 1).to(x.dtype), stride=2))
        else:
            x = F.conv2d(x, weight.to(x.dtype), padding=weight.shape[-1] // 2)
        if not self.demodulate:
            return x if activation_bias is None else scaled_leaky_relu(x, activation_bias)
        energy = weight.square().sum(dim=(2, 3))
        coefficients = torch.rsqrt(float32_matmul(style.square(), energy.t()) + 1e-8)
        if activation_bias is None:
            return x * coefficients[:, :, None, None].to(x.dtype)
        # gain * leaky_relu(y) = leaky_relu(gain * y) for a positive gain: the gain joins the
        # demodulation and the bias, and scale, shift and activation take two passes over x.
        shift = (activation_bias * ACTIVATION_GAIN).to(x.dtype).view(1, -1, 1, 1)
        scale = (coefficients * ACTIVATION_GAIN).to(x.dtype)[:, :, None, None]
        return F.leaky_relu(torch.addcmul(shift, x, scale), 0.2, inplace=True)


class StyledConv(nn.Module):
    """Modulated 3x3 convolution, then bias and activation (OverLORD has no per-pixel noise)."""

    def __init__(self, in_channels, out_channels, style_dim, upsample=False):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, style_dim, upsample=upsample)
        self.activate = FusedLeakyReLU(out_channels)

    def forward(self, x, style):
        if self.activate.bias is None:
            return self.activate(self.conv(x, style))
        return self.conv(x, style, activation_bias=self.activate.bias)


class ToRGB(nn.Module):
    """Modulated 1x1 convolution without demodulation, plus the upsampled image of the resolution below."""

    def __init__(self, in_channels, style_dim, img_channels=3, upsample=True):
        super().__init__()
        if upsample:
            self.upsample = Upsample()
        self.conv = ModulatedConv2d(in_channels, img_channels, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, img_channels, 1, 1))

    def forward(self, x, style, skip=None):
        out = self.conv(x, style) + self.bias.to(x.dtype)
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class ConstantInput(nn.Module):
    def __init__(self, channels, size=4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch_size):
        return self.input.expand(batch_size, -1, -1, -1)


class Generator(nn.Module):
    """Code (B, code_dim) -> image (B, img_channels, img_size, img_size): StyleGAN2's synthesis network
    with the same code as the style of every layer and no mapping network. The code is used as it is
    (no normalisation): the uncorrelated code's regulariser acts on its norm. The output is linear,
    trained to match images in [0, 1]."""

    def __init__(self, code_dim, img_size, img_channels=3, channel_base=32768, channel_max=512):
        super().__init__()
        check_architecture(img_size, img_channels, channel_base, channel_max)
        self.code_dim = code_dim
        self.img_size = img_size
        self.img_channels = img_channels
        resolutions = resolutions_up_to(img_size)
        channels = {r: channels_at(r, channel_base, channel_max) for r in resolutions}
        self.input = ConstantInput(channels[4])
        self.conv1 = StyledConv(channels[4], channels[4], code_dim)
        self.to_rgb1 = ToRGB(channels[4], code_dim, img_channels, upsample=False)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        for previous, resolution in zip(resolutions, resolutions[1:]):
            self.convs.append(StyledConv(channels[previous], channels[resolution], code_dim, upsample=True))
            self.convs.append(StyledConv(channels[resolution], channels[resolution], code_dim))
            self.to_rgbs.append(ToRGB(channels[resolution], code_dim, img_channels))

    def forward(self, code):
        x = self.conv1(self.input(code.shape[0]), code)
        img = self.to_rgb1(x, code)
        for up_conv, conv, to_rgb in zip(self.convs[::2], self.convs[1::2], self.to_rgbs):
            x = conv(up_conv(x, code), code)
            img = to_rgb(x, code, img)
        return img


class ConvLayer(nn.Sequential):
    """[blur, stride-2] equalized convolution, then bias and activation (or a plain bias, or none),
    times `output_gain`. The published layer applies its modules one after the other; this one hands
    the bias, the activation's gain and `output_gain` to the convolution (see EqualConv2d.forward)."""

    def __init__(self, in_channels, out_channels, kernel_size, downsample=False, bias=True, activate=True,
                 output_gain=1.0):
        layers = []
        if downsample:
            extra = 4 - 2 + kernel_size - 1
            layers.append(Blur(pad=((extra + 1) // 2, extra // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(EqualConv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                                  bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_channels, bias=bias))
        super().__init__(*layers)
        self.output_gain = output_gain

    def forward(self, x):
        layers = list(self)
        activation = layers.pop() if isinstance(layers[-1], FusedLeakyReLU) else None
        for blur in layers[:-1]:
            x = blur(x)
        return layers[-1](x, activation=activation, gain=self.output_gain)


class ResBlock(nn.Module):
    """Two 3x3 convolutions (the second blurred and strided) plus a blurred, strided 1x1 skip, summed
    and scaled by 1/sqrt(2) so the sum keeps the activations' variance."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv1 = ConvLayer(in_channels, in_channels, 3)
        # the 1/sqrt(2) joins both branches' weights (a positive factor passes through the activation)
        self.conv2 = ConvLayer(in_channels, out_channels, 3, downsample=True, output_gain=1 / math.sqrt(2))
        self.skip = ConvLayer(in_channels, out_channels, 1, downsample=True, bias=False, activate=False,
                              output_gain=1 / math.sqrt(2))

    def forward(self, x):
        return self.conv2(self.conv1(x)) + self.skip(x)


def minibatch_std(x, group_size, eps=1e-8):
    """Append one channel: the standard deviation over a group of samples of every feature, averaged
    over the features. As StyleGAN2 does, sample b falls in group b mod (B / G) with G = min(group_size,
    B); where G does not divide B, the largest divisor of B below it is used (StyleGAN2 would fail)."""
    batch, channels, height, width = x.shape
    group = min(group_size, batch)
    while batch % group:
        group -= 1
    grouped = x.to(torch.promote_types(x.dtype, torch.float32)).view(group, -1, channels, height, width)
    std = torch.sqrt(grouped.var(dim=0, unbiased=False) + eps).mean(dim=(1, 2, 3))
    stat = std.view(-1, 1, 1, 1).repeat(group, 1, height, width).to(x.dtype)
    return torch.cat([x, stat], dim=1)


class Discriminator(nn.Module):
    """Image -> one realness logit per image, shape (B,): StyleGAN2's residual discriminator."""

    def __init__(self, img_size, img_channels=3, channel_base=32768, channel_max=512, mbstd_group_size=4):
        super().__init__()
        check_architecture(img_size, img_channels, channel_base, channel_max)
        resolutions = resolutions_up_to(img_size)[::-1]
        channels = {r: channels_at(r, channel_base, channel_max) for r in resolutions}
        self.convs = nn.Sequential(
            ConvLayer(img_channels, channels[img_size], 1),
            *[ResBlock(channels[resolution], channels[resolution // 2]) for resolution in resolutions[:-1]],
        )
        self.mbstd_group_size = mbstd_group_size
        self.final_conv = ConvLayer(channels[4] + 1, channels[4], 3)
        self.final_linear = nn.Sequential(
            EqualLinear(channels[4] * 4 * 4, channels[4], activation=True),
            EqualLinear(channels[4], 1),
        )

    def forward(self, img):
        x = self.final_conv(minibatch_std(self.convs(img), self.mbstd_group_size))
        return self.final_linear(x.flatten(1)).squeeze(1)


class ResidualBlock(nn.Module):
    """StarGAN v2's pre-activation residual block with average-pool downsampling (no normalisation)."""

    def __init__(self, dim_in, dim_out):
        super().__init__()
        self.conv1 = nn.Conv2d(dim_in, dim_in, 3, 1, 1)
        self.conv2 = nn.Conv2d(dim_in, dim_out, 3, 1, 1)
        self.learned_shortcut = dim_in != dim_out
        if self.learned_shortcut:
            self.conv1x1 = nn.Conv2d(dim_in, dim_out, 1, 1, 0, bias=False)

    def forward(self, x):
        shortcut = self.conv1x1(x) if self.learned_shortcut else x
        shortcut = F.avg_pool2d(shortcut, 2)
        residual = self.conv1(F.leaky_relu(x, 0.2))
        residual = self.conv2(F.leaky_relu(F.avg_pool2d(residual, 2), 0.2))
        return (shortcut + residual) / math.sqrt(2)


class Encoder(nn.Module):
    """Image -> code (B, code_dim): a 3x3 convolution, residual blocks halving the size down to 4x4 (widths
    doubling from dim_in up to max_conv_dim), then a 4x4 valid and a 1x1 convolution. PyTorch's default
    initialisation, as published."""

    def __init__(self, img_size, img_channels, code_dim, dim_in=64, max_conv_dim=256):
        super().__init__()
        if not isinstance(img_size, int) or img_size & (img_size - 1) or img_size < 8:
            raise ValueError(f"img_size must be a power of two of at least 8, got {img_size!r}")
        blocks = [nn.Conv2d(img_channels, dim_in, 3, 1, 1)]
        width = dim_in
        for _ in range(int(math.log2(img_size)) - 2):
            out_width = min(width * 2, max_conv_dim)
            blocks.append(ResidualBlock(width, out_width))
            width = out_width
        blocks += [nn.LeakyReLU(0.2), nn.Conv2d(width, width, 4, 1, 0), nn.LeakyReLU(0.2),
                   nn.Conv2d(width, code_dim, 1, 1, 0)]
        self.main = nn.Sequential(*blocks)

    def forward(self, img):
        return self.main(img).flatten(1)
