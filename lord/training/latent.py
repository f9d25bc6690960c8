"""Stage 1 of LORD (`train`): latent optimization of the generator, class and content embeddings.

G(content_i + noise, class_{y_i}) reconstructs image i under the perceptual loss; the content codes get
Gaussian noise in training and an L2 penalty, so class information is cheapest in the class codes.
"""

import torch

from lord.model import LatentModel
from lord.weights import reconstruction_loss
from lord.training.common import autocast, generate_grid, grid_image, pick_samples
from lord.training.data import DeviceImages, to_device_labels
from lord.training.loop import Stage
from lord.training.optim import RowAdam, adam, set_cosine_learning_rates


class LatentStage(Stage):
    name = "latent"

    def __init__(self, config, dataset, device, seed=0):
        train = config["train"]
        runtime = config["runtime"]
        self.config = config
        self.device = device
        self.batch_size = train["batch_size"]
        self.n_epochs = train["n_epochs"]
        self.n_images = len(dataset)
        self.content_std = float(config["content_std"])
        self.content_decay = float(config["content_decay"])
        self.amp = runtime["mixed_precision"]
        self.rows_update = train["embedding_update"] == "rows"

        self.loss_fn = reconstruction_loss(config["perceptual_loss"]).to(device)
        self.model = LatentModel(config).to(device)
        if device.type == "cuda" and runtime["channels_last"]:
            self.model.to(memory_format=torch.channels_last)
            self.loss_fn.to(memory_format=torch.channels_last)
        self.images = DeviceImages(dataset.imgs, device, runtime["channels_last"])
        self.classes = to_device_labels(dataset.classes, device)

        rates = train["learning_rate"]
        latent_params = [self.model.class_embedding.weight]
        content = self.model.content_embedding.weight
        if self.rows_update:
            content.requires_grad_(False)
            self.content_adam = RowAdam(content.data)
        else:
            latent_params.append(content)
            self.content_adam = None
        self.optimizer = adam(
            [
                {"params": list(self.model.generator.parameters()), "name": "generator",
                 "lr": rates["generator"], "max_lr": rates["generator"], "min_lr": rates["min"]},
                {"params": latent_params, "name": "latent",
                 "lr": rates["latent"], "max_lr": rates["latent"], "min_lr": rates["min"]},
            ],
            device=device,
        )
        self.rng = torch.Generator(device=device).manual_seed(seed)
        self.sample_indices = torch.as_tensor(
            pick_samples(dataset.classes, runtime["n_samples"], seed), device=device
        )

    def train_step(self, indices, step, total_steps):
        set_cosine_learning_rates(self.optimizer, step, total_steps)
        images = self.images.batch(indices)
        class_code = self.model.class_embedding(self.classes[indices])
        if self.rows_update:
            content_code = self.model.content_embedding.weight[indices].detach().requires_grad_()
        else:
            content_code = self.model.content_embedding(indices)
        noise = torch.randn(content_code.shape, generator=self.rng, device=self.device) * self.content_std
        with autocast(self.device, self.amp):
            generated = self.model.generator(content_code + noise, class_code)
            reconstruction = self.loss_fn(generated, images).float().mean()
        decay = content_code.pow(2).sum(dim=1).mean()
        loss = reconstruction + self.content_decay * decay
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.content_adam is not None:
            latent_lr = self.optimizer.param_groups[1]["lr"]
            self.content_adam.step(indices, content_code.grad, latent_lr)
        return {"loss": loss.detach(), "reconstruction": reconstruction.detach(), "content_decay": decay.detach()}

    def learning_rates(self):
        return {group["name"]: group["lr"] for group in self.optimizer.param_groups}

    def state_dict(self):
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}
        if self.content_adam is not None:
            state["content_adam"] = self.content_adam.state_dict()
        return state

    def load_state_dict(self, state):
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.content_adam is not None:
            self.content_adam.load_state_dict(state["content_adam"])

    def final_state_dict(self):
        return {key: value.detach().cpu() for key, value in self.model.state_dict().items()}

    def rng_state(self):
        return {"noise": self.rng.get_state()}

    def set_rng_state(self, state):
        self.rng.set_state(state["noise"])

    @torch.no_grad()
    def sample_grid(self):
        self.model.eval()
        indices = self.sample_indices
        content = self.model.content_embedding(indices)
        classes = self.model.class_embedding(self.classes[indices])
        with autocast(self.device, self.amp):
            generated = generate_grid(self.model.generator, content, classes)
        self.model.train()
        images = self.images.batch(indices)
        return grid_image(images, images, generated)

