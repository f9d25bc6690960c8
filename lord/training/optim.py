"""Learning-rate schedules and Adam as every stage uses it."""

import math

import torch


def cosine(step, total_steps, max_lr, min_lr):
    """Cosine annealing from max_lr at step 0 to min_lr at total_steps, evaluated per step."""
    progress = min(step, total_steps) / max(total_steps, 1)
    return min_lr + (max_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def adam(param_groups, betas=(0.5, 0.999), device=None):
    """Adam with the fastest exact implementation for the device: fused on CUDA and CPU, foreach
    elsewhere (and without a device)."""
    fused = device is not None and device.type in ("cuda", "cpu")
    return torch.optim.Adam(param_groups, betas=betas, fused=fused or None, foreach=None if fused else True)


def set_cosine_learning_rates(optimizer, step, total_steps):
    """Each param group carries its own `max_lr` and `min_lr`."""
    for group in optimizer.param_groups:
        group["lr"] = cosine(step, total_steps, group["max_lr"], group["min_lr"])
