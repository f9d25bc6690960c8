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

DIR is checked before the evaluation starts: it must not exist or be an empty directory (not a link),
in a writable directory. Everything is written into a fresh hidden sibling directory (created with a
unique name, never one that was there before) that is renamed to DIR once the evaluation is complete,
so DIR never holds half an export; an existing non-empty DIR is refused, never replaced. SIGINT and
SIGTERM remove the staging directory; one that a killed run left behind is removed by the next export
to the same DIR. The evaluation's JSON result does not depend on the export: it is written whenever
the metrics are complete, even when the export then fails (the error says so).
"""

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from lord.assets import pid_alive, sigterm_as_interrupt, umask
from lord.errors import UserError

INDEX = "index.json"


def staging_prefix(directory):
    return f".{directory.name}.export-"


def check_export_dir(directory, n_labels):
    """The export directory as a Path, after the checks a user's mistake could fail (before any work)."""
    directory = Path(directory)
    if directory.is_symlink():
        raise UserError(f"--export {directory}: it is a symbolic link; give a new directory (or the link's target)")
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise UserError(f"--export {directory}: it exists and is not an empty directory; give a new directory")
    parent = directory.absolute().parent
    if not parent.is_dir():
        raise UserError(f"--export {directory}: its parent directory {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"--export {directory}: its parent directory {parent} is not writable")
    if directory.name in ("", ".", ".."):
        raise UserError(f"--export {directory}: give the path of a new directory")
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
        self.directory = Path(directory).absolute()
        self.labels = np.asarray(labels)
        self.staging = None
        self.pairs = []
        self.diversity = []
        self.diversity_counts = {}
        self.written = set()
        self.signals = None
        self.failure = None

    def __enter__(self):
        remove_leftovers(self.directory)
        try:
            self.staging = Path(tempfile.mkdtemp(prefix=f"{staging_prefix(self.directory)}{os.getpid()}-",
                                                 dir=self.directory.parent))
            for folder in ("content", "style", "translation"):
                (self.staging / "translations" / folder).mkdir(parents=True)
        except OSError as error:
            self._remove_staging()
            raise UserError(f"cannot create a directory beside {self.directory}: {error.strerror or error}") from None
        self.signals = sigterm_as_interrupt("SIGTERM received: the export was not written")
        self.signals.__enter__()
        return self

    def __exit__(self, *exc):
        self.signals.__exit__(None, None, None)
        self._remove_staging()

    def _remove_staging(self):
        if self.staging is not None and self.staging.exists():
            shutil.rmtree(self.staging, ignore_errors=True)

    def _once(self, relative, image):
        if relative not in self.written:
            self._write(relative, image)
            self.written.add(relative)
        return relative

    def _write(self, relative, image):
        """A failed write (a full disk) ends the export, not the evaluation: `commit` reports it."""
        if self.failure is not None:
            return
        path = self.staging / relative
        try:
            _save(path, image)
        except OSError as error:
            self.failure = f"cannot write {path}: {error.strerror or error}"
            self._remove_staging()

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
            if self.failure is None and not (self.staging / folder).exists():
                try:
                    (self.staging / folder / "content").mkdir(parents=True)
                    (self.staging / folder / "translation").mkdir()
                except OSError as error:
                    self.failure = f"cannot create {self.staging / folder}: {error.strerror or error}"
                    self._remove_staging()
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
        if self.failure is not None:
            raise UserError(f"the export was not written: {self.failure}")
        index = dict(header, pairs=self.pairs, diversity=self.diversity or None)
        try:
            (self.staging / INDEX).write_text(json.dumps(index, indent=1) + "\n")
            os.chmod(self.staging, 0o777 & ~umask())
            if self.directory.is_symlink() or (self.directory.exists() and any(self.directory.iterdir())):
                raise UserError(f"--export {self.directory}: something was put there during the evaluation; the "
                                "export was not written")
            os.rename(self.staging, self.directory)
        except OSError as error:
            raise UserError(f"cannot move the export into {self.directory}: {error.strerror or error}") from None
        self.staging = None
        return self.directory


def remove_leftovers(directory):
    """Staging directories of this export that a killed run left (their process is gone)."""
    with contextlib.suppress(OSError):
        for entry in directory.parent.iterdir():
            if not entry.name.startswith(staging_prefix(directory)) or entry.is_symlink() or not entry.is_dir():
                continue
            pid = entry.name[len(staging_prefix(directory)):].split("-", 1)[0]
            if pid.isdigit() and not pid_alive(int(pid)):
                shutil.rmtree(entry, ignore_errors=True)
