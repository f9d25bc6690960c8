"""Stage 2 of OverLORD (`train-encoders`, amortization): encoders that infer the stage-1 codes.

A label encoder and an uncorrelated encoder regress the label and uncorrelated codes stage 1 learned;
with a correlation, a new correlated encoder learns, from the whole image, the code stage 1's
correlated encoder gives for a randomly transformed (and, localized, masked) view of it, so inference
needs neither transformation nor mask. Losses are the mean squared errors over the code dimensions.
The generator is stage 1's and is not trained here; the discriminator stage 3 starts from is created
here, as published.
"""

import torch

from lord.model import OverlordAmortizedModel, build_correlated_encoder, reference_code, translation_code
from lord.training.amortized import mean_squared_error
from lord.training.common import (autocast, channels_last_for, compile_wanted, compiled, generate_grid, grid_image,
                                  sample_set)
from lord.training.correlation import overlord_training_data, transformed_view
from lord.training.distributed import data_parallel
from lord.training.loop import Stage
from lord.training.optim import adam, set_cosine_learning_rates


class Encoders(torch.nn.Module):
    """image -> (label code, correlated code or None, uncorrelated code): the weights stage 2 trains."""

    def __init__(self, model):
        super().__init__()
        self.label_encoder = model.label_encoder
        self.uncorrelated_encoder = model.uncorrelated_encoder
        self.correlated_encoder = model.correlated_encoder

    def forward(self, images):
        correlated = None if self.correlated_encoder is None else self.correlated_encoder(images)
        return self.label_encoder(images), correlated, self.uncorrelated_encoder(images)


def submodule_state(state, prefix):
    """The entries of a flat state_dict under `prefix.`, with the prefix removed."""
    return {key[len(prefix) + 1:]: value for key, value in state.items() if key.startswith(prefix + ".")}


def correlated_target_encoder(config, latent_state, device):
    """Stage 1's correlated encoder, frozen: what later stages regress the correlated code onto (None
    without a correlation)."""
    encoder = build_correlated_encoder(config)
    if encoder is None:
        return None
    encoder.load_state_dict(submodule_state(latent_state, "correlated_encoder"))
    return encoder.requires_grad_(False).eval().to(device)


class OverlordAmortizedStage(Stage):
    name = "amortized"

    def __init__(self, config, dataset, device, latent_state, seed=0, distributed=None):
        stage = config["amortization"]
        runtime = config["runtime"]
        distributed = self.configure(stage, config, dataset, device, distributed)
        self.weights = stage["loss_weights"]
        self.augmentation = config["correlation_augmentation"]

        self.model = OverlordAmortizedModel(config)
        self.model.generator.load_state_dict(submodule_state(latent_state, "generator"))
        self.model.generator.requires_grad_(False)
        self.model.discriminator.requires_grad_(False)
        self.model.to(device)
        self.correlated_target = correlated_target_encoder(config, latent_state, device)
        if channels_last_for(config, device):
            for module in (self.model, self.correlated_target):
                if module is not None:
                    module.to(memory_format=torch.channels_last)
        wanted = compile_wanted(runtime, "overlord", self.name, device)
        full_batch = None if distributed.enabled else self.batch_size  # a process's share varies
        self.encoders = compiled(data_parallel(Encoders(self.model), distributed, device), wanted, full_batch)
        self.label_targets = latent_state["label_embedding.weight"].to(device)
        self.uncorrelated_targets = distributed.shard(latent_state["uncorrelated_embedding.weight"]).to(device)
        self.images, self.masks, self.labels, labels = overlord_training_data(config, dataset, distributed, device,
                                                                              with_masks=True)
        trained = [p for module in (self.model.label_encoder, self.model.uncorrelated_encoder,
                                    self.model.correlated_encoder) if module is not None for p in module.parameters()]
        rates = stage["learning_rate"]
        self.optimizer = adam(
            [{"params": trained, "name": "encoders", "lr": rates["max"], "max_lr": rates["max"],
              "min_lr": rates["min"]}],
            betas=tuple(stage["betas"]), device=device,
        )
        self.rng = torch.Generator(device=device).manual_seed(seed)
        self.sample_indices, self.sample_images, _ = sample_set(dataset, labels, runtime["n_samples"], seed)

    def train_step(self, batch, step, total_steps):
        set_cosine_learning_rates(self.optimizer, step, total_steps)
        images = self.images.batch(batch.rows)
        with autocast(self.device, self.amp):
            label_code, correlated_code, uncorrelated_code = self.encoders(images)
        label_loss = batch.mean(mean_squared_error(label_code, self.label_targets[self.labels[batch.rows]]))
        uncorrelated_loss = batch.mean(mean_squared_error(uncorrelated_code, self.uncorrelated_targets[batch.rows]))
        loss = self.weights["label"] * label_loss + self.weights["uncorrelated"] * uncorrelated_loss
        losses = {"label_regression": label_loss, "uncorrelated_regression": uncorrelated_loss}
        if correlated_code is not None:
            masks = None if self.masks is None else self.masks.batch(batch.rows)
            with torch.no_grad(), autocast(self.device, self.amp):
                target = self.correlated_target(transformed_view(images, masks, self.augmentation, self.rng, batch))
            correlated_loss = batch.mean(mean_squared_error(correlated_code, target.float()))
            loss = loss + self.weights["correlated"] * correlated_loss
            losses["correlated_regression"] = correlated_loss
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.detach(), **{key: value.detach() for key, value in losses.items()}}

    @torch.no_grad()
    def sample_grid(self):
        """Row r: label and correlated code encoded from sample r; column c: uncorrelated code of sample c."""
        return encoded_translation_grid(self, self.model.generator)


def encoded_translation_grid(stage, generator):
    """A translation grid of a stage's sample images made entirely from encoded codes."""
    stage.model.eval()
    images = stage.sample_images.to(stage.device)
    with autocast(stage.device, stage.amp):
        label, correlated, uncorrelated = stage.model.encode(images)
        generated = generate_grid(lambda columns, rows: generator(translation_code(columns, rows)),
                                  uncorrelated, reference_code(label, correlated))
    stage.model.train()
    return grid_image(stage.sample_images, stage.sample_images, generated)
