"""The correlated encoder's view of an image in stage 1: the (masked) image under a random resized
crop, horizontal flip and rotation, so the correlated code cannot carry the pose.

Batched on the device: one affine_grid + grid_sample for the whole batch, with per-sample parameters
drawn from the stage's torch.Generator.
"""

import math

import torch
import torch.nn.functional as F

from lord.model import correlated_input
from lord.training.common import channels_last_for
from lord.training.data import DeviceImages, to_device_labels


def device_masks(masks, device, channels_last=True):
    """Masks (N, H, W) as DeviceImages whose batches are 0/1 float (B, 1, H, W)."""
    return DeviceImages(masks[..., None], device, channels_last, binary=True)


def overlord_training_data(config, dataset, distributed, device, with_masks):
    """What an OverLORD stage trains on: (images, masks or None, labels on the device) of this
    process's share of `dataset`, and the label values of the whole set (numpy). Masks are loaded
    only when `with_masks` and the correlation is localized."""
    channels_last = channels_last_for(config, device)
    images = DeviceImages(distributed.shard(dataset.imgs), device, channels_last)
    masks = None
    if with_masks and config["correlation"] == "localized":
        masks = device_masks(distributed.shard(dataset.extras["masks"]), device, channels_last)
    labels, _ = dataset.label(config["labeled_attribute"])
    return images, masks, to_device_labels(distributed.shard(labels), device), labels


def transformed_view(images, masks, augmentation, generator, batch):
    """What stage 1's correlated encoder is trained on, and what later stages regress onto: the (masked)
    images of a training batch under a random pose (the config's `correlation_augmentation`)."""
    return random_pose(correlated_input(images, masks), generator, augmentation["scale"], augmentation["flip"],
                       augmentation["rotation"], batch=batch)


def random_pose(images, generator, scale, flip, rotation, batch=None):
    """Each image (B, C, H, W) resampled from a random square crop, mirrored and rotated.

    The crop's area is a uniform share in `scale` = (low, high) of the image's area (as in
    torchvision's RandomResizedCrop with a square aspect), placed uniformly inside the image;
    it is mirrored with probability 1/2 when `flip`, and turned by a uniform angle in
    [-rotation, rotation] degrees, the corners filled with zeros (as torchvision's RandomRotation).
    Every step draws the same numbers whatever the options, so a run's random stream does not depend
    on them. With a training `batch`, the numbers are drawn for the whole global batch and this
    process keeps its images' rows.
    """
    count = images.shape[0] if batch is None else batch.size
    draws = torch.rand(count, 5, generator=generator, device=images.device)
    if batch is not None:
        draws = batch.draw(draws)
    low, high = float(scale[0]), float(scale[1])
    side = torch.sqrt(low + (high - low) * draws[:, 0])
    angle = (2 * draws[:, 1] - 1) * math.radians(float(rotation))
    mirror = torch.where(draws[:, 2] < 0.5, -1.0, 1.0) if flip else torch.ones_like(side)
    centre = (2 * draws[:, 3:5] - 1) * (1 - side)[:, None]
    cos, sin = torch.cos(angle) * side, torch.sin(angle) * side
    theta = torch.stack([
        torch.stack([cos * mirror, -sin, centre[:, 0]], dim=1),
        torch.stack([sin * mirror, cos, centre[:, 1]], dim=1),
    ], dim=1)
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
