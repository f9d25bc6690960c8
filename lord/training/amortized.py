"""Stage 2 of LORD (`train-encoders`): encoders that infer the stage-1 codes from an image.

The generator starts from stage 1's; the loss is the perceptual reconstruction from the encoded codes
plus the regression of both codes onto the codes stage 1 learned.

The toolkit's addition, `train_encoders.translated_fraction` (0 as published): that share of each
batch is replaced by translations drawn by stage 1's frozen generator, G(content_i, class_k) for a
random class k, with content_i and class_k as the regression targets, so the content encoder sees
each content under every class, also the pairings the training images lack, and is taught to ignore
the class. On the demo's set it gave a small gain (see the README's demo section).
"""

import copy

import torch

from lord.model import AmortizedModel
from lord.training.common import (autocast, channels_last_for, compile_wanted, compiled, float_images, generate_grid,
                                  grid_image, pick_samples)
from lord.training.data import DeviceImages, to_device_labels
from lord.training.distributed import data_parallel
from lord.training.loop import Stage
from lord.training.optim import adam, set_cosine_learning_rates
from lord.weights import reconstruction_loss


class EncodeAndGenerate(torch.nn.Module):
    """image -> (content code, class code, reconstruction): every weight stage 2 trains."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, images):
        content_code = self.model.content_encoder(images)
        class_code = self.model.class_encoder(images)
        return content_code, class_code, self.model.generator(content_code, class_code)


def mean_squared_error(prediction, target):
    """Per image: the mean squared difference over the code's dimensions."""
    return (prediction.float() - target).pow(2).mean(dim=1)


class AmortizedStage(Stage):
    name = "amortized"

    def __init__(self, config, dataset, device, latent_state, seed=0, distributed=None):
        stage = config["train_encoders"]
        runtime = config["runtime"]
        distributed = self.configure(stage, config, dataset, device, distributed)
        self.weights = stage["loss_weights"]

        self.loss_fn = reconstruction_loss(config["perceptual_loss"]).to(device)
        self.model = AmortizedModel(config)
        self.model.generator.load_state_dict(
            {key[len("generator."):]: value for key, value in latent_state.items() if key.startswith("generator.")}
        )
        self.model.to(device)
        if channels_last_for(config, device):
            self.model.to(memory_format=torch.channels_last)
            self.loss_fn.to(memory_format=torch.channels_last)
        wanted = compile_wanted(runtime, "lord", self.name, device)
        full_batch = None if distributed.enabled else self.batch_size  # a process's share varies
        self.network = compiled(data_parallel(EncodeAndGenerate(self.model), distributed, device), wanted, full_batch)
        self.loss_fn = compiled(self.loss_fn, wanted, full_batch)
        self.content_targets = distributed.shard(latent_state["content_embedding.weight"]).to(device)
        self.class_targets = latent_state["class_embedding.weight"].to(device)
        self.images = DeviceImages(distributed.shard(dataset.imgs), device, channels_last_for(config, device))
        self.classes = to_device_labels(distributed.shard(dataset.classes), device)
        rates = stage["learning_rate"]
        self.optimizer = adam(
            [{"params": list(self.model.parameters()), "name": "amortized",
              "lr": rates["max"], "max_lr": rates["max"], "min_lr": rates["min"]}],
            device=device,
        )
        self.translated_fraction = float(stage.get("translated_fraction", 0.0))
        self.n_classes = self.class_targets.shape[0]
        if self.translated_fraction > 0:
            self.teacher = copy.deepcopy(self.model.generator).requires_grad_(False).eval()
            self.rng = torch.Generator(device=device).manual_seed(seed)
        sample_indices = pick_samples(dataset.classes, runtime["n_samples"], seed)
        self.sample_images = float_images(dataset.imgs[sample_indices])

    @torch.no_grad()
    def translate(self, batch, images, class_ids):
        """The batch with its first `translated_fraction` images replaced by stage 1's translations
        G(content_i, class_k), k drawn at random; `class_ids` changed to k where replaced."""
        n_translated = round(self.translated_fraction * batch.size)
        drawn = batch.draw(torch.randint(self.n_classes, (batch.size,), generator=self.rng, device=self.device))
        replaced = batch.draw(torch.arange(batch.size, device=self.device) < n_translated)
        if not bool(replaced.any()):
            return images, class_ids
        with autocast(self.device, self.amp):
            translated = self.teacher(self.content_targets[batch.rows[replaced]], self.class_targets[drawn[replaced]])
        images = images.clone()
        images[replaced] = translated.to(images.dtype)
        return images, torch.where(replaced, drawn, class_ids)

    def train_step(self, batch, step, total_steps):
        set_cosine_learning_rates(self.optimizer, step, total_steps)
        images = self.images.batch(batch.rows)
        class_ids = self.classes[batch.rows]
        if self.translated_fraction > 0:
            images, class_ids = self.translate(batch, images, class_ids)
        with autocast(self.device, self.amp):
            content_code, class_code, generated = self.network(images)
            reconstruction = batch.mean(self.loss_fn(generated, images).float())
        content_loss = batch.mean(mean_squared_error(content_code, self.content_targets[batch.rows]))
        class_loss = batch.mean(mean_squared_error(class_code, self.class_targets[class_ids]))
        loss = (self.weights["reconstruction"] * reconstruction + self.weights["content"] * content_loss
                + self.weights["class"] * class_loss)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {
            "loss": loss.detach(), "reconstruction": reconstruction.detach(),
            "content_regression": content_loss.detach(), "class_regression": class_loss.detach(),
        }

    @torch.no_grad()
    def sample_grid(self):
        self.model.eval()
        images = self.sample_images.to(self.device)
        with autocast(self.device, self.amp):
            content = self.model.content_encoder(images)
            classes = self.model.class_encoder(images)
            generated = generate_grid(self.model.generator, content, classes)
        self.model.train()
        return grid_image(self.sample_images, self.sample_images, generated)
