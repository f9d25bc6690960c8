"""Cars3D: the original code's cars3d.npz, or the official per-model .mat renderings.

Class = car model, content = viewpoint (elevation * 24 + azimuth): 4 elevations x 24 azimuths.
"""

import functools
import zipfile

import numpy as np

from lord.data import images
from lord.data.common import layout_error, report, require, require_classes
from lord.data.store import make_dataset
from lord.errors import UserError

N_ELEVATIONS = 4
N_AZIMUTHS = 24
N_VIEWS = N_ELEVATIONS * N_AZIMUTHS


def read_npz(path, img_size, quiet):
    """cars3d.npz `imgs`, ordered elevation x azimuth x car, flat (N, H, W, 3) or (4, 24, K, H, W, 3)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "imgs" not in archive.files:
                raise UserError(f"{path} has no array 'imgs' (it has: {', '.join(archive.files)})")
            imgs = archive["imgs"]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise UserError(f"cannot read {path}: {error}") from None
    if imgs.ndim == 6:
        imgs = imgs.reshape((-1,) + imgs.shape[3:])
    if imgs.ndim != 4 or imgs.shape[-1] != 3 or len(imgs) % N_VIEWS:
        raise UserError(f"{path}: expected imgs of shape (4 * 24 * cars, H, W, 3), got {imgs.shape}")
    if imgs.dtype != np.uint8:
        if not np.issubdtype(imgs.dtype, np.floating) or imgs.min() < 0 or imgs.max() > 1:
            raise UserError(f"{path}: imgs must be uint8 or floats in [0, 1], got {imgs.dtype}")
        imgs = np.round(imgs * 255).astype(np.uint8)
    n_cars = len(imgs) // N_VIEWS
    views = np.arange(len(imgs)) // n_cars
    classes = np.arange(len(imgs)) % n_cars
    report(quiet, f"cars3d: {path.name}: {n_cars} cars x {N_VIEWS} views")
    imgs = images.resize_all(imgs, img_size, quiet=quiet)
    return imgs, classes, views, [f"car_{i:03d}" for i in range(n_cars)]


def read_car(path, img_size):
    """The 96 views of one official .mat file (`im`: 128 x 128 x 3 x 24 azimuths x 4 elevations)."""
    import scipy.io

    try:
        renderings = scipy.io.loadmat(str(path))["im"]
    except (scipy.io.matlab.MatReadError, OSError, ValueError, KeyError, TypeError, NotImplementedError) as error:
        raise images.BadImage(f"cannot read {path}: {error}") from None
    if renderings.dtype != np.uint8 or renderings.ndim != 5 or renderings.shape[2:] != (3, N_AZIMUTHS, N_ELEVATIONS):
        raise images.BadImage(
            f"{path}: expected im of uint8 (H, W, 3, 24, 4), got {renderings.dtype} {renderings.shape}"
        )
    views = renderings.transpose(4, 3, 0, 1, 2).reshape((N_VIEWS,) + renderings.shape[:3])
    out = np.empty((N_VIEWS, img_size, img_size, 3), dtype=np.uint8)
    for view in range(N_VIEWS):
        out[view] = images.resize(images.center_crop(views[view]), img_size)
    return out


def read_mats(paths, img_size, workers, skip_bad, quiet):
    require("scipy", "cars3d", "reading the Cars3D .mat files")
    transform = functools.partial(read_car, img_size=img_size)
    imgs, kept = images.fill_array(
        transform, paths, (img_size, img_size, 3), workers=workers, skip_bad=skip_bad, desc="cars3d", quiet=quiet,
        rows=[N_VIEWS] * len(paths),
    )
    names = [path.stem for path, keep in zip(paths, kept[::N_VIEWS]) if keep]
    classes = np.repeat(np.arange(len(names)), N_VIEWS)
    views = np.tile(np.arange(N_VIEWS), len(names))
    return imgs, classes, views, names


def load(root, img_size, workers=None, skip_bad=False, quiet=False, **_):
    img_size = int(img_size)
    mats = sorted(path for path in root.glob("*.mat") if path.is_file())
    if (root / "cars3d.npz").is_file():
        imgs, classes, views, names = read_npz(root / "cars3d.npz", img_size, quiet)
    elif mats:
        imgs, classes, views, names = read_mats(mats, img_size, workers, skip_bad, quiet)
    else:
        raise layout_error("cars3d", root, [
            "ROOT/cars3d.npz (imgs ordered elevation x azimuth x car)",
            "the official ROOT/*.mat files (one per car model, key im: 128 x 128 x 3 x 24 x 4)",
        ])
    require_classes(len(names), "cars3d")
    return make_dataset(imgs, classes, views, n_classes=len(names), class_names=np.asarray(names))
