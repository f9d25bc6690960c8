"""CelebA-HQ with the CelebAMask-HQ annotations: class = `gender`, plus the `masks` of one face part.

Images: ROOT/imgs/<n>.jpg or .png (the OverLORD layout) or ROOT/CelebAMask-HQ/CelebA-HQ-img/<n>.jpg
(the official one). Attributes: ROOT/CelebAMask-HQ/CelebAMask-HQ-attribute-anno.txt (a count line,
the 40 attribute names, then `<n>.jpg` and 40 values of -1/1). Part masks:
ROOT/CelebAMask-HQ/CelebAMask-HQ-mask-anno/<folder>/<05d>_<part>.png; an image without a mask of the
chosen part gets an all-zero mask (e.g. a bald person for `hair`).

As OverLORD's preprocessing: images and masks resized with PIL's bicubic filter, and a mask pixel
counts only where the resized mask is exactly 255 (`mask // 255`). `--resize area`: OpenCV's area
filter for both, a mask pixel counting where the resized mask is at least 128.
"""

import functools
import re

import numpy as np
from PIL import Image, UnidentifiedImageError

from lord.data import images
from lord.data.common import layout_error, list_names, report, require_classes
from lord.data.store import make_dataset
from lord.errors import UserError

IMAGE_DIRS = ("imgs", "CelebAMask-HQ/CelebA-HQ-img")
ATTRIBUTE_FILE = "CelebAMask-HQ/CelebAMask-HQ-attribute-anno.txt"
MASK_DIR = "CelebAMask-HQ/CelebAMask-HQ-mask-anno"
PARTS = ("skin", "nose", "eye_g", "l_eye", "r_eye", "l_brow", "r_brow", "l_ear", "r_ear", "mouth", "u_lip",
         "l_lip", "hair", "hat", "ear_r", "neck_l", "neck", "cloth")
GENDER_NAMES = ("female", "male")
IMAGE_PATTERN = re.compile(r"^(\d+)\.(jpg|png)$")
MASK_PATTERN = re.compile(r"^(\d+)_([a-z_]+)\.png$")


def read_attributes(path):
    """{image number: {attribute name: -1 or 1}}."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read {path}: {error}") from None
    if len(lines) < 2:
        raise UserError(f"{path}: expected a count line and an attribute-name line")
    names = lines[1].split()
    attributes = {}
    for number, line in enumerate(lines[2:], 3):
        fields = line.split()
        if not fields:
            continue
        match = IMAGE_PATTERN.match(fields[0])
        if match is None or len(fields) != len(names) + 1:
            raise UserError(f"{path}:{number}: expected '<n>.jpg' and {len(names)} values")
        try:
            attributes[int(match.group(1))] = dict(zip(names, (int(value) for value in fields[1:])))
        except ValueError:
            raise UserError(f"{path}:{number}: attribute values must be -1 or 1") from None
    return names, attributes


def find_images(root):
    for relative in IMAGE_DIRS:
        directory = root / relative
        if directory.is_dir():
            found = {}
            for path in directory.iterdir():
                match = IMAGE_PATTERN.match(path.name)
                if match:
                    found.setdefault(int(match.group(1)), path)
            if found:
                return directory, found
    return None, {}


def find_masks(mask_dir, part):
    """{image number: mask path} of one part across every mask folder."""
    masks = {}
    for folder in sorted(p for p in mask_dir.iterdir() if p.is_dir()):
        for path in folder.iterdir():
            match = MASK_PATTERN.match(path.name)
            if match and match.group(2) == part:
                masks[int(match.group(1))] = path
    return masks


def read_mask(path, img_size, resize="published"):
    """A 0/1 mask at img_size, or zeros when the image has no mask of the part (path None)."""
    if path is None:
        return np.zeros((img_size, img_size), dtype=np.uint8)
    try:
        with Image.open(path) as mask:
            mask = np.asarray(mask.convert("RGB"), dtype=np.uint8)[..., :1]
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise images.BadImage(f"cannot read mask {path}: {error}") from None
    if resize == "published":
        return images.resize_pil_bicubic(mask, img_size)[..., 0] // 255
    return (images.resize(mask, img_size)[..., 0] >= 128).astype(np.uint8)


def load(root, img_size, part="hair", resize="published", workers=None, skip_bad=False, quiet=False, **_):
    img_size = int(img_size)
    if part not in PARTS:
        raise UserError(f"celebahq: unknown --part {part!r}; choose one of {', '.join(PARTS)}")
    resize_with = images.resize_function(resize, "pil-bicubic")
    image_dir, image_paths = find_images(root)
    if image_dir is None or not (root / ATTRIBUTE_FILE).is_file() or not (root / MASK_DIR).is_dir():
        raise layout_error("celebahq", root, [(
            f"images ROOT/imgs/<n>.jpg|.png (or ROOT/{IMAGE_DIRS[1]}/<n>.jpg) with ROOT/{ATTRIBUTE_FILE} "
            f"and part masks ROOT/{MASK_DIR}/<folder>/<05d>_<part>.png"
        )])
    names, attributes = read_attributes(root / ATTRIBUTE_FILE)
    if "Male" not in names:
        raise UserError(f"{root / ATTRIBUTE_FILE} has no 'Male' attribute")
    numbers = sorted(image_paths)
    unlabelled = [n for n in numbers if n not in attributes]
    if unlabelled:
        report(quiet, f"celebahq: left out {len(unlabelled)} image(s) with no attribute line: {list_names(unlabelled)}")
        numbers = [n for n in numbers if n in attributes]
    if not numbers:
        raise UserError(f"celebahq: no image in {image_dir} is listed in {ATTRIBUTE_FILE}")
    masks = find_masks(root / MASK_DIR, part)
    with_mask = sum(n in masks for n in numbers)
    if with_mask == 0:
        raise UserError(f"celebahq: no {part} mask found in {root / MASK_DIR} for any of the {len(numbers)} images")
    report(quiet, f"celebahq: {len(numbers)} images, {with_mask} with a {part} mask (the others get an empty mask)")
    mask_arrays, kept = images.fill_array(
        functools.partial(read_mask, img_size=img_size, resize=resize), [masks.get(n) for n in numbers],
        (img_size, img_size),
        workers=workers, skip_bad=skip_bad, desc=f"{part} masks", quiet=quiet,
    )
    numbers = [n for n, keep in zip(numbers, kept) if keep]
    transform = functools.partial(images.square_image, img_size=img_size, channels=3, resize_with=resize_with)
    imgs, kept = images.fill_array(
        transform, [image_paths[n] for n in numbers], (img_size, img_size, 3),
        workers=workers, skip_bad=skip_bad, desc="celebahq", quiet=quiet,
    )
    if not kept.all():
        mask_arrays = mask_arrays[kept]
        numbers = [n for n, keep in zip(numbers, kept) if keep]
    gender = np.asarray([int(attributes[n]["Male"] == 1) for n in numbers], dtype=np.int64)
    require_classes(len(np.unique(gender)), "celebahq")
    return make_dataset(
        imgs, gender, n_classes=len(GENDER_NAMES), gender=gender, n_gender=np.int64(len(GENDER_NAMES)),
        gender_names=np.asarray(GENDER_NAMES), class_names=np.asarray(GENDER_NAMES), masks=mask_arrays,
    )
