"""Training data on the device: uint8 images gathered by index, converted to float per batch."""

import torch

from lord.errors import UserError


def resolve_device(name):
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but no CUDA device is available")
    return torch.device(name)


class DeviceImages:
    """All training images as one uint8 tensor, on the device when it fits, else in pinned host memory.

    `batch(indices)` gathers rows by index and returns float images in [0, 1], (B, C, H, W), in
    channels_last when asked (see `channels_last_for`). No per-sample Python and no float copy of the whole set.
    """

    def __init__(self, imgs, device, channels_last=True, max_device_fraction=0.5):
        self.device = device
        self.channels_last = channels_last
        images = torch.from_numpy(imgs)
        self.on_device = True
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            if images.numel() > max_device_fraction * free:
                self.on_device = False
                images = images.pin_memory()
            else:
                images = images.to(device)
        self.images = images

    def __len__(self):
        return len(self.images)

    def batch(self, indices):
        if self.on_device:
            raw = self.images[indices]
        else:
            raw = self.images[indices.cpu()].pin_memory().to(self.device, non_blocking=True)
        images = raw.permute(0, 3, 1, 2).float().div_(255.0)
        if self.channels_last:
            return images.contiguous(memory_format=torch.channels_last)
        return images.contiguous()


def to_device_labels(values, device):
    return torch.as_tensor(values, dtype=torch.long).to(device)
