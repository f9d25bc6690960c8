"""Decoding and resizing images, and filling one preallocated array from many files in parallel."""

import contextlib
import contextvars
import multiprocessing
import os
import time

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from lord.data.mapped import Spool
from lord.errors import UserError

# Where `fill_array` writes the rows it decodes (see `spooled_to`); None: into memory.
SPOOL_DIRECTORY = contextvars.ContextVar("spool_directory", default=None)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


class BadImage(Exception):
    """An image file that cannot be decoded."""


def is_image_file(path):
    return str(path).lower().endswith(IMAGE_EXTENSIONS)


def directory_images(directory):
    """The image files directly in `directory`, sorted, for a command that writes `<name>.png` for each: none,
    or two of one name (a.jpg and a.png), is an error before anything is written."""
    files = sorted(path for path in directory.iterdir() if path.is_file() and is_image_file(path))
    if not files:
        raise UserError(f"no image files in {directory}")
    stems = [path.stem for path in files]
    clash = next((stem for stem in stems if stems.count(stem) > 1), None)
    if clash is not None:
        raise UserError(f"{directory} has several images named {clash!r}: their outputs would overwrite each other")
    return files


def read_image(path, channels=3):
    """Decode an image file to uint8 (H, W, channels), RGB order."""
    try:
        with Image.open(path) as image:
            image = image.convert("L" if channels == 1 else "RGB")
            array = np.asarray(image, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise BadImage(f"cannot read image {path}: {error}") from None
    if channels == 1:
        array = array[..., None]
    return array


def image_channels(path):
    """1 for a grayscale file, 3 otherwise, from the header only."""
    try:
        with Image.open(path) as image:
            return 1 if image.mode in ("1", "L", "I", "I;16", "F", "LA") else 3
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise BadImage(f"cannot read image {path}: {error}") from None


def center_crop(array, size=None):
    """The centred square of side `size` (default: the shorter side)."""
    height, width = array.shape[:2]
    size = min(height, width) if size is None else min(size, height, width)
    top = (height - size) // 2
    left = (width - size) // 2
    return array[top : top + size, left : left + size]


def resize(array, height, width=None):
    """Area interpolation when shrinking, bicubic when enlarging; keeps the channel axis."""
    width = height if width is None else width
    if array.shape[:2] == (height, width):
        return np.ascontiguousarray(array)
    shrinking = height * width < array.shape[0] * array.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    resized = cv2.resize(np.ascontiguousarray(array), (width, height), interpolation=interpolation)
    if resized.ndim == 2:
        resized = resized[..., None]
    return resized


# How a loader resizes: "published" with the filter the dataset's published preprocessing used (the
# loader says which), "area" with `resize` (area when shrinking: least aliasing, for one's own data).
RESIZE_CHOICES = ("published", "area")


def resize_pil_bicubic(array, height, width=None):
    """PIL's bicubic filter, as OverLORD's preprocessing resizes FFHQ, CelebA-HQ and AFHQ."""
    width = height if width is None else width
    if array.shape[:2] == (height, width):
        return np.ascontiguousarray(array)
    gray = array.ndim == 3 and array.shape[-1] == 1
    image = Image.fromarray(np.ascontiguousarray(array[..., 0] if gray else array))
    resized = np.asarray(image.resize((width, height), resample=Image.BICUBIC), dtype=np.uint8)
    return resized[..., None] if gray or resized.ndim == 2 else resized


def resize_cv2_default(array, height, width=None):
    """cv2.resize with its default (bilinear) filter, as lord-pytorch's preprocessing resizes."""
    width = height if width is None else width
    if array.shape[:2] == (height, width):
        return np.ascontiguousarray(array)
    resized = cv2.resize(np.ascontiguousarray(array), (width, height))
    return resized[..., None] if resized.ndim == 2 else resized


PUBLISHED_FILTERS = {"pil-bicubic": resize_pil_bicubic, "cv2-bilinear": resize_cv2_default}


def resize_function(choice, published):
    """The resize a loader uses: `published` names its dataset's published filter."""
    if choice not in RESIZE_CHOICES:
        raise UserError(f"--resize must be one of {', '.join(RESIZE_CHOICES)}, got {choice!r}")
    return PUBLISHED_FILTERS[published] if choice == "published" else resize


def to_channels(array, channels):
    """Convert (H, W, C) uint8 to the requested channel count."""
    if array.ndim == 2:
        array = array[..., None]
    if array.shape[-1] == channels:
        return array
    if channels == 1:
        return cv2.cvtColor(np.ascontiguousarray(array[..., :3]), cv2.COLOR_RGB2GRAY)[..., None]
    if array.shape[-1] == 1:
        return np.repeat(array, 3, axis=-1)
    return array[..., :3]


def square_image(path, img_size, channels, resize_with=resize):
    """Read, centre-crop to a square and resize: the default per-file transform."""
    return resize_with(center_crop(read_image(path, channels)), img_size)


def resize_all(imgs, height, width=None, desc="resizing", quiet=False, resize_with=resize):
    """Resize every image of an in-memory (N, H, W, C) uint8 stack into one new preallocated array."""
    width = height if width is None else width
    if imgs.shape[1:3] == (height, width):
        return imgs
    out = np.empty((len(imgs), height, width, imgs.shape[-1]), dtype=np.uint8)
    for index in tqdm(range(len(imgs)), desc=desc, unit="img", disable=quiet, dynamic_ncols=True, leave=False):
        out[index] = resize_with(imgs[index], height, width)
    return out


@contextlib.contextmanager
def spooled_to(directory):
    """Within this block `fill_array` writes each decoded row into an unnamed temporary file in
    `directory` as it arrives and returns the rows mapped from it, so a preprocess run's memory does
    not grow with the number of images (the loaders need not know)."""
    token = SPOOL_DIRECTORY.set(str(directory))
    try:
        yield
    finally:
        SPOOL_DIRECTORY.reset(token)


def default_workers():
    return os.cpu_count() or 1


def _call(args):
    function, item = args
    try:
        return function(item), None
    except BadImage as error:
        return None, str(error)


def fill_array(
    function, items, shape, dtype=np.uint8, workers=None, skip_bad=False, desc="images", quiet=False, rows=None
):
    """Run `function(item)` for every item, in worker processes, into one preallocated array.

    `function` must be a picklable top-level callable returning an array of `shape`. A BadImage stops
    the run with its message, or with `skip_bad` the item is skipped. Returns the filled array
    (skipped rows removed) and the boolean mask of the items kept.

    With `rows` (one count per item, e.g. the frames of each video), item i fills rows[i]
    consecutive rows: `function` returns an array of shape (rows[i],) + shape and the mask returned
    is per row.
    """
    items = list(items)
    counts = np.ones(len(items), dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
    if counts.shape != (len(items),) or (counts < 0).any():
        raise ValueError(f"rows must hold one non-negative count per item, got shape {counts.shape}")
    offsets = np.concatenate([[0], np.cumsum(counts)])
    total = int(offsets[-1])
    spool_directory = SPOOL_DIRECTORY.get()
    spool = None if spool_directory is None else Spool(spool_directory, shape, dtype)
    out = np.empty((total if spool is None else 0,) + tuple(shape), dtype=dtype)
    kept = np.ones(total, dtype=bool)
    workers = default_workers() if workers is None else max(1, int(workers))
    workers = min(workers, max(1, len(items)))
    start = time.perf_counter()
    bar = tqdm(total=total, desc=desc, unit="img", disable=quiet, dynamic_ncols=True, leave=False)
    tasks = ((function, item) for item in items)
    pool = None
    if workers > 1:
        pool = multiprocessing.get_context("fork" if hasattr(os, "fork") else "spawn").Pool(workers)
        results = pool.imap(_call, tasks, chunksize=max(1, min(64, len(items) // (workers * 8) or 1)))
    else:
        results = map(_call, tasks)
    skipped = []
    try:
        for index, (array, error) in enumerate(results):
            first, last = int(offsets[index]), int(offsets[index + 1])
            if error is not None:
                if not skip_bad:
                    raise UserError(f"{error} (use --skip-bad to skip unreadable files)")
                kept[first:last] = False
                skipped.append(error)
            else:
                expected = tuple(shape) if rows is None else (last - first,) + tuple(shape)
                if array.shape != expected:
                    raise UserError(f"{items[index]} gave an array of shape {array.shape}, expected {expected}")
                if spool is not None:
                    spool.append(array[None] if rows is None else array)
                elif rows is None:
                    out[index] = array
                else:
                    out[first:last] = array
            bar.update(last - first)
        if spool is not None:
            out = spool.finish()
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
            pool.join()
        if spool is not None:
            spool.close()
    if skipped and not quiet:
        print(f"skipped {len(skipped)} unreadable file(s), e.g. {skipped[0]}")
    elapsed = time.perf_counter() - start
    if not quiet and items:
        print(f"{desc}: {int(kept.sum())} in {elapsed:.1f}s ({total / max(elapsed, 1e-9):.0f} img/s)")
    if spool is None and not kept.all():
        out = out[kept]
    return out, kept
