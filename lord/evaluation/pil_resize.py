"""Pillow's bilinear resize of 8-bit images, reproduced in torch to the grey level.

The OverLORD and StarGAN v2 evaluation scripts read PNG files and resize them with torchvision's
`Resize` on PIL images, so what their networks see is Pillow's arithmetic: a separable triangle
filter (widened by the scale when shrinking, so it also anti-aliases), the horizontal pass first,
each pass with weights in fixed point (22 fractional bits) and its result rounded to 8 bits. Doing
the same with two matrix products resizes whole batches on the device and feeds the networks the
very pixels those scripts would; float bilinear interpolation differs in about a fifth of them.
"""

import math

import numpy as np
import torch

PRECISION_BITS = 22


def bilinear_weights(in_size, out_size):
    """(out_size, in_size) int64 matrix of Pillow's fixed-point bilinear weights for one axis."""
    scale = in_size / out_size
    filter_scale = max(scale, 1.0)
    support = filter_scale
    weights = np.zeros((out_size, in_size), dtype=np.int64)
    for row in range(out_size):
        center = (row + 0.5) * scale
        first = max(int(center - support + 0.5), 0)
        last = min(int(center + support + 0.5), in_size)
        taps = [max(0.0, 1.0 - abs((tap - center + 0.5) / filter_scale)) for tap in range(first, last)]
        total = 0.0
        for tap in taps:
            total += tap
        for offset, tap in enumerate(taps):
            normalised = tap / total if total != 0.0 else tap
            weights[row, first + offset] = math.trunc(0.5 + normalised * (1 << PRECISION_BITS))
    return weights


def _round_to_8_bits(sums):
    return torch.floor((sums + (1 << (PRECISION_BITS - 1))) / (1 << PRECISION_BITS)).clamp_(0, 255)


def resize_8bit(images, height, width):
    """Float (N, C, H, W) images holding integers in [0, 255] -> (N, C, height, width), as Pillow's
    `Image.resize((width, height), BILINEAR)` gives them (float64, integer-valued)."""
    images = images.to(torch.float64)
    if width != images.shape[-1]:
        weights = torch.from_numpy(bilinear_weights(images.shape[-1], width)).to(images)
        images = _round_to_8_bits(images @ weights.T)
    if height != images.shape[-2]:
        weights = torch.from_numpy(bilinear_weights(images.shape[-2], height)).to(images)
        images = _round_to_8_bits(weights @ images)
    return images
