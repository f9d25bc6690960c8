"""Per-image distances between generated and real images, with the feature networks that some need.

`mse` and `ssim` need nothing; `perceptual` (the VGG16 distance LORD trains with) and `lpips` need
published weight files. A distance whose weights cannot be had is None (recorded as null), with a
warning that says how to provide them: an evaluation never runs a feature network on random weights.
"""

import sys

import torch

from lord.errors import UserError
from lord.evaluation.image_metrics import SSIM_WINDOW, mse, ssim

NAMES = ("perceptual", "mse", "ssim", "lpips")
DEFAULT_VGG_LAYERS = (2, 7, 12, 21, 30)


def warn(message):
    print(f"warning: {message}", file=sys.stderr)


def load_perceptual(perceptual_config, device, download=True):
    """The VGG16 perceptual distance LORD trains with, at the layers (and from the weight path) of a
    model config's `perceptual_loss` block whatever loss the model trained with; None with a warning
    without the weights."""
    from lord.networks.vgg import PerceptualLoss
    from lord.weights import VGG16_WEIGHTS, load_weight_file

    config = perceptual_config or {}
    try:
        state, origin = load_weight_file(VGG16_WEIGHTS, config.get("weights"), download)
    except UserError as error:
        warn(f"the perceptual distance is left null: {error}")
        return None
    return PerceptualLoss(config.get("layers", DEFAULT_VGG_LAYERS), state, origin,
                          normalize=config.get("normalize", True)).to(device).eval()


def load_lpips_or_none(device, download=True):
    """The AlexNet LPIPS with its published weights, or None with a warning."""
    from lord.evaluation.lpips import load_lpips

    try:
        return load_lpips("alex", device=device, download=download)
    except UserError as error:
        warn(f"LPIPS is left null: {error}")
        return None


def usable_on(distance, name, img_shape, device):
    """`distance`, or None with a warning when the network cannot take images this small."""
    if distance is None:
        return None
    height, width, channels = img_shape
    blank = torch.zeros(1, channels, height, width, device=device)
    try:
        with torch.no_grad():
            distance(blank, blank)
    except RuntimeError:
        warn(f"{name} is left null: its network cannot take images of {height}x{width} pixels")
        return None
    return distance


class ImageDistances:
    """Mean distances between batches of generated and real images, in [0, 1], (N, C, H, W).

    `perceptual` and `lpips` are modules or None; mse is lower-is-better, ssim higher-is-better, the
    others lower-is-better. SSIM is None for images smaller than its 11x11 window.
    """

    def __init__(self, perceptual=None, lpips=None):
        self.perceptual = perceptual
        self.lpips = lpips

    @torch.no_grad()
    def per_image(self, generated, real):
        """name -> (N,) float tensor, or None where the distance is unavailable."""
        return {
            "perceptual": None if self.perceptual is None else self.perceptual(generated, real).float(),
            "mse": mse(generated, real),
            "ssim": ssim(generated, real) if min(real.shape[-2:]) >= SSIM_WINDOW else None,
            "lpips": None if self.lpips is None else self.lpips(generated, real).float(),
        }


class RunningMeans:
    """Means of per-image values accumulated over batches; None stays None."""

    def __init__(self):
        self.sums = {}
        self.count = 0

    def add(self, values):
        present = [value for value in values.values() if value is not None]
        for name, value in values.items():
            self.sums[name] = None if value is None else self.sums.get(name, 0.0) + value.double().sum()
        self.count += len(present[0]) if present else 0

    def means(self):
        return {name: None if total is None or self.count == 0 else float(total) / self.count
                for name, total in self.sums.items()}
