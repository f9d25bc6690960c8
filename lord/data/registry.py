"""Dataset ids -> loaders.

A loader is `load(root, **options) -> Dataset`. `options` holds only the options the user gave;
each loader declares the ones it accepts with their defaults, so an option that does not apply to a
dataset is refused instead of silently ignored.
"""

import importlib
from dataclasses import dataclass, field
from pathlib import Path

from lord.errors import UserError

# Options every loader understands; they need not be declared per dataset.
COMMON_OPTIONS = {"workers": None, "skip_bad": False, "quiet": False, "seed": 0}


@dataclass(frozen=True)
class DatasetSpec:
    id: str
    module: str
    description: str
    needs_path: bool = True
    options: dict = field(default_factory=dict)
    # Defaults of the published OverLORD's preprocess where they differ from LORD's (`-odn` asks for them).
    overlord_options: dict = field(default_factory=dict)

    def loader(self):
        return importlib.import_module(self.module).load


SPECS = {
    spec.id: spec
    for spec in [
        DatasetSpec(
            "synthetic",
            "lord.data.synthetic",
            "rendered objects with known class and content factors (no download)",
            needs_path=False,
            options={"img_size": 64, "n_classes": 32, "channels": 3, "rotations": 8},
        ),
        DatasetSpec(
            "folder",
            "lord.data.folder",
            "your own images laid out as ROOT/<class name>/<image file>",
            options={"img_size": 64, "channels": None, "align_faces": False},
        ),
        DatasetSpec(
            "mnist",
            "lord.data.mnist",
            "MNIST digits (idx files or mnist.npz); class = digit",
            options={"img_size": 64},
        ),
        DatasetSpec(
            "smallnorb",
            "lord.data.smallnorb",
            "smallNORB toys (JPEG tree or official .mat files); class = object x elevation x lighting x camera, "
            "content = azimuth",
            options={"img_size": 64, "resize": "published"},
        ),
        DatasetSpec(
            "cars3d",
            "lord.data.cars3d",
            "Cars3D renderings (cars3d.npz or official .mat files); class = car model, content = viewpoint",
            options={"img_size": 64},
        ),
        DatasetSpec(
            "shapes3d",
            "lord.data.shapes3d",
            "3D Shapes (3dshapes.h5); class = shape, content = the other five factors",
            options={"img_size": 64},
        ),
        DatasetSpec(
            "celeba",
            "lord.data.celeba",
            "CelebA aligned faces; class = identity",
            options={"img_size": 64, "n_identities": None, "resize": "published"},
            overlord_options={"img_size": 128},
        ),
        DatasetSpec(
            "kth",
            "lord.data.kth",
            "KTH human actions (frames or official .avi videos) of one action and condition; class = person",
            options={"img_size": 64, "action": "handwaving", "condition": "d4"},
        ),
        DatasetSpec(
            "rafd",
            "lord.data.rafd",
            "Radboud Faces, face-cropped with dlib; class = expression, also identity",
            options={"img_size": 64, "resize": "published"},
        ),
        DatasetSpec(
            "ffhq",
            "lord.data.ffhq",
            "FFHQ with face-attribute features; class = age decade",
            options={"img_size": 256, "resize": "published"},
        ),
        DatasetSpec(
            "afhq",
            "lord.data.afhq",
            "AFHQ animal faces; class = domain",
            options={"img_size": 256, "split": "train", "resize": "published"},
        ),
        DatasetSpec(
            "celebahq",
            "lord.data.celebahq",
            "CelebA-HQ with CelebAMask-HQ annotations; class = gender, masks of one face part",
            options={"img_size": 256, "part": "hair", "resize": "published"},
        ),
        DatasetSpec(
            "edges2shoes",
            "lord.data.edges2shoes",
            "pix2pix edges2shoes; class = domain (edges, shoes), pair links the two halves",
            options={"img_size": 64, "split": "train"},
        ),
    ]
}


def option_flag(name):
    return "--" + name.replace("_", "-")


def get_spec(dataset_id):
    if dataset_id not in SPECS:
        raise UserError(f"unknown dataset id {dataset_id!r}; choose one of: {', '.join(sorted(SPECS))}")
    return SPECS[dataset_id]


def load_dataset(dataset_id, dataset_path=None, overlord_defaults=False, **options):
    """Run the loader of `dataset_id` on a raw dataset directory and return a validated Dataset.
    `overlord_defaults`: options not given take the published OverLORD's defaults where they differ."""
    spec = get_spec(dataset_id)
    given = {key: value for key, value in options.items() if value is not None}
    unknown = sorted(set(given) - set(spec.options) - set(COMMON_OPTIONS))
    if unknown:
        flags = ", ".join(option_flag(name) for name in unknown)
        raise UserError(f"option {flags} does not apply to dataset {dataset_id!r}")
    resolved = dict(COMMON_OPTIONS)
    resolved.update(spec.options)
    if overlord_defaults:
        resolved.update(spec.overlord_options)
    resolved.update(given)
    if spec.needs_path:
        if dataset_path is None:
            raise UserError(f"dataset {dataset_id!r} needs --dataset-path")
        root = Path(dataset_path)
        if not root.exists():
            raise UserError(f"dataset path {root} does not exist")
        if not root.is_dir():
            raise UserError(f"dataset path {root} is not a directory")
    else:
        if dataset_path is not None:
            raise UserError(f"dataset {dataset_id!r} is generated and takes no --dataset-path")
        root = None
    if "img_size" in resolved and resolved["img_size"] is not None and int(resolved["img_size"]) < 8:
        raise UserError(f"--img-size must be at least 8, got {resolved['img_size']}")
    if resolved.get("workers") is not None and int(resolved["workers"]) < 1:
        raise UserError(f"--workers must be at least 1, got {resolved['workers']}")
    return spec.loader()(root, **resolved)
