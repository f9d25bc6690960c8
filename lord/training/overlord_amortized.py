"""Stage 2 of OverLORD (`train-encoders`, amortization): encoders that infer the stage-1 codes.

A label encoder and an uncorrelated encoder regress the label and uncorrelated codes stage 1 learned
(MSE). The correlated encoder already is an encoder: it is carried over from stage 1, as is the
generator, both frozen here, so this stage's weights file is a complete model for inference.
"""

import torch

from lord.model import OverlordAmortizedModel, reference_code
from lord.training.amortized import mean_squared_error
from lord.training.common import autocast, compiled, generate_grid, grid_image, sample_set
from lord.training.correlation import overlord_training_data
from lord.training.distributed import data_parallel
from lord.training.loop import Stage
from lord.training.optim import adam, set_cosine_learning_rates


class Encoders(torch.nn.Module):
    """image -> (label code, uncorrelated code): the weights stage 2 trains."""

    def __init__(self, model):
        super().__init__()
        self.label_encoder = model.label_encoder
        self.uncorrelated_encoder = model.uncorrelated_encoder

    def forward(self, images):
        return self.label_encoder(images), self.uncorrelated_encoder(images)


def submodule_state(state, prefix):
    """The entries of a flat state_dict under `prefix.`, with the prefix removed."""
    return {key[len(prefix) + 1:]: value for key, value in state.items() if key.startswith(prefix + ".")}


class OverlordAmortizedStage(Stage):
    name = "amortized"

    def __init__(self, config, dataset, device, latent_state, seed=0, distributed=None):
        stage = config["amortization"]
        runtime = config["runtime"]
        distributed = self.configure(stage, config, dataset, device, distributed)
        self.weights = stage["loss_weights"]
        self.sample_seed = seed

        self.model = OverlordAmortizedModel(config)
        self.model.generator.load_state_dict(submodule_state(latent_state, "generator"))
        frozen = [self.model.generator]
        if self.model.correlated_encoder is not None:
            self.model.correlated_encoder.load_state_dict(submodule_state(latent_state, "correlated_encoder"))
            frozen.append(self.model.correlated_encoder)
        for module in frozen:
            module.requires_grad_(False)
        self.model.to(device)
        if device.type == "cuda" and runtime["channels_last"]:
            self.model.to(memory_format=torch.channels_last)
        self.encoders = compiled(data_parallel(Encoders(self.model), distributed, device), runtime)
        self.label_targets = latent_state["label_embedding.weight"].to(device)
        self.uncorrelated_targets = distributed.shard(latent_state["uncorrelated_embedding.weight"]).to(device)
        self.images, _, self.labels, labels = overlord_training_data(config, dataset, distributed, device,
                                                                     with_masks=False)
        trained = list(self.model.label_encoder.parameters()) + list(self.model.uncorrelated_encoder.parameters())
        rates = stage["learning_rate"]
        self.optimizer = adam(
            [{"params": trained, "name": "encoders", "lr": rates["max"], "max_lr": rates["max"],
              "min_lr": rates["min"]}],
            device=device,
        )
        self.sample_indices, self.sample_images, self.sample_masks = sample_set(
            dataset, labels, runtime["n_samples"], seed, with_masks=config["correlation"] == "localized")

    def train_step(self, batch, step, total_steps):
        set_cosine_learning_rates(self.optimizer, step, total_steps)
        images = self.images.batch(batch.rows)
        with autocast(self.device, self.amp):
            label_code, uncorrelated_code = self.encoders(images)
        label_loss = batch.mean(mean_squared_error(label_code, self.label_targets[self.labels[batch.rows]]))
        uncorrelated_loss = batch.mean(mean_squared_error(uncorrelated_code, self.uncorrelated_targets[batch.rows]))
        loss = self.weights["label"] * label_loss + self.weights["uncorrelated"] * uncorrelated_loss
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.detach(), "label_regression": label_loss.detach(),
                "uncorrelated_regression": uncorrelated_loss.detach()}

    @torch.no_grad()
    def sample_grid(self):
        """Row r: label and correlated code encoded from sample r; column c: uncorrelated code of sample c."""
        return encoded_translation_grid(self, self.model.generator)


def encoded_translation_grid(stage, generator):
    """A translation grid of a stage's sample images made entirely from encoded codes."""
    stage.model.eval()
    images = stage.sample_images.to(stage.device)
    masks = None if stage.sample_masks is None else stage.sample_masks.to(stage.device)
    noise = torch.Generator(device=stage.device).manual_seed(stage.sample_seed)
    with autocast(stage.device, stage.amp):
        label, correlated, uncorrelated = stage.model.encode(images, masks)
        rows = reference_code(label, correlated)
        generated = generate_grid(
            lambda columns, rows: generator(torch.cat([rows, columns], dim=1), noise_generator=noise),
            uncorrelated, rows,
        )
    stage.model.train()
    return grid_image(stage.sample_images, stage.sample_images, generated)
