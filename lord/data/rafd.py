"""Radboud Faces: ROOT/Rafd<angle>_<person>_<ethnicity>_<gender>_<expression>_<gaze>.jpg.

Class = expression; `identity` = person. The face is found with dlib's frontal face detector (the
best-scoring detection) and a square as wide as the image's shorter side is cut around it, as the
LORD paper's preprocessing did, then resized with cv2.resize's default (bilinear) filter as
lord-pytorch did (`--resize area` for the area filter). An image with no face is reported by name.
"""

import functools
import re

import numpy as np

from lord.data import images
from lord.data.common import label_ids, layout_error, list_names, natural_key, report, require, require_classes
from lord.data.store import make_dataset

FILE_PATTERN = re.compile(r"^Rafd(\d+)_(\d+)_([A-Za-z]+)_([A-Za-z]+)_([A-Za-z]+)_([A-Za-z]+)\.jpg$")
# Detections down to this score count, so turned and partly hidden faces are still found.
DETECTION_THRESHOLD = -1.0


def best_face(detector, img):
    """(top, left, bottom, right) of the best-scoring face, upsampling once if none is found."""
    for upsample in (0, 1):
        rects, scores, _ = detector.run(img, upsample, DETECTION_THRESHOLD)
        if len(rects):
            rect = rects[int(np.argmax(scores))]
            return rect.top(), rect.left(), rect.bottom(), rect.right()
    return None


def face_square(path, detector, img_size, resize_with=images.resize):
    img = images.read_image(path, 3)
    face = best_face(detector, img)
    if face is None:
        raise images.BadImage(f"no face found in {path}")
    top, left, bottom, right = face
    height, width = img.shape[:2]
    side = min(height, width)
    row = int(np.clip((top + bottom) // 2 - side // 2, 0, height - side))
    column = int(np.clip((left + right) // 2 - side // 2, 0, width - side))
    return resize_with(img[row : row + side, column : column + side], img_size)


def load(root, img_size, resize="published", workers=None, skip_bad=False, quiet=False, **_):
    img_size = int(img_size)
    resize_with = images.resize_function(resize, "cv2-bilinear")
    files = sorted(
        (p for p in root.iterdir() if p.is_file() and FILE_PATTERN.match(p.name)), key=lambda p: natural_key(p.name)
    )
    if not files:
        raise layout_error("rafd", root, ["ROOT/Rafd<angle>_<person>_<ethnicity>_<gender>_<expression>_<gaze>.jpg"])
    dlib = require("dlib", "faces", "finding faces in RaFD")
    fields = [FILE_PATTERN.match(path.name).groups() for path in files]
    transform = functools.partial(face_square, detector=dlib.get_frontal_face_detector(), img_size=img_size,
                                  resize_with=resize_with)
    imgs, kept = images.fill_array(
        transform, files, (img_size, img_size, 3),
        workers=workers, skip_bad=skip_bad, desc="rafd", quiet=quiet,
    )
    if not kept.all():
        left_out = [path.name for path, keep in zip(files, kept) if not keep]
        report(quiet, f"rafd: left out {len(left_out)} image(s) with no face or unreadable: {list_names(left_out)}")
    fields = [field for field, keep in zip(fields, kept) if keep]
    classes, expressions = label_ids([field[4] for field in fields])
    identity, people = label_ids([int(field[1]) for field in fields])
    require_classes(len(expressions), "rafd")
    report(quiet, f"rafd: {len(imgs)} faces, {len(expressions)} expressions, {len(people)} people")
    return make_dataset(
        imgs, classes, n_classes=len(expressions), identity=identity,
        class_names=np.asarray(expressions), identity_names=np.asarray([f"{p:02d}" for p in people]),
    )
