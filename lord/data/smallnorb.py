"""smallNORB: an extracted JPEG tree, or the official NYU binary matrix files.

Class = (category, instance, elevation, lighting, camera side), content = azimuth, as in the LORD
paper: a class holds one object seen from every azimuth under fixed elevation and lighting. Images
are resized with cv2.resize's default (bilinear) filter as lord-pytorch did (`--resize area` for the
area filter).
"""

import functools
import gzip
import re

import numpy as np

from lord.data import images
from lord.data.common import label_ids, layout_error, natural_key, report, require_classes
from lord.data.store import make_dataset
from lord.errors import UserError

FILE_PATTERN = re.compile(r"^azimuth(\d+)_elevation(\d+)_lighting(\d+)_(lt|rt)\.jpg$")
SPLITS = {
    "training": "smallnorb-5x46789x9x18x6x2x96x96-training",
    "testing": "smallnorb-5x01235x9x18x6x2x96x96-testing",
}
CATEGORIES = ("animal", "human", "airplane", "truck", "car")
CAMERA_SIDES = ("lt", "rt")
# The NYU binary matrix format: little-endian int32 magic, int32 ndim, max(3, ndim) int32 dims, data.
MATRIX_DTYPES = {0x1E3D4C55: np.uint8, 0x1E3D4C54: np.int32, 0x1E3D4C51: np.float32, 0x1E3D4C53: np.float64,
                 0x1E3D4C56: np.int16}


def read_matrix(path):
    try:
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rb") as file:
            data = file.read()
    except (OSError, EOFError) as error:
        raise UserError(f"cannot read {path}: {error}") from None
    if len(data) < 20:
        raise UserError(f"{path} is too short for a NORB matrix file ({len(data)} bytes)")
    magic, ndim = (int(v) for v in np.frombuffer(data, dtype="<i4", count=2))
    if magic not in MATRIX_DTYPES or not 0 < ndim < 16:
        raise UserError(f"{path} is not a NORB matrix file (magic {magic:#x}, ndim {ndim})")
    header = 8 + 4 * max(3, ndim)
    dims = tuple(int(d) for d in np.frombuffer(data, dtype="<i4", count=ndim, offset=8))
    dtype = np.dtype(MATRIX_DTYPES[magic]).newbyteorder("<")
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(data) - header != expected:
        raise UserError(f"{path} holds {len(data) - header} data bytes, its header {dims} says {expected}")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)


def find_file(root, stem):
    for candidate in (root / f"{stem}.mat", root / f"{stem}.mat.gz"):
        if candidate.is_file():
            return candidate
    return None


def binary_splits(root):
    """{split: (dat, cat, info) paths} for every split whose dat file is present."""
    found = {}
    for split, prefix in SPLITS.items():
        paths = [find_file(root, f"{prefix}-{kind}") for kind in ("dat", "cat", "info")]
        if not any(paths):
            continue
        missing = [f"{prefix}-{kind}.mat" for kind, path in zip(("dat", "cat", "info"), paths) if path is None]
        if missing:
            raise UserError(f"smallnorb: {root} has part of the {split} files but lacks {', '.join(missing)}")
        found[split] = paths
    return found


def read_binary(root, splits, img_size, quiet, resize_with):
    """Every stereo image of the given splits, with its (category, instance, elevation, lighting, side) and azimuth."""
    stacks, keys, azimuths = [], [], []
    for split, (dat_path, cat_path, info_path) in splits.items():
        dat, cat, info = read_matrix(dat_path), read_matrix(cat_path), read_matrix(info_path)
        count = len(dat)
        if dat.ndim != 4 or dat.shape[1] != 2 or cat.shape[:1] != (count,) or info.shape[:2] != (count, 4):
            raise UserError(
                f"smallnorb {split}: expected dat (N, 2, H, W), cat (N,) and info (N, 4), "
                f"got {dat.shape}, {cat.shape} and {info.shape}"
            )
        cat = cat.reshape(count)
        if cat.min() < 0 or cat.max() >= len(CATEGORIES):
            raise UserError(f"smallnorb {split}: categories must lie in 0..{len(CATEGORIES) - 1}")
        stacks.append(dat.reshape(count * 2, dat.shape[2], dat.shape[3], 1))
        for n in range(count):
            instance, elevation, azimuth, lighting = (int(v) for v in info[n, :4])
            for side in CAMERA_SIDES:
                keys.append((CATEGORIES[cat[n]], str(instance), elevation, lighting, side))
                azimuths.append(azimuth)
        report(quiet, f"smallnorb: {split}: {count} stereo pairs from {dat_path.name}")
    imgs = np.concatenate(stacks) if len(stacks) > 1 else stacks[0]
    return images.resize_all(imgs, img_size, quiet=quiet, resize_with=resize_with), keys, azimuths


def scan_tree(root):
    """(paths, class keys, azimuths) of ROOT/<category>/<instance>/azimuth.._elevation.._lighting.._<lt|rt>.jpg."""
    paths, keys, azimuths = [], [], []
    for category in sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: natural_key(p.name)):
        for instance in sorted((p for p in category.iterdir() if p.is_dir()), key=lambda p: natural_key(p.name)):
            for path in sorted(instance.iterdir(), key=lambda p: natural_key(p.name)):
                match = FILE_PATTERN.match(path.name)
                if match is None:
                    continue
                azimuth, elevation, lighting, side = match.groups()
                paths.append(path)
                keys.append((category.name, instance.name, int(elevation), int(lighting), side))
                azimuths.append(int(azimuth))
    return paths, keys, azimuths


def load(root, img_size, resize="published", workers=None, skip_bad=False, quiet=False, **_):
    img_size = int(img_size)
    resize_with = images.resize_function(resize, "cv2-bilinear")
    splits = binary_splits(root)
    if splits:
        imgs, keys, azimuths = read_binary(root, splits, img_size, quiet, resize_with)
    else:
        paths, keys, azimuths = scan_tree(root)
        if not paths:
            raise layout_error("smallnorb", root, [
                "ROOT/<category>/<instance>/azimuth<A>_elevation<E>_lighting<L>_<lt|rt>.jpg",
                "the official files " + ", ".join(f"{prefix}-{{dat,cat,info}}.mat[.gz]" for prefix in SPLITS.values()),
            ])
        transform = functools.partial(images.square_image, img_size=img_size, channels=1, resize_with=resize_with)
        imgs, kept = images.fill_array(
            transform, paths, (img_size, img_size, 1), workers=workers, skip_bad=skip_bad, desc="smallnorb", quiet=quiet
        )
        keys = [key for key, keep in zip(keys, kept) if keep]
        azimuths = [azimuth for azimuth, keep in zip(azimuths, kept) if keep]
    classes, class_keys = label_ids(keys)
    contents, azimuth_values = label_ids(azimuths)
    require_classes(len(class_keys), "smallnorb")
    report(quiet, f"smallnorb: {len(class_keys)} classes x {len(azimuth_values)} azimuths")
    return make_dataset(imgs, classes, contents, n_classes=len(class_keys))
