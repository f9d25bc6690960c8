"""Stage 1 of OverLORD (`train`, disentanglement): latent optimization of a StyleGAN2-style generator.

G(concat(label code, correlated code, uncorrelated code + noise)) reconstructs image i. The label code
is a free embedding shared by every image with the same value of the labeled attribute; the
uncorrelated code is a free embedding per image with Gaussian noise in training and a decay penalty,
so anything the label explains is cheapest in the label code. With a correlation, the correlated code
is an encoder's output on a randomly cropped, flipped and rotated copy of the (masked) image: it can
carry what goes with the label but not the pose.
"""

import torch

from lord.model import OverlordLatentModel, correlated_input, overlord_code, reference_code
from lord.weights import reconstruction_loss
from lord.training.common import autocast, generate_grid, grid_image, pick_samples
from lord.training.correlation import device_masks, random_pose
from lord.training.data import DeviceImages, to_device_labels
from lord.training.loop import Stage
from lord.training.optim import RowAdam, adam, set_cosine_learning_rates


class OverlordLatentStage(Stage):
    name = "latent"

    def __init__(self, config, dataset, device, seed=0):
        stage = config["disentanglement"]
        runtime = config["runtime"]
        self.device = device
        self.batch_size = stage["batch_size"]
        self.n_epochs = stage["n_epochs"]
        self.n_images = len(dataset)
        self.uncorrelated_std = float(config["uncorrelated_std"])
        self.weights = stage["loss_weights"]
        self.augmentation = config["correlation_augmentation"]
        self.amp = runtime["mixed_precision"]
        self.rows_update = stage["embedding_update"] == "rows"
        self.sample_seed = seed

        self.loss_fn = reconstruction_loss(config["perceptual_loss"]).to(device)
        self.model = OverlordLatentModel(config).to(device)
        if device.type == "cuda" and runtime["channels_last"]:
            self.model.to(memory_format=torch.channels_last)
            self.loss_fn.to(memory_format=torch.channels_last)
        self.images = DeviceImages(dataset.imgs, device, runtime["channels_last"])
        self.masks = None
        if config["correlation"] == "localized":
            self.masks = device_masks(dataset.extras["masks"], device, runtime["channels_last"])
        labels, _ = dataset.label(config["labeled_attribute"])
        self.labels = to_device_labels(labels, device)

        rates = stage["learning_rate"]
        latent_params = [self.model.label_embedding.weight]
        uncorrelated = self.model.uncorrelated_embedding.weight
        if self.rows_update:
            uncorrelated.requires_grad_(False)
            self.uncorrelated_adam = RowAdam(uncorrelated.data)
        else:
            latent_params.append(uncorrelated)
            self.uncorrelated_adam = None
        groups = [
            {"params": list(self.model.generator.parameters()), "name": "generator", "max_lr": rates["generator"]},
            {"params": latent_params, "name": "latent", "max_lr": rates["latent"]},
        ]
        if self.model.correlated_encoder is not None:
            groups.append({"params": list(self.model.correlated_encoder.parameters()), "name": "encoder",
                           "max_lr": rates["encoder"]})
        for group in groups:
            group.update(lr=group["max_lr"], min_lr=rates["min"])
        self.optimizer = adam(groups, device=device)
        self.rng = torch.Generator(device=device).manual_seed(seed)
        self.sample_indices = torch.as_tensor(pick_samples(labels, runtime["n_samples"], seed), device=device)

    def correlated_code(self, indices, images, transform):
        """The correlated encoder on the (masked) images, randomly transformed in training; None without one."""
        if self.model.correlated_encoder is None:
            return None
        view = correlated_input(images, None if self.masks is None else self.masks.batch(indices))
        if transform:
            augmentation = self.augmentation
            view = random_pose(view, self.rng, augmentation["scale"], augmentation["flip"], augmentation["rotation"])
        return self.model.correlated_encoder(view)

    def train_step(self, indices, step, total_steps):
        set_cosine_learning_rates(self.optimizer, step, total_steps)
        images = self.images.batch(indices)
        label_code = self.model.label_embedding(self.labels[indices])
        if self.rows_update:
            uncorrelated_code = self.model.uncorrelated_embedding.weight[indices].detach().requires_grad_()
        else:
            uncorrelated_code = self.model.uncorrelated_embedding(indices)
        noise = torch.randn(uncorrelated_code.shape, generator=self.rng, device=self.device) * self.uncorrelated_std
        with autocast(self.device, self.amp):
            correlated_code = self.correlated_code(indices, images, transform=True)
            code = overlord_code(label_code, correlated_code, uncorrelated_code + noise)
            generated = self.model.generator(code, noise_generator=self.rng)
            reconstruction = self.loss_fn(generated, images).float().mean()
        decay = uncorrelated_code.pow(2).sum(dim=1).mean()
        loss = self.weights["reconstruction"] * reconstruction + self.weights["uncorrelated_decay"] * decay
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.uncorrelated_adam is not None:
            latent_lr = self.optimizer.param_groups[1]["lr"]
            self.uncorrelated_adam.step(indices, uncorrelated_code.grad, latent_lr)
        return {"loss": loss.detach(), "reconstruction": reconstruction.detach(), "uncorrelated_decay": decay.detach()}

    def learning_rates(self):
        return {group["name"]: group["lr"] for group in self.optimizer.param_groups}

    def state_dict(self):
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}
        if self.uncorrelated_adam is not None:
            state["uncorrelated_adam"] = self.uncorrelated_adam.state_dict()
        return state

    def load_state_dict(self, state):
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.uncorrelated_adam is not None:
            self.uncorrelated_adam.load_state_dict(state["uncorrelated_adam"])

    def final_state_dict(self):
        return {key: value.detach().cpu() for key, value in self.model.state_dict().items()}

    def rng_state(self):
        return {"noise": self.rng.get_state()}

    def set_rng_state(self, state):
        self.rng.set_state(state["noise"])

    @torch.no_grad()
    def sample_grid(self):
        """Row r: label and correlated code of sample r; column c: uncorrelated code of sample c."""
        self.model.eval()
        indices = self.sample_indices
        images = self.images.batch(indices)
        noise = torch.Generator(device=self.device).manual_seed(self.sample_seed)
        with autocast(self.device, self.amp):
            correlated = self.correlated_code(indices, images, transform=False)
            rows = reference_code(self.model.label_embedding(self.labels[indices]), correlated)
            generated = generate_grid(
                lambda columns, rows: self.model.generator(torch.cat([rows, columns], dim=1), noise_generator=noise),
                self.model.uncorrelated_embedding(indices), rows,
            )
        self.model.train()
        return grid_image(images, images, generated)
