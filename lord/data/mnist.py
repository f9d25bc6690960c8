"""MNIST: the four official idx files (optionally gzipped) or a Keras-style mnist.npz.

Train and test images are concatenated (train first), as in the LORD paper; class = digit.
"""

import gzip
import zipfile

import numpy as np

from lord.data import images
from lord.data.common import label_ids, layout_error, report, require_classes
from lord.data.store import make_dataset
from lord.errors import UserError

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path):
    """An idx file (magic 0 0 dtype ndim, big-endian uint32 dims, data) as a numpy array."""
    try:
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rb") as file:
            data = file.read()
    except (OSError, EOFError) as error:
        raise UserError(f"cannot read {path}: {error}") from None
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in IDX_DTYPES:
        raise UserError(f"{path} is not an idx file (bad magic number)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise UserError(f"{path} is truncated (header of {header} bytes, file of {len(data)})")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(IDX_DTYPES[data[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(data) - header != expected:
        raise UserError(f"{path} holds {len(data) - header} data bytes, its header {dims} says {expected}")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)


def find_idx(root, name):
    for candidate in (root / name, root / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def read_npz(path):
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in NPZ_KEYS if key not in archive.files]
            if missing:
                raise UserError(f"{path} lacks the array(s) {', '.join(missing)} (expected {', '.join(NPZ_KEYS)})")
            return [archive[key] for key in NPZ_KEYS]
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise UserError(f"cannot read {path}: {error}") from None


def read_arrays(root):
    """(train images, train labels, test images, test labels) from whichever layout ROOT has."""
    idx_paths = [find_idx(root, name) for name in IDX_FILES]
    if all(idx_paths):
        return [read_idx(path) for path in idx_paths]
    if (root / "mnist.npz").is_file():
        return read_npz(root / "mnist.npz")
    raise layout_error("mnist", root, [
        f"the idx files {', '.join(IDX_FILES)} (each optionally .gz)",
        f"mnist.npz with {', '.join(NPZ_KEYS)}",
    ])


def load(root, img_size, quiet=False, **_):
    x_train, y_train, x_test, y_test = read_arrays(root)
    for name, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise UserError(f"mnist {name}: expected images (N, H, W) and labels (N,), got {x.shape} and {y.shape}")
    digits = np.concatenate([y_train, y_test]).astype(np.int64)
    imgs = np.concatenate([x_train, x_test]).astype(np.uint8)[..., None]
    classes, names = label_ids(digits.tolist())
    require_classes(len(names), "mnist")
    report(quiet, f"mnist: {len(x_train)} train + {len(x_test)} test images, {len(names)} digits")
    imgs = images.resize_all(imgs, int(img_size), quiet=quiet)
    return make_dataset(imgs, classes, n_classes=len(names), class_names=np.asarray([str(n) for n in names]))
