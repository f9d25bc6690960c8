"""Encoding and translating images with a trained LORD or OverLORD model, and `manipulate` on files.

Translation keeps the content of one image (LORD's content code, OverLORD's uncorrelated code) and
takes the class from another image or a label value (LORD's class code; OverLORD's label code, plus
the correlated code of the reference image when the model has one). Inputs of any size or mode are
centre-cropped, resized to the model's resolution and given its channel count.
"""

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from lord.assets import BaseDir
from lord.data.images import BadImage, center_crop, directory_images, read_image, resize, to_channels
from lord.errors import UserError
from lord.model import (
    arch_of, completed_stages, inference_generator, load_stage, overlord_code, read_config, reference_code,
    translation_code,
)
from lord.training.common import generate_grid
from lord.training.data import resolve_device
from lord.visualize import image_strip, save_png, to_uint8

MAX_STRIP_LABELS = 64
BATCH_SIZE = 32


def fit_image(image, img_shape):
    """A uint8 image of any size and channel count as the model's (H, W, C): centre crop, resize, channels."""
    height, width, channels = img_shape
    image = to_channels(np.asarray(image), channels)
    if image.shape[:2] != (height, width):
        image = resize(center_crop(image), height, width)
    return image


class InferenceModel:
    """What LORD and OverLORD inference share: input preparation and the label codes' range."""

    def __init__(self, config, stage, device):
        self.config = config
        self.stage = stage
        self.device = device
        self.img_shape = tuple(config["data"]["img_shape"])

    def prepare(self, images):
        """uint8 images of any size and channel count -> float (N, C, H, W) on the device."""
        batch = torch.from_numpy(np.stack([fit_image(image, self.img_shape) for image in images])).to(self.device)
        return batch.permute(0, 3, 1, 2).float().div(255.0).contiguous()

    @property
    def label_codes(self):
        raise NotImplementedError

    @property
    def n_labels(self):
        return len(self.label_codes)

    def label_rows(self, labels):
        labels = torch.as_tensor(labels, dtype=torch.long, device=self.device)
        if labels.min() < 0 or labels.max() >= self.n_labels:
            raise UserError(f"labels must lie in [0, {self.n_labels})")
        return self.label_codes[labels]

    @staticmethod
    def cells(generated):
        rows, columns = generated.shape[:2]
        cells = to_uint8(generated.reshape(rows * columns, *generated.shape[2:]))
        return cells.reshape(rows, columns, *cells.shape[1:])


class LoadedModel(InferenceModel):
    """A trained LORD model ready for inference: encoders, generator and the learned class codes."""

    @classmethod
    def from_dir(cls, model_dir, stage=None, device="cpu"):
        config = read_config(model_dir)
        done = completed_stages(model_dir)
        if stage is None:
            stage = "amortized" if "amortized" in done else "latent"
        model = cls(config, stage, device)
        latent = load_stage(model_dir, "latent", config).to(device)
        model.class_embedding = latent.class_embedding.weight.detach()
        model.content_embedding = latent.content_embedding.weight.detach()
        if stage == "latent":
            model.generator = latent.generator
            model.content_encoder = model.class_encoder = None
        else:
            amortized = load_stage(model_dir, stage, config).to(device)
            model.generator = amortized.generator
            model.content_encoder = amortized.content_encoder
            model.class_encoder = amortized.class_encoder
        return model

    @property
    def label_codes(self):
        return self.class_embedding

    def require_encoders(self):
        if self.content_encoder is None:
            raise UserError("this model has no trained encoders: run train-encoders before encoding new images")

    @torch.no_grad()
    def encode(self, images):
        """Content and class codes of uint8 images."""
        self.require_encoders()
        batch = self.prepare(images)
        return self.content_encoder(batch), self.class_encoder(batch)

    @torch.no_grad()
    def generate(self, content_codes, class_codes):
        return self.generator(content_codes, class_codes)

    @torch.no_grad()
    def translate_images(self, content_images, class_images):
        """uint8 (m, n, H, W, C): row r has the class of class_images[r], column c the content of content_images[c]."""
        content, _ = self.encode(content_images)
        _, classes = self.encode(class_images)
        return self.cells(generate_grid(self.generator, content, classes))

    @torch.no_grad()
    def translate_to_labels(self, images, labels):
        """uint8 (len(labels), n, H, W, C): each image's content with each label's learned class code."""
        content, _ = self.encode(images)
        return self.cells(generate_grid(self.generator, content, self.label_rows(labels)))


class OverlordModel(InferenceModel):
    """A trained OverLORD model: its encoders, the learned label codes and the generator of its latest
    stage (the moving average of stage 3 where synthesis kept one)."""

    @classmethod
    def from_dir(cls, model_dir, stage=None, device="cpu"):
        config = read_config(model_dir)
        done = completed_stages(model_dir)
        if stage is None:
            stage = next((name for name in ("synthesis", "amortized") if name in done), "latent")
        model = cls(config, stage, device)
        latent = load_stage(model_dir, "latent", config).to(device)
        model.label_embedding = latent.label_embedding.weight.detach()
        if stage == "latent":
            model.encoders, model.generator = None, latent.generator
        else:
            model.encoders = load_stage(model_dir, stage, config).to(device)
            model.generator = inference_generator(model.encoders)
        return model

    @property
    def label_codes(self):
        return self.label_embedding

    def require_encoders(self):
        if self.encoders is None:
            raise UserError("this model has no trained encoders: run train-encoders before encoding new images")

    @torch.no_grad()
    def encode(self, images):
        """(label, correlated or None, uncorrelated) codes of uint8 images."""
        self.require_encoders()
        return self.encoders.encode(self.prepare(images))

    @torch.no_grad()
    def generate(self, codes):
        """Images from full codes, in batches."""
        return torch.cat([self.generator(chunk) for chunk in codes.split(BATCH_SIZE)])

    @torch.no_grad()
    def translate_images(self, content_images, class_images):
        """uint8 (m, n, H, W, C): row r has the label and correlated code of class_images[r], column c the
        uncorrelated code of content_images[c]."""
        _, _, uncorrelated = self.encode(content_images)
        label, correlated, _ = self.encode(class_images)
        generated = generate_grid(lambda columns, rows: self.generate(translation_code(columns, rows)),
                                  uncorrelated, reference_code(label, correlated))
        return self.cells(generated)

    @torch.no_grad()
    def translate_to_labels(self, images, labels):
        """uint8 (len(labels), n, H, W, C): each image with each label's learned code; its own
        correlated (and uncorrelated) code is kept."""
        label_codes = self.label_rows(labels)
        _, correlated, uncorrelated = self.encode(images)
        rows, columns = len(label_codes), len(images)
        codes = overlord_code(
            label_codes.repeat_interleave(columns, dim=0),
            None if correlated is None else correlated.repeat(rows, 1),
            uncorrelated.repeat(rows, 1),
        )
        generated = self.generate(codes)
        return self.cells(generated.reshape(rows, columns, *generated.shape[1:]))


def load_model(base_dir, model_name, stage=None, device="auto"):
    """The trained model `model_name` of a base directory, in eval mode on `device`."""
    model_dir = BaseDir(base_dir).existing_model_dir(model_name)
    config = read_config(model_dir)
    model_class = OverlordModel if arch_of(config) == "overlord" else LoadedModel
    return model_class.from_dir(model_dir, stage=stage, device=resolve_device(device))


def label_strips(model, images, labels):
    """Per image, `manipulate`'s output without a reference: the image as the model sees it, then its
    translations to `labels`, side by side (as the published manipulate_by_labels)."""
    grid = model.translate_to_labels(images, labels)
    return [image_strip(np.concatenate([fit_image(image, model.img_shape)[None], grid[:, column]]), pad=0)
            for column, image in enumerate(images)]


# -- manipulate: image files in, PNG files out -------------------------------------------------------


def read_input(path, channels):
    try:
        return read_image(path, channels)
    except BadImage as error:
        raise UserError(str(error)) from None
    except FileNotFoundError:
        raise UserError(f"no image file {path}") from None


def aligned_reader(model, align):
    """How `manipulate` reads a photo: as it is, or (`align`) its largest face aligned as FFHQ was, at
    the model's size; a photo without a face stops the run with its name."""
    height, _, channels = model.img_shape
    if not align:
        return lambda path: read_input(path, channels)
    from lord.faces import FaceAligner

    aligner = FaceAligner()
    return lambda path: to_channels(aligner.align(read_input(path, 3), height, name=str(path)), channels)


def manipulate(base_dir, model_name, img_path, output_path, reference_path=None, label=None, device="auto",
               quiet=False, align=False):
    """Translate an image file (or every image in a directory) and write PNGs.

    Without a reference: a strip of the input followed by its translations to every label value, or
    to `label` only. With a reference: the translated image alone, content from the input, label
    (and correlated code) from the reference. `align`: every photo (the reference too) is first
    aligned as the FFHQ faces were (lord.faces).
    """
    img_path, output_path = Path(img_path), Path(output_path)
    if reference_path is not None and label is not None:
        raise UserError("give either --reference or --label, not both")
    if not img_path.exists():
        raise UserError(f"no image file or directory {img_path}")
    if img_path.is_dir() and output_path.exists() and not output_path.is_dir():
        raise UserError(f"--input is a directory, so --output must be one too; {output_path} is a file")
    if img_path.is_file() and output_path.is_dir():
        output_path = output_path / f"{img_path.stem}.png"
    if img_path.is_file() and output_path.suffix.lower() != ".png":
        raise UserError(f"the output is written as PNG: give a .png path, got {output_path}")
    if reference_path is not None and not Path(reference_path).is_file():
        raise UserError(f"no reference image file {reference_path}")
    model = load_model(base_dir, model_name, device=device)
    model.require_encoders()
    if label is not None and not 0 <= label < model.n_labels:
        raise UserError(f"--label {label} is out of range: this model's labels are 0..{model.n_labels - 1} "
                        f"(lord.py info -mn {model_name} lists them)")
    if reference_path is None and label is None and model.n_labels > MAX_STRIP_LABELS:
        raise UserError(f"this model has {model.n_labels} label values, too many for one strip: pick one with --label")
    read = aligned_reader(model, align)
    reference = None if reference_path is None else read(reference_path)
    labels = [label] if label is not None else list(range(model.n_labels))

    def translate(images):
        """One output image per input image."""
        if reference is not None:
            return list(model.translate_images(images, [reference])[0])
        return label_strips(model, images, labels)

    if img_path.is_dir():
        per_batch = BATCH_SIZE if reference is not None else max(1, BATCH_SIZE // len(labels))
        return manipulate_directory(img_path, output_path, translate, per_batch, read, quiet)
    (result,) = translate([read(img_path)])
    save_png(output_path, result)
    if not quiet:
        print(f"wrote {output_path}")
    return [output_path]


def manipulate_directory(input_dir, output_dir, translate, per_batch, read, quiet):
    """Every image file directly in `input_dir` -> `output_dir/<name>.png`, in batches, with a progress bar."""
    files = directory_images(input_dir)
    written = []
    with tqdm(total=len(files), desc="manipulate", unit="img", disable=quiet, dynamic_ncols=True) as bar:
        for start in range(0, len(files), per_batch):
            batch = files[start : start + per_batch]
            for path, result in zip(batch, translate([read(path) for path in batch])):
                target = output_dir / f"{path.stem}.png"
                save_png(target, result)
                written.append(target)
            bar.update(len(batch))
    if not quiet:
        print(f"wrote {len(written)} images to {output_dir}")
    return written
