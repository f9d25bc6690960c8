"""Stage 1 of LORD (`train`): latent optimization of the generator, class and content embeddings.

G(content_i + noise, class_{y_i}) reconstructs image i under the perceptual loss; the content codes get
Gaussian noise in training and an L2 penalty on the noisy code, so class information is cheapest in
the class codes.
"""

import torch
from torch import nn

from lord.model import LatentModel
from lord.training.common import (autocast, channels_last_for, compile_wanted, compiled, float_images, generate_grid,
                                  grid_image, pick_samples)
from lord.training.data import DeviceImages, to_device_labels
from lord.training.distributed import data_parallel
from lord.training.embeddings import ImageCodes
from lord.training.loop import Stage
from lord.training.optim import adam, set_cosine_learning_rates
from lord.weights import reconstruction_loss


class ClassConditionedGenerator(nn.Module):
    """G(content, class id): the generator with the class embedding, the weights every process shares."""

    def __init__(self, generator, class_embedding):
        super().__init__()
        self.generator = generator
        self.class_embedding = class_embedding

    def forward(self, content_code, class_ids):
        return self.generator(content_code, self.class_embedding(class_ids))


class LatentStage(Stage):
    name = "latent"

    def __init__(self, config, dataset, device, seed=0, distributed=None):
        train = config["train"]
        runtime = config["runtime"]
        distributed = self.configure(train, config, dataset, device, distributed)
        self.content_std = float(config["content_std"])
        self.content_decay = float(config["content_decay"])

        self.loss_fn = reconstruction_loss(config["perceptual_loss"]).to(device)
        self.model = LatentModel(config)
        self.content = ImageCodes(self.model.content_embedding.weight, train["embedding_update"], distributed, device)
        self.model.content_embedding = None  # the codes live in self.content, sharded
        self.model.to(device)
        if channels_last_for(config, device):
            self.model.to(memory_format=torch.channels_last)
            self.loss_fn.to(memory_format=torch.channels_last)
        decoder = ClassConditionedGenerator(self.model.generator, self.model.class_embedding)
        wanted = compile_wanted(runtime, "lord", self.name, device)
        full_batch = None if distributed.enabled else self.batch_size  # a process's share varies
        self.decoder = compiled(data_parallel(decoder, distributed, device), wanted, full_batch)
        self.loss_fn = compiled(self.loss_fn, wanted, full_batch)
        self.images = DeviceImages(distributed.shard(dataset.imgs), device, channels_last_for(config, device))
        self.classes = to_device_labels(distributed.shard(dataset.classes), device)
        self.all_classes = to_device_labels(dataset.classes, device)

        rates = train["learning_rate"]
        self.optimizer = adam(
            [
                {"params": list(self.model.generator.parameters()), "name": "generator",
                 "lr": rates["generator"], "max_lr": rates["generator"], "min_lr": rates["min"]},
                {"params": [self.model.class_embedding.weight], "name": "latent",
                 "lr": rates["latent"], "max_lr": rates["latent"], "min_lr": rates["min"]},
            ],
            device=device,
        )
        self.rng = torch.Generator(device=device).manual_seed(seed)
        self.sample_indices = torch.as_tensor(pick_samples(dataset.classes, runtime["n_samples"], seed))
        self.sample_images = float_images(dataset.imgs[self.sample_indices.numpy()])

    def train_step(self, batch, step, total_steps):
        set_cosine_learning_rates(self.optimizer, step, total_steps)
        images = self.images.batch(batch.rows)
        content_code = self.content.lookup(batch.rows)
        noisy_code = content_code + batch.randn(content_code.shape[1:], self.rng, self.device) * self.content_std
        with autocast(self.device, self.amp):
            generated = self.decoder(noisy_code, self.classes[batch.rows])
            reconstruction = batch.mean(self.loss_fn(generated, images).float())
        # As published, the decay penalises the code the generator saw, noise included: the noise in
        # its gradient keeps Adam's steps on the content codes small.
        decay = batch.mean(noisy_code.pow(2).sum(dim=1))
        loss = reconstruction + self.content_decay * decay
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.content.step(batch.rows, content_code, self.optimizer.param_groups[1]["lr"])
        return {"loss": loss.detach(), "reconstruction": reconstruction.detach(), "content_decay": decay.detach()}

    def state_dict(self):
        return {**super().state_dict(), "content": self.content.state_dict()}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.content.load_state_dict(state["content"])

    def final_state_dict(self):
        return {**super().final_state_dict(), "content_embedding.weight": self.content.full_table().cpu()}

    @torch.no_grad()
    def sample_grid(self):
        self.model.eval()
        indices = self.sample_indices.to(self.device)
        content = self.content.codes_of(indices)
        classes = self.model.class_embedding(self.all_classes[indices])
        with autocast(self.device, self.amp):
            generated = generate_grid(self.model.generator, content, classes)
        self.model.train()
        return grid_image(self.sample_images, self.sample_images, generated)
