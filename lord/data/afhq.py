"""AFHQ: ROOT/<train or test>/<domain>/*.jpg; class = `domain` (sorted domain names: cat, dog, wild).

Images are resized with PIL's bicubic filter as OverLORD's preprocessing (`--resize area` for OpenCV's area filter).
"""

import functools

import numpy as np

from lord.data import images
from lord.data.common import check_no_empty, image_files, layout_error, list_names, report, require_classes
from lord.data.store import make_dataset
from lord.errors import UserError

SPLITS = ("train", "test")


def load(root, img_size, split="train", resize="published", workers=None, skip_bad=False, quiet=False, **_):
    img_size = int(img_size)
    if split not in SPLITS:
        raise UserError(f"afhq: --split must be one of {', '.join(SPLITS)}, got {split!r}")
    split_dir = root / split
    if not split_dir.is_dir():
        raise layout_error("afhq", root, [f"ROOT/{split}/<domain>/*.jpg (domains such as cat, dog, wild)"])
    domain_dirs = sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not domain_dirs:
        raise layout_error("afhq", root, [f"domain folders ROOT/{split}/<domain>/*.jpg"])
    names = [d.name for d in domain_dirs]
    paths, domains = [], []
    for index, domain_dir in enumerate(domain_dirs):
        files = image_files(domain_dir)
        paths.extend(files)
        domains.extend([index] * len(files))
    check_no_empty(names, np.asarray(domains, dtype=np.int64), "afhq")
    require_classes(len(names), "afhq")
    report(quiet, f"afhq {split}: {len(paths)} images of {len(names)} domains ({list_names(names)})")
    transform = functools.partial(images.square_image, img_size=img_size, channels=3,
                                  resize_with=images.resize_function(resize, "pil-bicubic"))
    imgs, kept = images.fill_array(
        transform, paths, (img_size, img_size, 3), workers=workers, skip_bad=skip_bad, desc="afhq", quiet=quiet
    )
    domain = np.asarray(domains, dtype=np.int64)[kept]
    check_no_empty(names, domain, "afhq")
    return make_dataset(
        imgs, domain, n_classes=len(names), domain=domain, n_domain=np.int64(len(names)),
        domain_names=np.asarray(names), class_names=np.asarray(names),
    )
