"""A multi-scale pixel loss: L1 between the Laplacian pyramids of two images.

A plain pixel L1 at 32x32 gives a generator only local gradients: a blob drawn a few pixels off or
a silhouette drawn blurred costs little more than one drawn right. Comparing the images band by
band (the details at every scale, then the coarse remainder), each band's mean absolute difference
counting alike, weighs the coarse layout and the edges as much as the pixels, and needs no
pretrained weights. It is this toolkit's own loss for the CPU presets, not the papers'.
"""

import torch.nn.functional as F
from torch import nn


def laplacian_pyramid(images, n_levels):
    """[finest band, ..., coarsest band, low-pass remainder] of (N, C, H, W) images: each band is an
    image minus its 2x average-pooled copy upsampled back; the pooling stops at 1 pixel."""
    bands = []
    current = images
    for _ in range(n_levels):
        if min(current.shape[-2:]) < 2:
            break
        low = F.avg_pool2d(current, kernel_size=2, ceil_mode=True)
        upsampled = F.interpolate(low, scale_factor=2, mode="nearest")[..., : current.shape[-2], : current.shape[-1]]
        bands.append(current - upsampled)
        current = low
    bands.append(current)
    return bands


class LaplacianLoss(nn.Module):
    """Per image: the sum over the pyramid's bands of their mean absolute difference."""

    def __init__(self, n_levels=4):
        super().__init__()
        self.n_levels = n_levels

    def forward(self, generated, target):
        batch = generated.shape[0]
        loss = 0
        for generated_band, target_band in zip(laplacian_pyramid(generated, self.n_levels),
                                               laplacian_pyramid(target, self.n_levels)):
            loss = loss + (generated_band - target_band).abs().reshape(batch, -1).mean(dim=1)
        return loss
