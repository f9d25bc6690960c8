"""FFHQ with the face-attribute features: class = `age` by decade, `age // 10` as OverLORD's preprocessing.

Images: ROOT/imgs/NNNNN.png (the OverLORD layout) or the official ROOT/images1024x1024/*/NNNNN.png.
Features: ROOT/features/NNNNN.json or ROOT/json/NNNNN.json, a list of detected faces with the age at
[0].faceAttributes.age. Images without an age are left out and counted. Classes keep their meaning
(class 3 is always 30-39, class 8 80-89: the published preprocessing keeps every decade), so there
are as many classes as the oldest decade present and an empty one is reported rather than renumbered.
Images are resized with PIL's bicubic filter as published (`--resize area` for OpenCV's area filter).
"""

import functools
import json

import numpy as np

from lord.data import images
from lord.data.common import layout_error, list_names, report, require_classes
from lord.data.store import make_dataset
from lord.errors import UserError

IMAGE_LAYOUTS = ("imgs/*.png", "images1024x1024/*/*.png")
FEATURE_DIRS = ("features", "json")


def age_class(age):
    """The published `age.astype(int16) // 10` of the age held as float32."""
    return max(int(np.float32(age)), 0) // 10


def age_names(n_classes):
    return tuple(f"{10 * decade}-{10 * decade + 9}" for decade in range(n_classes))


def read_age(path):
    """The age of the first face in a features file, or None when no face was measured."""
    try:
        with open(path) as file:
            faces = json.load(file)
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read features file {path}: {error}") from None
    if not isinstance(faces, list) or not faces:
        return None
    age = faces[0].get("faceAttributes", {}).get("age") if isinstance(faces[0], dict) else None
    return float(age) if isinstance(age, (int, float)) else None


def find_layout(root):
    for pattern in IMAGE_LAYOUTS:
        paths = sorted(root.glob(pattern), key=lambda path: path.stem)
        if paths:
            for features in FEATURE_DIRS:
                if (root / features).is_dir():
                    return paths, root / features
    return None, None


def load(root, img_size, resize="published", workers=None, skip_bad=False, quiet=False, **_):
    img_size = int(img_size)
    paths, feature_dir = find_layout(root)
    if paths is None:
        raise layout_error("ffhq", root, [(
            "images ROOT/imgs/NNNNN.png (or ROOT/images1024x1024/*/NNNNN.png) with face-attribute features "
            "ROOT/features/NNNNN.json (or ROOT/json/NNNNN.json)"
        )])
    kept_paths, ages, no_file, no_age, unreadable = [], [], [], [], []
    for path in paths:
        features = feature_dir / f"{path.stem}.json"
        if not features.is_file():
            no_file.append(path.name)
            continue
        try:
            age = read_age(features)
        except UserError:
            if not skip_bad:
                raise
            unreadable.append(features.name)
            continue
        if age is None:
            no_age.append(path.name)
            continue
        kept_paths.append(path)
        ages.append(age_class(age))
    left_out = len(no_file) + len(no_age) + len(unreadable)
    if left_out:
        report(quiet, (
            f"ffhq: left out {left_out} of {len(paths)} images without an age: {len(no_file)} with no features file, "
            f"{len(no_age)} with no face measured, {len(unreadable)} with an unreadable features file "
            f"(e.g. {list_names((no_file + no_age + unreadable)[:3])})"
        ))
    if not kept_paths:
        raise UserError(f"ffhq: no image in {root} has an age in {feature_dir}")
    transform = functools.partial(images.square_image, img_size=img_size, channels=3,
                                  resize_with=images.resize_function(resize, "pil-bicubic"))
    imgs, kept = images.fill_array(
        transform, kept_paths, (img_size, img_size, 3), workers=workers, skip_bad=skip_bad, desc="ffhq", quiet=quiet
    )
    age = np.asarray(ages, dtype=np.int64)[kept]
    counts = np.bincount(age)
    names = age_names(len(counts))
    require_classes(int((counts > 0).sum()), "ffhq")
    if (counts == 0).any():
        empty = [names[i] for i in np.flatnonzero(counts == 0)]
        report(quiet, f"ffhq: no image in the age class(es) {', '.join(empty)}")
    report(quiet, "ffhq: images per age class: " + ", ".join(f"{n} {c}" for n, c in zip(names, counts)))
    return make_dataset(
        imgs, age, n_classes=len(names), age=age, n_age=np.int64(len(names)), age_names=np.asarray(names)
    )
