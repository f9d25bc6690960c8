"""Encoding and translating images with a trained model."""

import numpy as np
import torch

from lord.assets import BaseDir
from lord.data.images import center_crop, resize, to_channels
from lord.errors import UserError
from lord.model import completed_stages, load_stage, read_config
from lord.training.common import generate_grid
from lord.training.data import resolve_device
from lord.visualize import to_uint8


class LoadedModel:
    """A trained LORD model ready for inference: encoders, generator and the learned class codes."""

    def __init__(self, config, stage, device):
        self.config = config
        self.stage = stage
        self.device = device
        self.img_shape = tuple(config["data"]["img_shape"])

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

    def prepare(self, images):
        """uint8 images of any size and channel count -> float (N, C, H, W) on the device."""
        height, width, channels = self.img_shape
        prepared = []
        for image in images:
            image = to_channels(np.asarray(image), channels)
            if image.shape[:2] != (height, width):
                image = resize(center_crop(image), height, width)
            prepared.append(image)
        batch = torch.from_numpy(np.stack(prepared)).to(self.device)
        return batch.permute(0, 3, 1, 2).float().div(255.0).contiguous()

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
        generated = generate_grid(self.generator, content, classes)
        rows, columns = generated.shape[:2]
        cells = to_uint8(generated.reshape(rows * columns, *generated.shape[2:]))
        return cells.reshape(rows, columns, *cells.shape[1:])

    @torch.no_grad()
    def translate_to_labels(self, images, labels):
        """uint8 (len(labels), n, H, W, C): each image's content with each label's learned class code."""
        content, _ = self.encode(images)
        labels = torch.as_tensor(labels, dtype=torch.long, device=self.device)
        if labels.min() < 0 or labels.max() >= len(self.class_embedding):
            raise UserError(f"labels must lie in [0, {len(self.class_embedding)})")
        generated = generate_grid(self.generator, content, self.class_embedding[labels])
        rows, columns = generated.shape[:2]
        cells = to_uint8(generated.reshape(rows * columns, *generated.shape[2:]))
        return cells.reshape(rows, columns, *cells.shape[1:])


def load_model(base_dir, model_name, stage=None, device="auto"):
    """The trained model `model_name` of a base directory, in eval mode on `device`."""
    model_dir = BaseDir(base_dir).existing_model_dir(model_name)
    return LoadedModel.from_dir(model_dir, stage=stage, device=resolve_device(device))
