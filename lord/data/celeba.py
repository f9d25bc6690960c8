"""CelebA (aligned): class = identity, each image centre-cropped to 128 and resized.

`n_identities` keeps a reproducible random subset of the people (by `seed`), as the OverLORD
identity experiments do. The crop is resized with cv2.resize's default (bilinear) filter as
lord-pytorch did (at 128, OverLORD's size, the crop is kept as it is); `--resize area` for the area filter.
"""

import functools
import os

import numpy as np

from lord.data import images
from lord.data.common import label_ids, layout_error, report, require_classes
from lord.data.store import make_dataset
from lord.errors import UserError

CROP_SIZE = 128
IMAGE_DIRS = (
    ("Img/img_align_celeba_png.7z/img_align_celeba_png", ".png"),
    ("Img/img_align_celeba", ".jpg"),
    ("img_align_celeba", ".jpg"),
)
IDENTITY_FILE = "Anno/identity_CelebA.txt"


def find_images(root):
    """The first image directory of the known layouts that exists, and its file extension."""
    for relative, extension in IMAGE_DIRS:
        if (root / relative).is_dir():
            return root / relative, extension
    return None, None


def read_identities(path):
    """[(image stem, identity)] in file order from lines like `000001.jpg 2880`."""
    entries = []
    try:
        with open(path) as file:
            for number, line in enumerate(file, 1):
                fields = line.split()
                if not fields:
                    continue
                if len(fields) != 2 or not fields[1].isdigit():
                    raise UserError(f"{path}:{number}: expected '<image> <identity>', got {line.strip()!r}")
                entries.append((os.path.splitext(fields[0])[0], int(fields[1])))
    except OSError as error:
        raise UserError(f"cannot read {path}: {error}") from None
    if not entries:
        raise UserError(f"{path} lists no images")
    return entries


def crop_and_resize(path, crop_size, img_size, resize_with=images.resize):
    return resize_with(images.center_crop(images.read_image(path, 3), crop_size), img_size)


def load(root, img_size, n_identities=None, resize="published", workers=None, skip_bad=False, seed=0, quiet=False,
         **_):
    img_size = int(img_size)
    image_dir, extension = find_images(root)
    if image_dir is None or not (root / IDENTITY_FILE).is_file():
        raise layout_error("celeba", root, [
            "images in one of " + ", ".join(f"ROOT/{relative}/*{ext}" for relative, ext in IMAGE_DIRS)
            + f" with identities in ROOT/{IDENTITY_FILE}"
        ])
    entries = read_identities(root / IDENTITY_FILE)
    if n_identities is not None:
        everyone = sorted({identity for _, identity in entries})
        if int(n_identities) > len(everyone):
            raise UserError(f"--n-identities {n_identities} exceeds the {len(everyone)} people in {IDENTITY_FILE}")
        chosen = set(np.random.default_rng(seed).choice(everyone, size=int(n_identities), replace=False).tolist())
        entries = [(stem, identity) for stem, identity in entries if identity in chosen]
    present = set(os.listdir(image_dir))
    missing = [stem + extension for stem, _ in entries if stem + extension not in present]
    if missing:
        raise UserError(
            f"{len(missing)} image(s) listed in {IDENTITY_FILE} are missing from {image_dir} (e.g. {missing[0]})"
        )
    paths = [image_dir / (stem + extension) for stem, _ in entries]
    report(quiet, f"celeba: {len(paths)} images of {len({i for _, i in entries})} people from {image_dir}")
    transform = functools.partial(crop_and_resize, crop_size=CROP_SIZE, img_size=img_size,
                                  resize_with=images.resize_function(resize, "cv2-bilinear"))
    imgs, kept = images.fill_array(
        transform, paths, (img_size, img_size, 3), workers=workers, skip_bad=skip_bad, desc="celeba", quiet=quiet
    )
    identities = [identity for (_, identity), keep in zip(entries, kept) if keep]
    classes, people = label_ids(identities)
    require_classes(len(people), "celeba")
    return make_dataset(
        imgs, classes, n_classes=len(people), identity=classes, class_names=np.asarray([str(p) for p in people])
    )
