"""edges2shoes in the pix2pix layout: ROOT/<train or val>/<n>_AB.jpg, edge map left and photo right.

Each file gives two images: class = domain (0 edges, 1 shoes) and `pair` = the file, so the two
halves of one shoe stay linked (ground truth for translating an edge map).
"""

import functools
import re

import numpy as np

from lord.data import images
from lord.data.common import layout_error, natural_key, report
from lord.data.store import make_dataset
from lord.errors import UserError

SPLITS = ("train", "val")
DOMAIN_NAMES = ("edges", "shoes")
FILE_PATTERN = re.compile(r"^(\d+)_AB\.jpg$")


def split_pair(path, img_size):
    """(2, img_size, img_size, 3): the left (edges) and right (photo) halves, each square-resized."""
    img = images.read_image(path, 3)
    width = img.shape[1]
    if width < 2:
        raise images.BadImage(f"{path} is too narrow ({width} pixels) to hold two halves")
    half = width // 2
    return np.stack([
        images.resize(images.center_crop(img[:, :half]), img_size),
        images.resize(images.center_crop(img[:, half : 2 * half]), img_size),
    ])


def load(root, img_size, split="train", workers=None, skip_bad=False, quiet=False, **_):
    img_size = int(img_size)
    if split not in SPLITS:
        raise UserError(f"edges2shoes: --split must be one of {', '.join(SPLITS)}, got {split!r}")
    split_dir = root / split
    paths = []
    if split_dir.is_dir():
        paths = sorted(
            (p for p in split_dir.iterdir() if FILE_PATTERN.match(p.name)), key=lambda p: natural_key(p.name)
        )
    if not paths:
        raise layout_error(
            "edges2shoes", root, [f"the pix2pix files ROOT/{split}/<n>_AB.jpg (edges left, photo right)"]
        )
    report(quiet, f"edges2shoes {split}: {len(paths)} edge/photo pairs")
    pairs, kept = images.fill_array(
        functools.partial(split_pair, img_size=img_size), paths, (2, img_size, img_size, 3),
        workers=workers, skip_bad=skip_bad, desc="edges2shoes", quiet=quiet,
    )
    imgs = pairs.reshape(-1, img_size, img_size, 3)
    n_pairs = len(pairs)
    domain = np.tile(np.arange(len(DOMAIN_NAMES)), n_pairs)
    pair = np.repeat(np.arange(n_pairs), len(DOMAIN_NAMES))
    return make_dataset(
        imgs, domain, n_classes=len(DOMAIN_NAMES), domain=domain, pair=pair,
        domain_names=np.asarray(DOMAIN_NAMES), class_names=np.asarray(DOMAIN_NAMES),
        pair_names=np.asarray([p.stem for p, keep in zip(paths, kept) if keep]),
    )
