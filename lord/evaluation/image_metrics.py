"""Pixel-level errors between images: per-image MSE and SSIM.

Both take (N, C, H, W) float tensors with values in [0, 1] and return one value per image, so a
caller can average, take medians or pair them with other per-image numbers.
"""

import torch
import torch.nn.functional as F

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _check_pair(a, b):
    if a.shape != b.shape:
        raise ValueError(f"image batches differ in shape: {tuple(a.shape)} and {tuple(b.shape)}")
    if a.dim() != 4:
        raise ValueError(f"expected (N, C, H, W) image batches, got shape {tuple(a.shape)}")


def mse(a, b):
    """Mean squared error over channels and pixels, per image (lower is better)."""
    _check_pair(a, b)
    return (a.float() - b.float()).square().flatten(1).mean(dim=1)


def gaussian_window(size=SSIM_WINDOW, sigma=SSIM_SIGMA, dtype=torch.float32, device=None):
    """The normalised 1-D Gaussian whose outer product is the SSIM window."""
    offsets = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    window = torch.exp(-offsets.square() / (2 * sigma**2))
    return (window / window.sum()).to(dtype)


def ssim(a, b):
    """Structural similarity of Wang et al. (2004), per image (higher is better, 1 = identical).

    The standard setting: an 11x11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03 for a data
    range of 1, local statistics over the window's full support only (no padding: the map covers
    the (H-10) x (W-10) interior), averaged over the map and the channels.
    """
    _check_pair(a, b)
    if min(a.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {tuple(a.shape[-2:])}")
    a, b = a.float(), b.float()
    channels = a.shape[1]
    window = gaussian_window(dtype=a.dtype, device=a.device)
    horizontal = window.view(1, 1, 1, -1).repeat(5 * channels, 1, 1, 1)
    vertical = window.view(1, 1, -1, 1).repeat(5 * channels, 1, 1, 1)
    stacked = torch.cat([a, b, a * a, b * b, a * b], dim=1)
    local = F.conv2d(F.conv2d(stacked, horizontal, groups=5 * channels), vertical, groups=5 * channels)
    mean_a, mean_b, mean_aa, mean_bb, mean_ab = local.split(channels, dim=1)
    variance_a = mean_aa - mean_a.square()
    variance_b = mean_bb - mean_b.square()
    covariance = mean_ab - mean_a * mean_b
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    similarity = ((2 * mean_a * mean_b + c1) * (2 * covariance + c2)) / (
        (mean_a.square() + mean_b.square() + c1) * (variance_a + variance_b + c2)
    )
    return similarity.flatten(1).mean(dim=1)
