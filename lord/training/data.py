"""Training data on the device: uint8 images gathered by index, converted to float per batch."""

import warnings

import numpy as np
import torch

from lord.data import mapped
from lord.errors import UserError

COPY_CHUNK_BYTES = 64 * 2**20


def resolve_device(name):
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but no CUDA device is available")
    return torch.device(name)


def host_tensor(array):
    """A tensor viewing a numpy array without copying it, read-only (memory-mapped) arrays included:
    the images are only ever read, so torch's warning about unwritable arrays does not apply."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(array)


def copy_rows(array, out):
    """Copy a (possibly mapped, possibly strided) array into the tensor `out`, a chunk of rows at a
    time, releasing the mapped pages after each chunk: no host copy of the whole array is made."""
    step = max(1, COPY_CHUNK_BYTES // max(1, array[:1].nbytes))
    for first in range(0, len(array), step):
        rows = array[first : first + step]
        out[first : first + len(rows)].copy_(torch.from_numpy(np.ascontiguousarray(rows)))
        mapped.release(rows)
    return out


class DeviceImages:
    """This process's training images as one uint8 tensor: on a GPU copied there when they fit, else into
    pinned host memory; on a CPU a view of the array itself, which for a preprocessed file is a shared
    read-only mapping (so the processes of a machine share one copy).

    `batch(indices)` gathers rows by index and returns float images in [0, 1], (B, C, H, W), in
    channels_last when asked (see `channels_last_for`); with `binary`, 1 where a value is not 0 (masks).
    No per-sample Python and no float copy of the whole set.
    """

    def __init__(self, imgs, device, channels_last=True, max_device_fraction=0.5, binary=False):
        self.device = device
        self.channels_last = channels_last
        self.binary = binary
        self.on_device = True
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            shape = tuple(imgs.shape)
            if imgs.nbytes > max_device_fraction * free:
                self.on_device = False
                images = copy_rows(imgs, torch.empty(shape, dtype=torch.uint8, pin_memory=True))
            else:
                images = copy_rows(imgs, torch.empty(shape, dtype=torch.uint8, device=device))
        else:
            images = host_tensor(imgs)
        self.images = images

    def __len__(self):
        return len(self.images)

    def batch(self, indices):
        if self.on_device:
            raw = self.images[indices]
        else:
            raw = self.images[indices.cpu()].pin_memory().to(self.device, non_blocking=True)
        images = raw.permute(0, 3, 1, 2)
        images = (images > 0).float() if self.binary else images.float().div_(255.0)
        if self.channels_last:
            return images.contiguous(memory_format=torch.channels_last)
        return images.contiguous()


def to_device_labels(values, device):
    return torch.as_tensor(values, dtype=torch.long).to(device)
