"""A user's own images laid out as ROOT/<class name>/<image file>.

Each image is centre-cropped and resized (area filter), or with `align_faces` its largest face is
aligned as FFHQ was (lord.faces), for training a face model on one's own photos.
"""

import functools

import numpy as np

from lord.data import images
from lord.data.store import make_dataset
from lord.faces import FaceAligner, aligned_or_none, check_size
from lord.errors import UserError


def scan(root):
    """(paths, class ids, class names) with classes from the sorted directory names."""
    class_dirs = sorted(path for path in root.iterdir() if path.is_dir() and not path.name.startswith("."))
    if not class_dirs:
        raise UserError(f"{root} has no class directories; expected ROOT/<class name>/<image file>")
    paths, classes, names = [], [], []
    for class_dir in class_dirs:
        files = sorted(
            path for path in class_dir.iterdir()
            if path.is_file() and not path.name.startswith(".") and images.is_image_file(path)
        )
        if not files:
            raise UserError(f"class directory {class_dir} holds no images ({', '.join(images.IMAGE_EXTENSIONS)})")
        paths.extend(files)
        classes.extend([len(names)] * len(files))
        names.append(class_dir.name)
    if len(names) < 2:
        raise UserError(f"{root} has a single class ({names[0]!r}); disentanglement needs at least two")
    return paths, np.asarray(classes, dtype=np.int64), names


def aligned_face(path, aligner, img_size, channels):
    """The largest face of an image file aligned at img_size; a photo without one is a bad image."""
    aligned = aligned_or_none(path, aligner, img_size)
    if aligned is None:
        raise images.BadImage(f"no face found in {path}")
    return images.to_channels(aligned, channels)


def load(root, img_size, channels=None, align_faces=False, workers=None, skip_bad=False, quiet=False, **_):
    paths, classes, names = scan(root)
    if channels is None:
        try:
            channels = 1 if all(images.image_channels(path) == 1 for path in paths) else 3
        except images.BadImage as error:
            if not skip_bad:
                raise UserError(f"{error} (use --skip-bad to skip unreadable files)") from None
            channels = 3
    elif int(channels) not in (1, 3):
        raise UserError(f"--channels must be 1 or 3, got {channels}")
    channels = int(channels)
    if align_faces:
        check_size(img_size)
        transform = functools.partial(aligned_face, aligner=FaceAligner(), img_size=int(img_size), channels=channels)
    else:
        transform = functools.partial(images.square_image, img_size=int(img_size), channels=channels)
    imgs, kept = images.fill_array(
        transform, paths, (img_size, img_size, channels), workers=workers, skip_bad=skip_bad, quiet=quiet
    )
    classes = classes[kept]
    present = np.unique(classes)
    if len(present) < len(names):
        empty = [names[i] for i in range(len(names)) if i not in set(present.tolist())]
        raise UserError(f"class(es) {', '.join(empty)} have no readable images left")
    return make_dataset(imgs, classes, n_classes=len(names), class_names=np.asarray(names))
