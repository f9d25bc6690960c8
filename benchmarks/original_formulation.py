"""OverLORD's StyleGAN2 layers computed the way the published code computes them.

The published OverLORD builds its generator and discriminator from rosinality's StyleGAN2 layers,
whose CUDA kernels (fused_leaky_relu, upfirdn2d) fall back to plain PyTorch on a CPU. The toolkit's
layers compute the same functions faster (see lord/networks/stylegan.py); for the benchmark's
reference path, `use_original_formulation(module, device_type)` makes the toolkit's modules compute
them as the published code does, on the same parameters:

  modulated convolution  per-sample weights (style x weight, demodulated), one grouped convolution
                         with the batch as groups (a grouped transposed convolution when upsampling)
  on a CPU only:
  blur, upsampling       upfirdn2d's CPU path: zero insertion, padding, and a one-channel convolution
                         with the flipped filter over every (image, channel) plane
  bias and activation    `leaky_relu(x + bias) * sqrt(2)` as separate operations, after a convolution
                         without bias, and a residual block's sum divided by sqrt(2) afterwards

On CUDA the published code runs its own kernels for the last two, for which the toolkit's layers
stand in.
"""

import math
import types

import torch
import torch.nn.functional as F

from lord.networks import stylegan


def upfirdn2d(x, kernel, up=1, down=1, pad=(0, 0)):
    """Upsample by zero insertion, pad, filter with `kernel`, downsample: every plane on its own."""
    batch, channels, height, width = x.shape
    planes = x.reshape(batch * channels, 1, height, width)
    if up > 1:
        inserted = planes.new_zeros(batch * channels, 1, height * up, width * up)
        inserted[:, :, ::up, ::up] = planes
        planes = inserted
    before, after = pad
    planes = F.pad(planes, [before, after, before, after])
    planes = F.conv2d(planes, torch.flip(kernel, [0, 1]).view(1, 1, *kernel.shape).to(planes.dtype))
    planes = planes[:, :, ::down, ::down]
    return planes.reshape(batch, channels, planes.shape[-2], planes.shape[-1])


def fused_leaky_relu(x, bias):
    return F.leaky_relu(x + bias.view(1, -1, *([1] * (x.ndim - 2))), 0.2) * math.sqrt(2)


def modulated_conv_forward(self, x, style, activation_bias=None):
    batch, in_channels, height, width = x.shape
    style = self.modulation(style).view(batch, 1, in_channels, 1, 1)
    weight = self.scale * self.weight.unsqueeze(0) * style
    if self.demodulate:
        demodulation = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8)
        weight = weight * demodulation.view(batch, -1, 1, 1, 1)
    out_channels, kernel = weight.shape[1], weight.shape[-1]
    grouped = x.reshape(1, batch * in_channels, height, width)
    if self.upsample:
        weight = weight.transpose(1, 2).reshape(batch * in_channels, out_channels, kernel, kernel)
        out = F.conv_transpose2d(grouped, weight, padding=0, stride=2, groups=batch)
        out = self.blur(out.view(batch, out_channels, out.shape[-2], out.shape[-1]))
    else:
        weight = weight.view(batch * out_channels, in_channels, kernel, kernel)
        out = F.conv2d(grouped, weight, padding=kernel // 2, groups=batch)
        out = out.view(batch, out_channels, height, width)
    return out if activation_bias is None else fused_leaky_relu(out, activation_bias)


def blur_forward(self, x):
    return upfirdn2d(x, self.kernel, pad=self.pad)


def upsample_forward(self, x):
    return upfirdn2d(x, self.kernel, up=2, pad=(2, 1))


def fused_leaky_relu_forward(self, x):
    if self.bias is None:
        return F.leaky_relu(x, 0.2) * math.sqrt(2)
    return fused_leaky_relu(x, self.bias)


def equal_linear_forward(self, x):
    if self.activation:
        out = F.linear(x, self.weight * self.scale)
        return fused_leaky_relu(out, self.bias * self.lr_mul)
    return F.linear(x, self.weight * self.scale, None if self.bias is None else self.bias * self.lr_mul)


def conv_layer_forward(self, x):
    for layer in self:
        x = layer(x)
    return x


def res_block_forward(self, x):
    return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)


CPU_FORWARDS = {
    stylegan.ModulatedConv2d: modulated_conv_forward,
    stylegan.Blur: blur_forward,
    stylegan.Upsample: upsample_forward,
    stylegan.FusedLeakyReLU: fused_leaky_relu_forward,
    stylegan.EqualLinear: equal_linear_forward,
    stylegan.ConvLayer: conv_layer_forward,
    stylegan.ResBlock: res_block_forward,
}
CUDA_FORWARDS = {stylegan.ModulatedConv2d: modulated_conv_forward}


def use_original_formulation(module, device_type="cpu"):
    """Make the StyleGAN2 layers inside `module` compute as the published code does on `device_type`;
    returns `module`."""
    forwards = CPU_FORWARDS if device_type == "cpu" else CUDA_FORWARDS
    for layer in module.modules():
        forward = forwards.get(type(layer))
        if forward is not None:
            layer.forward = types.MethodType(forward, layer)
    return module
