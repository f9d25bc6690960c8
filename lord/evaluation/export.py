"""`evaluate --export DIR`: the translations an evaluation scored, as PNG files in the layout the
OverLORD authors' evaluation scripts read, with a JSON index linking every file to its sources.

    DIR/index.json
    DIR/translations/content/<a>.png                  image A (gives the content), once each
    DIR/translations/style/<b>.png                    image B (gives the label), once each
    DIR/translations/translation/<a>-<b>.png          G(content of A, label of B)
    DIR/diversity/translations/<la>-to-<lb>/content/<a>.png           OverLORD: the LPIPS-diversity inputs
    DIR/diversity/translations/<la>-to-<lb>/translation/<a>-<k>.png   and their translations (k = 0, 1, ...)

<a> and <b> are image indices in the evaluated data, <la> and <lb> label values. Their face metrics
script reads `--eval-dir DIR`, their LPIPS script `--eval-dir DIR/diversity`, and an FID script the
folders `translations/style` (real images of the target labels) and `translations/translation`.
The files are the uint8 images the evaluation itself scored (rounded as every PNG of the toolkit).

Everything is written into a hidden sibling directory that is renamed to DIR once the evaluation is
complete, so DIR never holds half an export; an existing non-empty DIR is refused, never replaced.
"""

import json
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from lord.errors import UserError

INDEX = "index.json"


def check_export_dir(directory, n_labels):
    """The export directory as a Path, after the checks a user's mistake could fail."""
    directory = Path(directory)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise UserError(f"--export {directory}: it exists and is not an empty directory; give a new directory")
    if n_labels < 2:
        raise UserError("--export needs translations between images of different labels, but the data has a single "
                        "label value")
    return directory


def _save(path, image):
    """uint8 (H, W, C) -> PNG (grey for one channel)."""
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(path, format="PNG")


class TranslationExport:
    """Collects translated batches into the staging directory; `commit` puts it in place.

    Used as a context manager: leaving it without `commit` (an error, Ctrl-C) removes the staging
    directory, which only this object wrote.
    """

    def __init__(self, directory, labels):
        self.directory = Path(directory)
        self.labels = np.asarray(labels)
        self.staging = self.directory.parent / f".{self.directory.name}.tmp-{os.getpid()}"
        self.pairs = []
        self.diversity = []
        self.diversity_counts = {}
        self.written = set()

    def __enter__(self):
        try:
            for folder in ("content", "style", "translation"):
                (self.staging / "translations" / folder).mkdir(parents=True)
        except OSError as error:
            raise UserError(f"cannot create {self.staging}: {error.strerror or error}") from None
        return self

    def __exit__(self, *exc):
        if self.staging.exists():
            shutil.rmtree(self.staging, ignore_errors=True)

    def _once(self, relative, image):
        if relative not in self.written:
            self._write(relative, image)
            self.written.add(relative)
        return relative

    def _write(self, relative, image):
        path = self.staging / relative
        try:
            _save(path, image)
        except OSError as error:
            raise UserError(f"cannot write {path}: {error.strerror or error}") from None

    def add_pairs(self, source, reference, contents, styles, translations):
        """One batch of pairs (A, B): their indices and uint8 (N, H, W, C) images."""
        for a, b, content, style, translation in zip(source, reference, contents, styles, translations):
            a, b = int(a), int(b)
            entry = {
                "content": a, "style": b,
                "content_label": int(self.labels[a]), "style_label": int(self.labels[b]),
                "content_file": self._once(f"translations/content/{a}.png", content),
                "style_file": self._once(f"translations/style/{b}.png", style),
                "translation_file": f"translations/translation/{a}-{b}.png",
            }
            self._write(entry["translation_file"], translation)
            self.pairs.append(entry)

    def add_diversity(self, source, references, contents, translations):
        """One batch of diversity inputs: their indices (N,), references (N, K), uint8 contents
        (N, H, W, C) and translations (N, K, H, W, C)."""
        for a, refs, content, outputs in zip(source, references, contents, translations):
            a, target = int(a), int(self.labels[refs[0]])
            direction = f"{int(self.labels[a])}-to-{target}"
            folder = f"diversity/translations/{direction}"
            if not (self.staging / folder).exists():
                (self.staging / folder / "content").mkdir(parents=True)
                (self.staging / folder / "translation").mkdir()
            first = self.diversity_counts.get((direction, a), 0)
            self.diversity_counts[(direction, a)] = first + len(refs)
            files = [f"{folder}/translation/{a}-{first + k}.png" for k in range(len(refs))]
            for file, output in zip(files, outputs):
                self._write(file, output)
            self.diversity.append({
                "content": a, "content_label": int(self.labels[a]), "label": target,
                "references": [int(r) for r in refs],
                "content_file": self._once(f"{folder}/content/{a}.png", content),
                "translation_files": files,
            })

    def commit(self, header):
        """Write the index (`header` first, then the pairs and diversity sets) and move the export
        into place; returns its path."""
        index = dict(header, pairs=self.pairs, diversity=self.diversity or None)
        try:
            (self.staging / INDEX).write_text(json.dumps(index, indent=1) + "\n")
            if self.directory.exists():
                self.directory.rmdir()
            os.replace(self.staging, self.directory)
        except OSError as error:
            raise UserError(f"cannot move the export into {self.directory}: {error.strerror or error}") from None
        return self.directory
