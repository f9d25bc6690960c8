"""What the raw-dataset loaders share: optional packages, layout errors, label ids and reports."""

import importlib
import re

import numpy as np

from lord.data.images import is_image_file
from lord.errors import UserError


def require(module, extra, purpose):
    """Import an optional package, or say which pip extra installs it.

    Loaders call this inside `load`, so importing the toolkit never needs the package.
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(
            f"{purpose} needs the optional package {module}, which is not installed; "
            f"install it with: pip install -e .[{extra}]"
        ) from None


def layout_error(dataset_id, root, layouts):
    """The one error for a ROOT that matches none of a dataset's layouts, naming what was expected."""
    return UserError(f"{root} matches no {dataset_id} layout; expected {' or '.join(layouts)}")


def label_ids(values):
    """Ids 0..K-1 in the order of the sorted unique values (never set order), and those values."""
    names = sorted(set(values))
    index = {name: position for position, name in enumerate(names)}
    return np.fromiter((index[value] for value in values), dtype=np.int64, count=len(values)), names


def natural_key(text):
    """Sort key that puts 'frame2' before 'frame10'."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(text))]


def require_classes(n_classes, dataset_id):
    if n_classes < 2:
        raise UserError(f"{dataset_id}: the data has {n_classes} class(es); disentanglement needs at least two")


def check_no_empty(names, classes, dataset_id):
    """Refuse a class that ended up with no images (an empty folder, or all its files skipped)."""
    counts = np.bincount(classes, minlength=len(names))
    empty = [str(names[i]) for i in np.flatnonzero(counts == 0)]
    if empty:
        raise UserError(f"{dataset_id}: class(es) {', '.join(empty)} have no images")


def report(quiet, message):
    if not quiet:
        print(message)


def list_names(names, limit=20):
    """A comma-separated list of names, shortened past `limit`."""
    names = [str(name) for name in names]
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} ... and {len(names) - limit} more"


def image_files(directory):
    """The image files directly inside `directory`, sorted naturally."""
    files = (path for path in directory.iterdir() if path.is_file() and not path.name.startswith("."))
    return sorted(
        (path for path in files if is_image_file(path)),
        key=lambda path: natural_key(path.name),
    )
