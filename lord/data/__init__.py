"""Raw datasets -> the preprocessed file, and splits of it."""

import time

from lord.assets import BaseDir
from lord.data import store
from lord.data.registry import SPECS, get_spec, load_dataset  # noqa: F401
from lord.errors import UserError


def refuse_existing(path, what, overwrite):
    if path.exists() and not overwrite:
        raise UserError(f"{what} {path} already exists (use --overwrite to replace it)")


def preprocess(base_dir, dataset_id, dataset_path, data_name, overwrite=False, quiet=False, overlord_defaults=False,
               **options):
    """Read a raw dataset and write cache/preprocess/<data_name>.npz; returns the path."""
    out = BaseDir(base_dir).data_path(data_name)
    refuse_existing(out, "preprocessed data", overwrite)
    start = time.perf_counter()
    dataset = load_dataset(dataset_id, dataset_path, overlord_defaults=overlord_defaults, quiet=quiet, **options)
    store.save(out, dataset)
    if not quiet:
        height, width, channels = dataset.img_shape
        print(
            f"wrote {out}: {len(dataset)} images of {height}x{width}x{channels}, {dataset.n_classes} classes, "
            f"{out.stat().st_size / 2**20:.1f} MiB in {time.perf_counter() - start:.1f}s"
        )
    return out
