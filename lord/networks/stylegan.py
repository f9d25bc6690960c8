"""OverLORD's StyleGAN2-style networks: a style-modulated generator fed with the concatenated codes,
a residual discriminator with a minibatch standard deviation feature, and residual encoders.

Plain PyTorch only (no custom kernels): every layer is a cuDNN convolution, a depthwise blur or a
matmul, so the modules run on CPU in float32 and on CUDA under bf16 autocast with channels_last.
"""

import math

import torch
from torch import nn
import torch.nn.functional as F

MIN_IMG_SIZE = 32
MAX_IMG_SIZE = 512
ACTIVATION_GAIN = math.sqrt(2)


def channels_at(resolution, channel_base, channel_max):
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


def leaky_relu(x):
    """Leaky ReLU scaled by sqrt(2) so that activations keep roughly unit variance."""
    return F.leaky_relu(x, 0.2) * ACTIVATION_GAIN


class EqualLinear(nn.Module):
    """Linear layer with equalized learning rate: N(0, 1) weights scaled by lr_multiplier / sqrt(fan_in)
    at runtime, so Adam's step size is the same for every layer regardless of its fan-in."""

    def __init__(self, in_features, out_features, bias=True, bias_init=0.0, lr_multiplier=1.0, activation=False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init) / lr_multiplier)) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.lr_multiplier = lr_multiplier
        self.activation = activation

    def forward(self, x):
        bias = self.bias * self.lr_multiplier if self.bias is not None else None
        x = F.linear(x, self.weight * self.weight_gain, bias)
        return leaky_relu(x) if self.activation else x


class EqualConv2d(nn.Module):
    """Convolution with equalized learning rate (see EqualLinear); zero padding keeps the size at stride 1."""

    def __init__(self, in_channels, out_channels, kernel_size, bias=True, activation=False, stride=1, padding=None):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.stride = stride
        self.padding = kernel_size // 2 if padding is None else padding
        self.activation = activation

    def forward(self, x):
        x = F.conv2d(x, self.weight * self.weight_gain, self.bias, stride=self.stride, padding=self.padding)
        return leaky_relu(x) if self.activation else x


def blur_kernel(channels, gain):
    """Depthwise 4x4 low-pass filter: the outer product of [1, 3, 3, 1], normalised to sum to `gain`."""
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
    kernel = torch.outer(taps, taps)
    kernel = kernel / kernel.sum() * gain
    return kernel.expand(channels, 1, 4, 4).contiguous()


class BlurUpsample(nn.Module):
    """2x upsampling by zero insertion followed by the blur, as one strided depthwise transposed conv."""

    def __init__(self, channels):
        super().__init__()
        self.register_buffer("kernel", blur_kernel(channels, gain=4.0), persistent=False)

    def forward(self, x):
        return F.conv_transpose2d(x, self.kernel.to(x.dtype), stride=2, padding=1, groups=x.shape[1])


class Blur(nn.Module):
    """Low-pass filter; stride 2 with padding 1 halves the size, stride 1 with padding 2 prepares a
    stride-2 3x3 conv so that the pair downsamples by exactly 2 without aliasing."""

    def __init__(self, channels, stride, padding):
        super().__init__()
        self.register_buffer("kernel", blur_kernel(channels, gain=1.0), persistent=False)
        self.stride = stride
        self.padding = padding

    def forward(self, x):
        return F.conv2d(x, self.kernel.to(x.dtype), stride=self.stride, padding=self.padding, groups=x.shape[1])


class ModulatedConv2d(nn.Module):
    """Convolution whose input channels are scaled per sample by a style, an affine map of the latent.

    Computed as x * style -> conv with the shared weight -> * demodulation coefficient per (sample, out
    channel): exact, and plain cuDNN convolutions instead of a grouped conv with per-sample weights.
    Demodulation rescales each output channel to unit expected variance for unit-variance inputs.
    """

    def __init__(self, in_channels, out_channels, kernel_size, latent_dim, demodulate=True, upsample=False):
        super().__init__()
        self.affine = EqualLinear(latent_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.upsample = BlurUpsample(in_channels) if upsample else None
        self.demodulate = demodulate

    def forward(self, x, latent):
        styles = self.affine(latent)
        weight = self.weight * self.weight_gain
        x = x * styles[:, :, None, None].to(x.dtype)
        if self.upsample is not None:
            x = self.upsample(x)
        x = F.conv2d(x, weight.to(x.dtype), padding=weight.shape[-1] // 2)
        if self.demodulate:
            weight_energy = weight.square().sum(dim=(2, 3))
            coefficients = torch.rsqrt(float32_matmul(styles.square(), weight_energy.t()) + 1e-8)
            x = x * coefficients[:, :, None, None].to(x.dtype)
        return x


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv, then per-pixel noise with a learned strength, bias and activation."""

    def __init__(self, in_channels, out_channels, latent_dim, upsample=False, noise=True):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, latent_dim, upsample=upsample)
        self.noise_strength = nn.Parameter(torch.zeros([])) if noise else None
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x, latent, noise_generator=None):
        x = self.conv(x, latent)
        if self.noise_strength is not None:
            batch, _, height, width = x.shape
            noise = torch.randn(batch, 1, height, width, generator=noise_generator, device=x.device, dtype=x.dtype)
            x = x + noise * self.noise_strength.to(x.dtype)
        return leaky_relu(x + self.bias[:, None, None].to(x.dtype))


class ToRGB(nn.Module):
    """Modulated 1x1 conv without demodulation: each resolution's contribution to the image."""

    def __init__(self, in_channels, img_channels, latent_dim):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, img_channels, 1, latent_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(img_channels))

    def forward(self, x, latent):
        return self.conv(x, latent) + self.bias[:, None, None].to(x.dtype)


class Generator(nn.Module):
    """Code -> image (B, img_channels, img_size, img_size), StyleGAN2's synthesis network.

    The code (OverLORD's concatenated content, class and correlated codes) is used as is, without
    normalisation, because the content regulariser acts on its norm; with mapping_layers > 0 an MLP
    (lr multiplier 0.01) maps it first. The output is linear, trained to match images in [0, 1].
    Noise is drawn from `noise_generator` when given (a torch.Generator on the code's device).
    """

    def __init__(self, code_dim, img_size, img_channels, channel_base=16384, channel_max=512,
                 mapping_layers=0, noise=True):
        super().__init__()
        check_architecture(img_size, img_channels, channel_base, channel_max)
        self.code_dim = code_dim
        self.img_size = img_size
        self.img_channels = img_channels
        self.mapping = nn.Sequential(*[
            EqualLinear(code_dim, code_dim, lr_multiplier=0.01, activation=True) for _ in range(mapping_layers)
        ])
        resolutions = resolutions_up_to(img_size)
        channels = {r: channels_at(r, channel_base, channel_max) for r in resolutions}
        self.const = nn.Parameter(torch.randn(1, channels[4], 4, 4))
        self.convs = nn.ModuleList([SynthesisLayer(channels[4], channels[4], code_dim, noise=noise)])
        self.to_rgbs = nn.ModuleList([ToRGB(channels[4], img_channels, code_dim)])
        for previous, resolution in zip(resolutions, resolutions[1:]):
            in_channels, out_channels = channels[previous], channels[resolution]
            self.convs.append(SynthesisLayer(in_channels, out_channels, code_dim, upsample=True, noise=noise))
            self.convs.append(SynthesisLayer(out_channels, out_channels, code_dim, noise=noise))
            self.to_rgbs.append(ToRGB(out_channels, img_channels, code_dim))
        self.skip_upsample = BlurUpsample(img_channels)

    def forward(self, code, noise_generator=None):
        latent = self.mapping(code)
        x = self.const.expand(code.shape[0], -1, -1, -1)
        x = self.convs[0](x, latent, noise_generator)
        img = self.to_rgbs[0](x, latent)
        for index, to_rgb in enumerate(self.to_rgbs[1:]):
            x = self.convs[2 * index + 1](x, latent, noise_generator)
            x = self.convs[2 * index + 2](x, latent, noise_generator)
            img = self.skip_upsample(img) + to_rgb(x, latent)
        return img


class ResidualDownBlock(nn.Module):
    """Two 3x3 convs (the second blurred and strided) plus a blurred, strided 1x1 skip, summed and
    scaled by 1/sqrt(2) so the residual sum keeps the activation variance."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.conv = EqualConv2d(in_channels, in_channels, 3, activation=True)
        self.blur = Blur(in_channels, stride=1, padding=2)
        self.down_conv = EqualConv2d(in_channels, out_channels, 3, activation=True, stride=2, padding=0)
        self.skip_blur = Blur(in_channels, stride=2, padding=1)
        self.skip = EqualConv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x):
        skip = self.skip(self.skip_blur(x))
        x = self.down_conv(self.blur(self.conv(x)))
        return (x + skip) * (1 / math.sqrt(2))


class ResidualTrunk(nn.Module):
    """FromRGB 1x1 conv and residual downsampling blocks from img_size to 4x4."""

    def __init__(self, img_size, img_channels, channel_base, channel_max):
        super().__init__()
        check_architecture(img_size, img_channels, channel_base, channel_max)
        resolutions = resolutions_up_to(img_size)[::-1]
        channels = {r: channels_at(r, channel_base, channel_max) for r in resolutions}
        self.from_rgb = EqualConv2d(img_channels, channels[img_size], 1, activation=True)
        self.blocks = nn.Sequential(*[
            ResidualDownBlock(channels[resolution], channels[resolution // 2]) for resolution in resolutions[:-1]
        ])
        self.out_channels = channels[4]

    def forward(self, img):
        return self.blocks(self.from_rgb(img))


def minibatch_std(x, group_size, eps=1e-8):
    """Append one channel: per group of consecutive samples, the std over the group of every feature,
    averaged over the features. Groups have min(group_size, B) samples; the remainder of a batch not
    divisible by it joins the last group, so any batch size works (B = 1 gives zeros)."""
    batch = x.shape[0]
    group = min(group_size, batch)
    n_groups = batch // group
    group_of_sample = (torch.arange(batch, device=x.device) // group).clamp(max=n_groups - 1)
    membership = F.one_hot(group_of_sample, n_groups).t().float()
    averaging = membership / membership.sum(dim=1, keepdim=True)
    features = x.flatten(1)
    group_mean = float32_matmul(averaging, features)
    group_var = float32_matmul(averaging, (features.to(group_mean.dtype) - group_mean[group_of_sample]).square())
    group_std = (group_var + eps).sqrt().mean(dim=1)
    stat = group_std[group_of_sample].to(x.dtype)
    return torch.cat([x, stat[:, None, None, None].expand(-1, 1, *x.shape[2:])], dim=1)


class Discriminator(nn.Module):
    """Image -> one realness logit per image, shape (B,)."""

    def __init__(self, img_size, img_channels, channel_base=16384, channel_max=512, mbstd_group_size=4):
        super().__init__()
        self.trunk = ResidualTrunk(img_size, img_channels, channel_base, channel_max)
        channels = self.trunk.out_channels
        self.mbstd_group_size = mbstd_group_size
        self.conv = EqualConv2d(channels + 1, channels, 3, activation=True)
        self.fc = EqualLinear(channels * 4 * 4, channels, activation=True)
        self.out = EqualLinear(channels, 1)

    def forward(self, img):
        x = self.trunk(img)
        x = self.conv(minibatch_std(x, self.mbstd_group_size))
        return self.out(self.fc(x.flatten(1))).squeeze(1)


class Encoder(nn.Module):
    """Image -> code (B, code_dim), the discriminator's residual trunk followed by two linear layers."""

    def __init__(self, img_size, img_channels, code_dim, channel_base=16384, channel_max=512):
        super().__init__()
        self.trunk = ResidualTrunk(img_size, img_channels, channel_base, channel_max)
        channels = self.trunk.out_channels
        self.fc = EqualLinear(channels * 4 * 4, channels, activation=True)
        self.out = EqualLinear(channels, code_dim)

    def forward(self, img):
        return self.out(self.fc(self.trunk(img).flatten(1)))
