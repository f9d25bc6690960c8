#!/usr/bin/env python3
"""assets/align-faces.png: a real photo (scikit-image's astronaut portrait, turned by 20 degrees on a
larger grey canvas, as a tilted snapshot) beside its face aligned as FFHQ's faces were, made by
`lord.py align-faces --side-by-side`. Needs the faces extra and scikit-image.

    python benchmarks/align_faces_figure.py [--output assets/align-faces.png]
"""

import argparse
import importlib.util
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def tilted_photo():
    import skimage.data

    photo = skimage.data.astronaut()
    height, width = photo.shape[:2]
    turn = cv2.getRotationMatrix2D((width / 2, height / 2), 20, 1.0)
    turn[:, 2] += (100, 60)
    return cv2.warpAffine(photo, turn, (width + 200, height + 120), flags=cv2.INTER_CUBIC,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(200, 200, 200))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default=str(REPO / "assets" / "align-faces.png"), help="the PNG to write")
    args = parser.parse_args()
    spec = importlib.util.spec_from_file_location("lord_cli", REPO / "lord.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    with tempfile.TemporaryDirectory() as folder:
        photo = Path(folder) / "astronaut-tilted.png"
        Image.fromarray(np.ascontiguousarray(tilted_photo())).save(photo)
        sys.exit(cli.main(["align-faces", "-i", str(photo), "-o", args.output, "--size", "256", "--side-by-side"]))


if __name__ == "__main__":
    main()
