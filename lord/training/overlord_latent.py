"""Stage 1 of OverLORD (`train`, disentanglement): latent optimization of a StyleGAN2-style generator.

G(concat(uncorrelated code + noise, label code, correlated code)) reconstructs image i. The label code
is a free embedding shared by every image with the same value of the labeled attribute; the
uncorrelated code is a free embedding per image with Gaussian noise in training and a decay penalty
(the mean of its squares, before the noise), so anything the label explains is cheapest in the label
code. With a correlation, the correlated code is an encoder's output on a randomly cropped, flipped
and rotated copy of the (masked) image: it can carry what goes with the label but not the pose.
"""

import torch
from torch import nn

from lord.model import OverlordLatentModel, correlated_input, overlord_code, reference_code, translation_code
from lord.training.common import (autocast, channels_last_for, compile_wanted, compiled, generate_grid, grid_image,
                                  sample_set)
from lord.training.correlation import overlord_training_data, transformed_view
from lord.training.data import to_device_labels
from lord.training.distributed import data_parallel
from lord.training.embeddings import ImageCodes
from lord.training.loop import Stage
from lord.training.optim import adam, set_cosine_learning_rates
from lord.weights import reconstruction_loss


class LabelConditionedGenerator(nn.Module):
    """G(label code, correlated code of a view, uncorrelated code): the weights every process shares."""

    def __init__(self, model):
        super().__init__()
        self.generator = model.generator
        self.label_embedding = model.label_embedding
        self.correlated_encoder = model.correlated_encoder

    def forward(self, labels, uncorrelated_code, correlated_view):
        correlated_code = None if correlated_view is None else self.correlated_encoder(correlated_view)
        return self.generator(overlord_code(self.label_embedding(labels), correlated_code, uncorrelated_code))


class OverlordLatentStage(Stage):
    name = "latent"
    drop_last = False  # as published: an epoch's last, smaller batch is a step too

    def __init__(self, config, dataset, device, seed=0, distributed=None):
        stage = config["disentanglement"]
        runtime = config["runtime"]
        distributed = self.configure(stage, config, dataset, device, distributed)
        self.uncorrelated_std = float(config["uncorrelated_std"])
        self.weights = stage["loss_weights"]
        self.augmentation = config["correlation_augmentation"]

        self.loss_fn = reconstruction_loss(config["perceptual_loss"]).to(device)
        self.model = OverlordLatentModel(config)
        self.uncorrelated = ImageCodes(self.model.uncorrelated_embedding.weight, stage["embedding_update"],
                                       distributed, device)
        self.model.uncorrelated_embedding = None  # the codes live in self.uncorrelated, sharded
        self.model.to(device)
        if channels_last_for(config, device):
            self.model.to(memory_format=torch.channels_last)
            self.loss_fn.to(memory_format=torch.channels_last)
        wanted = compile_wanted(runtime, "overlord", self.name, device)
        full_batch = None if distributed.enabled else self.batch_size  # a process's share varies
        decoder = data_parallel(LabelConditionedGenerator(self.model), distributed, device)
        self.decoder = compiled(decoder, wanted, full_batch)
        self.loss_fn = compiled(self.loss_fn, wanted, full_batch)
        self.images, self.masks, self.labels, labels = overlord_training_data(config, dataset, distributed, device,
                                                                              with_masks=True)
        self.all_labels = to_device_labels(labels, device)

        rates = stage["learning_rate"]
        groups = [
            {"params": list(self.model.generator.parameters()), "name": "generator", "max_lr": rates["generator"]},
            {"params": [self.model.label_embedding.weight], "name": "latent", "max_lr": rates["latent"]},
        ]
        if self.model.correlated_encoder is not None:
            groups.append({"params": list(self.model.correlated_encoder.parameters()), "name": "encoder",
                           "max_lr": rates["encoder"]})
        for group in groups:
            group.update(lr=group["max_lr"], min_lr=rates["min"])
        self.optimizer = adam(groups, betas=tuple(stage["betas"]), device=device)
        self.rng = torch.Generator(device=device).manual_seed(seed)
        self.sample_indices, self.sample_images, self.sample_masks = sample_set(
            dataset, labels, runtime["n_samples"], seed, with_masks=self.masks is not None)

    def correlated_view(self, images, masks, batch=None):
        """What the correlated encoder sees, randomly transformed when training (`batch` given)."""
        if self.model.correlated_encoder is None:
            return None
        if batch is None:
            return correlated_input(images, masks)
        return transformed_view(images, masks, self.augmentation, self.rng, batch)

    def train_step(self, batch, step, total_steps):
        set_cosine_learning_rates(self.optimizer, step, total_steps)
        images = self.images.batch(batch.rows)
        masks = None if self.masks is None else self.masks.batch(batch.rows)
        uncorrelated_code = self.uncorrelated.lookup(batch.rows)
        noise = batch.randn(uncorrelated_code.shape[1:], self.rng, self.device) * self.uncorrelated_std
        with autocast(self.device, self.amp):
            view = self.correlated_view(images, masks, batch)
            generated = self.decoder(self.labels[batch.rows], uncorrelated_code + noise, view)
            reconstruction = batch.mean(self.loss_fn(generated, images).float())
        decay = batch.mean(uncorrelated_code.pow(2).mean(dim=1))
        loss = self.weights["reconstruction"] * reconstruction + self.weights["uncorrelated_decay"] * decay
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.uncorrelated.step(batch.rows, uncorrelated_code, self.optimizer.param_groups[1]["lr"])
        return {"loss": loss.detach(), "reconstruction": reconstruction.detach(), "uncorrelated_decay": decay.detach()}

    def state_dict(self):
        return {**super().state_dict(), "uncorrelated": self.uncorrelated.state_dict()}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.uncorrelated.load_state_dict(state["uncorrelated"])

    def final_state_dict(self):
        return {**super().final_state_dict(), "uncorrelated_embedding.weight": self.uncorrelated.full_table().cpu()}

    @torch.no_grad()
    def sample_grid(self):
        """Row r: label and correlated code of sample r; column c: uncorrelated code of sample c."""
        self.model.eval()
        indices = self.sample_indices.to(self.device)
        images = self.sample_images.to(self.device)
        masks = None if self.sample_masks is None else self.sample_masks.to(self.device)
        uncorrelated = self.uncorrelated.codes_of(indices)
        with autocast(self.device, self.amp):
            view = self.correlated_view(images, masks)
            correlated = None if view is None else self.model.correlated_encoder(view)
            rows = reference_code(self.model.label_embedding(self.all_labels[indices]), correlated)
            generated = generate_grid(lambda columns, rows: self.model.generator(translation_code(columns, rows)),
                                      uncorrelated, rows)
        self.model.train()
        return grid_image(self.sample_images, self.sample_images, generated)
