"""Raw datasets -> the preprocessed file, and splits of it."""

import contextlib
import time

from lord.assets import BaseDir
from lord.data import store
from lord.data.images import spooled_to
from lord.data.registry import SPECS, get_spec, load_dataset  # noqa: F401
from lord.errors import UserError


def refuse_existing(path, what, overwrite):
    if path.exists() and not overwrite:
        raise UserError(f"{what} {path} already exists (use --overwrite to replace it)")


def preprocess(base_dir, dataset_id, dataset_path, data_name, overwrite=False, quiet=False, overlord_defaults=False,
               **options):
    """Read a raw dataset and write cache/preprocess/<data_name>.npz; returns the path.

    The images a loader decodes from files go to a temporary file beside the output as they come
    (see `images.spooled_to`) and from there into the output a chunk at a time: the memory this takes
    is a few batches of images, whatever the size of the set."""
    out = BaseDir(base_dir).data_path(data_name)
    refuse_existing(out, "preprocessed data", overwrite)
    start = time.perf_counter()
    created = [directory for directory in (out.parent, *out.parent.parents) if not directory.exists()]
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create directory {out.parent}: {error.strerror or error}") from None
    try:
        with spooled_to(out.parent):
            dataset = load_dataset(dataset_id, dataset_path, overlord_defaults=overlord_defaults, quiet=quiet,
                                   **options)
            store.save(out, dataset)
    except BaseException:
        for directory in created:
            with contextlib.suppress(OSError):
                directory.rmdir()
        raise
    if not quiet:
        height, width, channels = dataset.img_shape
        print(
            f"wrote {out}: {len(dataset)} images of {height}x{width}x{channels}, {dataset.n_classes} classes, "
            f"{out.stat().st_size / 2**20:.1f} MiB in {time.perf_counter() - start:.1f}s"
        )
    return out
