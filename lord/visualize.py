"""Translation grids and image strips as uint8 arrays, and PNG output.

Pure numpy and Pillow, so logs, `samples/` PNGs, `manipulate` and the README figures can be made
without torch; `to_uint8` still accepts a torch tensor.
"""

import io

import numpy as np
from PIL import Image

from lord.assets import atomic_write_bytes

SEPARATOR_VALUE = 255


def to_uint8(images, channels_first=None):
    """Float images in [0, 1] -> uint8 (N, H, W, C), clipped and rounded.

    The layout, (N, C, H, W) or (N, H, W, C), is inferred from which axis holds 1 or 3 channels;
    pass `channels_first` when both could (e.g. 3x3 images).
    """
    if hasattr(images, "detach"):
        images = images.detach().float().cpu().numpy()
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4:
        raise ValueError(f"expected a batch of images with 4 dimensions, got shape {images.shape}")
    if channels_first is None:
        first, last = images.shape[1] in (1, 3), images.shape[-1] in (1, 3)
        if first == last:
            raise ValueError(
                f"cannot tell the channel axis of shape {images.shape}; pass channels_first"
            )
        channels_first = first
    if channels_first:
        images = images.transpose(0, 2, 3, 1)
    images = np.nan_to_num(images, nan=0.0)
    return np.rint(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)


def _check_images(images, name, leading_dims):
    images = np.asarray(images)
    shape_ok = images.ndim == leading_dims + 3 and images.shape[-1] in (1, 3)
    if images.dtype != np.uint8 or not shape_ok:
        expected = "(" + ", ".join(["..."] * leading_dims + ["H", "W", "C"]) + ")"
        raise ValueError(
            f"{name} must be uint8 {expected} with C in (1, 3), got {images.dtype} {images.shape}"
        )
    if any(size == 0 for size in images.shape):
        raise ValueError(f"{name} is empty: shape {images.shape}")
    return images


def _cell_offsets(count, size, pad, header_gap=None):
    """Start of each cell along one axis; cell 0 is followed by `header_gap` when given."""
    offsets = [0]
    for index in range(1, count):
        gap = header_gap if index == 1 and header_gap is not None else pad
        offsets.append(offsets[-1] + size + gap)
    return offsets


def translation_grid(content_imgs, class_imgs, translated, pad=2):
    """A grid whose header row holds the content images and header column the class images.

    translated[r, c] combines the content of content_imgs[c] with the class of class_imgs[r] and
    lands in cell (r + 1, c + 1). Cells are separated by `pad` pixels, the header row and column by
    3 * pad so they stand out; the top-left cell is left empty.
    """
    content_imgs = _check_images(content_imgs, "content_imgs", 1)
    class_imgs = _check_images(class_imgs, "class_imgs", 1)
    translated = _check_images(translated, "translated", 2)
    n, m = len(content_imgs), len(class_imgs)
    height, width, channels = cell_shape = content_imgs.shape[1:]
    if class_imgs.shape[1:] != cell_shape or translated.shape != (m, n) + cell_shape:
        raise ValueError(
            f"shapes do not agree: content_imgs {content_imgs.shape}, "
            f"class_imgs {class_imgs.shape}, translated {translated.shape} "
            f"(expected {(m, n) + cell_shape})"
        )
    rows = _cell_offsets(m + 1, height, pad, header_gap=3 * pad)
    columns = _cell_offsets(n + 1, width, pad, header_gap=3 * pad)
    grid = np.full((rows[-1] + height, columns[-1] + width, channels), SEPARATOR_VALUE, np.uint8)
    for c, x in enumerate(columns[1:]):
        grid[:height, x : x + width] = content_imgs[c]
    for r, y in enumerate(rows[1:]):
        grid[y : y + height, :width] = class_imgs[r]
        for c, x in enumerate(columns[1:]):
            grid[y : y + height, x : x + width] = translated[r, c]
    return grid


def image_strip(imgs, pad=2):
    """Images (k, H, W, C) side by side, `pad` pixels apart."""
    imgs = _check_images(imgs, "imgs", 1)
    height, width, channels = imgs.shape[1:]
    columns = _cell_offsets(len(imgs), width, pad)
    strip = np.full((height, columns[-1] + width, channels), SEPARATOR_VALUE, np.uint8)
    for image, x in zip(imgs, columns):
        strip[:, x : x + width] = image
    return strip


def upscale(image, factor):
    """Nearest-neighbour enlargement, so small images stay crisp in the README."""
    if int(factor) != factor or factor < 1:
        raise ValueError(f"factor must be a positive integer, got {factor!r}")
    image = np.asarray(image)
    return np.repeat(np.repeat(image, int(factor), axis=0), int(factor), axis=1)


def encode_png(image):
    """PNG bytes of a uint8 (H, W, C) image; one channel is written as grayscale (mode L)."""
    image = _check_images(image, "image", 0)
    pixels = image[..., 0] if image.shape[-1] == 1 else image
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="PNG")
    return buffer.getvalue()


def save_png(path, image):
    """Write a uint8 (H, W, C) image as a PNG file, atomically."""
    atomic_write_bytes(path, encode_png(image))
