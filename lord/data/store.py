"""The preprocessed file: `cache/preprocess/<data-name>.npz`.

Arrays (readable by the original implementation too):

    imgs       uint8 (N, H, W, C), C = 1 or 3
    classes    int64 (N,)  the papers' labelled attribute, 0 <= c < n_classes
    contents   int64 (N,)  ground-truth content id where the dataset has one, else zeros
    n_classes  int64 ()

Optional per-sample arrays: named labels (`age`, `identity`, `domain`, `gender`, `pair`: int64 (N,)
with `n_<label>` beside them) and `masks` uint8 (N, H, W). Arrays whose name ends in `names`
(`class_names`, `domain_names`, ...) and scalars named `n_<something>` describe the whole set.

Files are written deterministically (fixed zip timestamps, sorted keys): the same data gives a
byte-identical file. Nothing is ever loaded with pickle.

Members are stored uncompressed, so `load` maps `imgs` and `masks` from the file instead of reading
them (see lord.data.mapped): every process of a machine shares the page cache's one copy. A file
written with compressed members (an older version, or `np.savez_compressed`) is read into memory.
`save` writes those arrays a chunk of rows at a time, so saving a mapped set costs no more memory
than one chunk.
"""

import os
import sys
import zipfile
from dataclasses import dataclass, field

import numpy as np

from lord.assets import atomic_write
from lord.data import mapped
from lord.errors import UserError

LABEL_NAMES = ("classes", "age", "identity", "domain", "gender", "pair")
REQUIRED = ("imgs", "classes", "contents", "n_classes")
MAPPED = ("imgs", "masks")
CHUNK_BYTES = 32 * 2**20


def is_global_key(key):
    """Whether an array describes the whole set rather than one entry per image."""
    return key.startswith("n_") or key.endswith("names")


@dataclass
class Dataset:
    """Images with their labels, as held in memory between loading and training."""

    imgs: np.ndarray
    classes: np.ndarray
    contents: np.ndarray
    n_classes: int
    extras: dict = field(default_factory=dict)

    def __len__(self):
        return len(self.imgs)

    @property
    def img_shape(self):
        return tuple(int(s) for s in self.imgs.shape[1:])

    def label(self, name):
        """A per-image integer label array and the number of its values."""
        if name == "classes":
            return self.classes, int(self.n_classes)
        if name not in self.extras:
            available = [n for n in LABEL_NAMES if n == "classes" or n in self.extras]
            raise UserError(f"the data has no label {name!r} (it has: {', '.join(available)})")
        values = self.extras[name]
        count = self.extras.get(f"n_{name}")
        count = int(count) if count is not None else int(values.max()) + 1
        return values, count

    def arrays(self):
        out = {
            "imgs": self.imgs,
            "classes": self.classes,
            "contents": self.contents,
            "n_classes": np.asarray(self.n_classes, dtype=np.int64),
        }
        out.update(self.extras)
        return out

    def subset(self, indices):
        """The images at `indices`, with every per-image array and every global array kept."""
        indices = np.asarray(indices, dtype=np.int64)
        extras = {
            key: (value if is_global_key(key) else value[indices])
            for key, value in self.extras.items()
        }
        return Dataset(
            imgs=self.imgs[indices],
            classes=self.classes[indices],
            contents=self.contents[indices],
            n_classes=self.n_classes,
            extras=extras,
        )


def make_dataset(imgs, classes, contents=None, n_classes=None, **extras):
    """Build and validate a Dataset from arrays, filling the defaults."""
    imgs = np.asarray(imgs)
    if imgs.ndim == 3:
        imgs = imgs[..., None]
    classes = np.asarray(classes, dtype=np.int64)
    if contents is None:
        contents = np.zeros(len(classes), dtype=np.int64)
    if n_classes is None:
        n_classes = int(classes.max()) + 1 if len(classes) else 0
    extras = {key: np.asarray(value) for key, value in extras.items() if value is not None}
    for key, value in list(extras.items()):
        if key in LABEL_NAMES and f"n_{key}" not in extras and len(value):
            extras[f"n_{key}"] = np.asarray(int(value.max()) + 1, dtype=np.int64)
    dataset = Dataset(imgs, classes, np.asarray(contents, dtype=np.int64), int(n_classes), extras)
    validate(dataset, "the data")
    return dataset


def save(path, dataset, indices=None):
    """Write `dataset` (or its images at `indices`) to `path` atomically and deterministically.

    Per-image arrays are written a chunk of rows at a time, and the pages of a mapped source are
    released after each chunk: the memory this takes does not grow with the set.
    """
    validate(dataset, "the data to save")
    arrays = dataset.arrays()
    if indices is not None:
        indices = np.asarray(indices, dtype=np.int64)
        arrays = {key: (value if is_global_key(key) or key in MAPPED else value[indices])
                  for key, value in arrays.items()}

    def write(file):
        with zipfile.ZipFile(file, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
            for key in sorted(arrays):
                info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.external_attr = 0o644 << 16
                with archive.open(info, mode="w", force_zip64=True) as member:
                    write_npy(member, arrays[key], indices if key in MAPPED else None)

    atomic_write(path, write)


def write_npy(file, array, rows=None):
    """The .npy bytes of `array` (or of `array[rows]`), written a chunk of rows at a time."""
    array = np.asarray(array)
    shape = array.shape if rows is None else (len(rows),) + array.shape[1:]
    header = {"descr": np.lib.format.dtype_to_descr(array.dtype), "fortran_order": False, "shape": shape}
    try:
        np.lib.format.write_array_header_1_0(file, header)
    except ValueError:
        np.lib.format.write_array_header_2_0(file, header)
    if array.ndim == 0:
        file.write(np.ascontiguousarray(array).tobytes())
        return
    row_bytes = max(1, array[:1].nbytes)
    step = max(1, CHUNK_BYTES // row_bytes)
    for first in range(0, shape[0], step):
        if rows is None:
            source = array[first : first + step]
            file.write(memoryview(np.ascontiguousarray(source)).cast("B"))
            mapped.release(source)
        else:
            chunk = rows[first : first + step]
            file.write(memoryview(np.ascontiguousarray(array[chunk])).cast("B"))
            mapped.release(array[int(chunk.min()) : int(chunk.max()) + 1])


def load(path):
    """Read and validate a preprocessed file, mapping its images; every problem is a UserError naming it."""
    path = os.fspath(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise UserError(f"missing preprocessed file: {path}") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise UserError(f"cannot read preprocessed file {path}: {error}") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise UserError(f"{path} is not a preprocessed .npz file (it holds a single array)")
    with archive:
        missing = [key for key in REQUIRED if key not in archive.files]
        if missing:
            raise UserError(f"{path} lacks the array(s) {', '.join(missing)}")
        try:
            arrays = {key: archive[key] for key in archive.files if key not in MAPPED}
            arrays.update(_mapped_members(path, archive))
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
            raise UserError(f"cannot read preprocessed file {path}: {error}") from None
    imgs = arrays.pop("imgs")
    if imgs.ndim == 3:
        imgs = imgs[..., None]
    classes = arrays.pop("classes")
    contents = arrays.pop("contents")
    n_classes = arrays.pop("n_classes")
    if n_classes.shape != () or not np.issubdtype(n_classes.dtype, np.integer):
        raise UserError(f"{path}: n_classes must be an integer scalar, got {n_classes.dtype} {n_classes.shape}")
    for name, values in (("classes", classes), ("contents", contents)):
        if not np.issubdtype(values.dtype, np.integer):
            raise UserError(f"{path}: {name} must hold integers, got {values.dtype}")
    dataset = Dataset(imgs, classes.astype(np.int64), contents.astype(np.int64), int(n_classes), arrays)
    validate(dataset, str(path))
    return dataset


def _mapped_members(path, archive):
    """`imgs` and `masks` as read-only views of one mapping of the file; read instead, with a note,
    where a member cannot be mapped (compressed by an older version)."""
    members = {info.filename[: -len(".npy")]: info for info in archive.zip.infolist()
               if info.filename.endswith(".npy") and info.filename[: -len(".npy")] in MAPPED}
    if not members:
        return {}
    file_size = os.path.getsize(path)
    mapping = mapped.map_file(path)
    out = {}
    for key, info in sorted(members.items()):
        try:
            out[key] = mapped.npz_member(mapping, info, file_size)
        except mapped.Damaged as error:
            raise UserError(f"cannot read preprocessed file {path} (damaged or truncated): {error}") from None
        except mapped.NotMappable as reason:
            print(f"note: {path} stores {key} {reason} (written by an older version), so each process reads it "
                  "into its own memory instead of sharing one copy; run preprocess again to share it",
                  file=sys.stderr)
            out[key] = archive[key]
    return out


def validate(dataset, where):
    """Check dtypes, shapes, lengths and label ranges; raise a UserError naming the problem."""
    imgs = dataset.imgs
    if imgs.dtype != np.uint8:
        raise UserError(f"{where}: imgs must be uint8, got {imgs.dtype}")
    if imgs.ndim != 4 or imgs.shape[-1] not in (1, 3):
        raise UserError(f"{where}: imgs must have shape (N, H, W, 1 or 3), got {imgs.shape}")
    count = len(imgs)
    if count == 0:
        raise UserError(f"{where}: the set is empty (0 images)")
    if min(imgs.shape[1:3]) < 1:
        raise UserError(f"{where}: images have no pixels ({imgs.shape})")
    if dataset.n_classes < 1:
        raise UserError(f"{where}: n_classes must be at least 1, got {dataset.n_classes}")
    for name, values in (("classes", dataset.classes), ("contents", dataset.contents)):
        if values.shape != (count,):
            raise UserError(f"{where}: {name} has shape {values.shape} but there are {count} images")
    if dataset.classes.min() < 0 or dataset.classes.max() >= dataset.n_classes:
        raise UserError(
            f"{where}: classes must lie in [0, {dataset.n_classes}), "
            f"found {dataset.classes.min()}..{dataset.classes.max()}"
        )
    if dataset.contents.min() < 0:
        raise UserError(f"{where}: contents must be non-negative")
    for key, value in dataset.extras.items():
        if value.dtype == object:
            raise UserError(f"{where}: array {key!r} holds Python objects, which are not allowed")
        if is_global_key(key):
            continue
        if len(value.shape) == 0 or value.shape[0] != count:
            raise UserError(f"{where}: {key} has shape {value.shape} but there are {count} images")
        if key == "masks":
            if value.dtype != np.uint8 or value.shape[1:] != imgs.shape[1:3]:
                raise UserError(
                    f"{where}: masks must be uint8 of shape (N, {imgs.shape[1]}, {imgs.shape[2]}), "
                    f"got {value.dtype} {value.shape}"
                )
        elif key in LABEL_NAMES:
            if value.ndim != 1 or not np.issubdtype(value.dtype, np.integer):
                raise UserError(f"{where}: label {key} must be a 1-d integer array, got {value.dtype} {value.shape}")
            if value.min() < 0:
                raise UserError(f"{where}: label {key} has negative values")
            declared = dataset.extras.get(f"n_{key}")
            if declared is not None and value.max() >= int(declared):
                raise UserError(f"{where}: label {key} must lie in [0, {int(declared)}), found {value.max()}")
