"""3D Shapes: ROOT/3dshapes.h5 with `images` (N, 64, 64, 3) and `labels` (N, 6) factor values.

Class = shape; content = the id of the other five factors (floor hue, wall hue, object hue, scale,
orientation). Ids come from the label values themselves, so the file's order does not matter.
"""

import numpy as np

from lord.data import images
from lord.data.common import layout_error, report, require, require_classes
from lord.data.store import make_dataset
from lord.errors import UserError

FACTORS = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
CLASS_FACTOR = FACTORS.index("shape")


def read_h5(path):
    h5py = require("h5py", "shapes3d", "reading 3dshapes.h5")
    try:
        with h5py.File(path, "r") as data:
            missing = [key for key in ("images", "labels") if key not in data]
            if missing:
                raise UserError(f"{path} lacks the dataset(s) {', '.join(missing)}")
            return data["images"][:], data["labels"][:]
    except OSError as error:
        raise UserError(f"cannot read {path}: {error}") from None


def load(root, img_size, quiet=False, **_):
    path = root / "3dshapes.h5"
    if not path.is_file():
        raise layout_error("shapes3d", root, ["ROOT/3dshapes.h5 with images (N, 64, 64, 3) and labels (N, 6)"])
    imgs, labels = read_h5(path)
    if imgs.ndim != 4 or imgs.shape[-1] != 3 or imgs.dtype != np.uint8:
        raise UserError(f"{path}: images must be uint8 (N, H, W, 3), got {imgs.dtype} {imgs.shape}")
    if labels.shape != (len(imgs), len(FACTORS)):
        raise UserError(f"{path}: labels must have shape ({len(imgs)}, {len(FACTORS)}), got {labels.shape}")
    factor_ids, factor_sizes = [], []
    for column in range(len(FACTORS)):
        values, ids = np.unique(labels[:, column], return_inverse=True)
        factor_ids.append(ids.reshape(-1).astype(np.int64))
        factor_sizes.append(len(values))
    classes = factor_ids[CLASS_FACTOR]
    others = [column for column in range(len(FACTORS)) if column != CLASS_FACTOR]
    contents = np.ravel_multi_index([factor_ids[c] for c in others], [factor_sizes[c] for c in others])
    require_classes(factor_sizes[CLASS_FACTOR], "shapes3d")
    report(quiet, "shapes3d: " + ", ".join(f"{n} {name} values" for name, n in zip(FACTORS, factor_sizes)))
    imgs = images.resize_all(imgs, int(img_size), quiet=quiet)
    return make_dataset(imgs, classes, contents.astype(np.int64), n_classes=factor_sizes[CLASS_FACTOR])
