"""Stage 3 of OverLORD (`train-synthesis`): adversarial tuning of the encoders and the generator.

Each step, as published: first the discriminator (logistic loss on real images and on the current
encoders' reconstructions, plus the R1 penalty on real images), then the encoders and the generator
(reconstruction + latent regression + the non-saturating adversarial loss). The latent regression keeps
the encoded codes close to what stage 1 learned, so the disentanglement survives: the label and
uncorrelated codes regress onto the stage-1 embeddings, the correlated code onto stage 1's correlated
encoder applied to a freshly transformed (masked) view. With `synthesis.ema.enabled` (the toolkit's
addition) a moving average of the generator makes the samples and is used for inference.
"""

import torch

from lord.model import OverlordSynthesisModel, inference_generator, overlord_code, uses_ema
from lord.networks.gan_losses import discriminator_adversarial_loss, generator_adversarial_loss, r1_penalty
from lord.weights import reconstruction_loss
from lord.training.amortized import mean_squared_error
from lord.training.common import autocast, channels_last_for, compile_wanted, compiled, sample_set
from lord.training.correlation import overlord_training_data, transformed_view
from lord.training.loop import Stage
from lord.training.optim import adam
from lord.training.overlord_amortized import correlated_target_encoder, encoded_translation_grid, submodule_state


def ema_beta(batch_size, half_life_images):
    """The per-step decay that halves an old weight's share every `half_life_images` images."""
    return 0.5 ** (batch_size / half_life_images)


class SynthesisStage(Stage):
    name = "synthesis"

    def __init__(self, config, dataset, device, latent_state, amortized_state, seed=0, distributed=None):
        stage = config["synthesis"]
        runtime = config["runtime"]
        distributed = self.configure(stage, config, dataset, device, distributed)
        self.weights = stage["loss_weights"]
        self.augmentation = config["correlation_augmentation"]

        self.loss_fn = reconstruction_loss(config["perceptual_loss"]).to(device)
        self.model = OverlordSynthesisModel(config)
        for name in ("label_encoder", "uncorrelated_encoder", "correlated_encoder", "generator", "discriminator"):
            if getattr(self.model, name) is not None:
                getattr(self.model, name).load_state_dict(submodule_state(amortized_state, name))
        self.ema_beta = None
        if uses_ema(config):
            self.ema_beta = ema_beta(self.batch_size, stage["ema"]["half_life_images"])
            self.model.generator_ema.load_state_dict(self.model.generator.state_dict())
            self.model.generator_ema.requires_grad_(False)
        self.model.to(device)
        self.correlated_target = correlated_target_encoder(config, latent_state, device)
        if channels_last_for(config, device):
            for module in (self.model, self.loss_fn, self.correlated_target):
                if module is not None:
                    module.to(memory_format=torch.channels_last)
        self.label_targets = latent_state["label_embedding.weight"].to(device)
        self.uncorrelated_targets = distributed.shard(latent_state["uncorrelated_embedding.weight"]).to(device)
        self.images, self.masks, self.labels, labels = overlord_training_data(config, dataset, distributed, device,
                                                                              with_masks=True)

        rates = stage["learning_rate"]
        betas = tuple(stage["betas"])
        generator_side = [
            module for module in (self.model.label_encoder, self.model.uncorrelated_encoder,
                                  self.model.correlated_encoder, self.model.generator) if module is not None
        ]
        self.generator_side_params = [p for module in generator_side for p in module.parameters()]
        self.generator_optimizer = adam(
            [{"params": self.generator_side_params, "name": "generator", "lr": rates["generator"]}],
            betas=betas, device=device,
        )
        self.discriminator_optimizer = adam(
            [{"params": list(self.model.discriminator.parameters()), "name": "discriminator",
              "lr": rates["discriminator"]}],
            betas=betas, device=device,
        )
        wanted = compile_wanted(runtime, "overlord", self.name, device)
        full_batch = None if distributed.enabled else self.batch_size  # a process's share varies
        # The discriminator is not compiled: its R1 penalty takes a double backward.
        self.generate = compiled(self.model.generator, wanted, full_batch)
        self.loss_fn = compiled(self.loss_fn, wanted, full_batch)
        self.rng = torch.Generator(device=device).manual_seed(seed)
        self.sample_indices, self.sample_images, _ = sample_set(dataset, labels, runtime["n_samples"], seed)

    def latent_regression(self, batch, images, masks, label_code, correlated_code, uncorrelated_code):
        """Per image: the encoded codes' squared distance to their stage-1 targets."""
        loss = mean_squared_error(label_code, self.label_targets[self.labels[batch.rows]])
        loss = loss + mean_squared_error(uncorrelated_code, self.uncorrelated_targets[batch.rows])
        if correlated_code is not None:
            with torch.no_grad(), autocast(self.device, self.amp):
                target = self.correlated_target(transformed_view(images, masks, self.augmentation, self.rng, batch))
            loss = loss + mean_squared_error(correlated_code, target.float())
        return loss

    def train_step(self, batch, step, total_steps):
        """A discriminator step, then a step of the encoders and the generator. Gradients are summed
        across processes by hand: the R1 penalty's double backward does not go through DDP's hooks."""
        images = self.images.batch(batch.rows)
        masks = None if self.masks is None else self.masks.batch(batch.rows)
        discriminator = self.model.discriminator

        with torch.no_grad(), autocast(self.device, self.amp):
            reconstructed = self.generate(overlord_code(*self.model.encode(images)))
        real = images.detach().requires_grad_(True)
        with autocast(self.device, self.amp):
            fake_logits = discriminator(reconstructed)
            real_logits = discriminator(real)
        discriminator_adversarial = batch.mean(discriminator_adversarial_loss(real_logits, fake_logits))
        r1 = batch.mean(r1_penalty(real, real_logits))
        discriminator_loss = discriminator_adversarial + self.weights["r1"] * r1
        self.discriminator_optimizer.zero_grad(set_to_none=True)
        discriminator_loss.backward()
        self.distributed.sum_gradients(discriminator.parameters())
        self.discriminator_optimizer.step()

        discriminator.requires_grad_(False)
        with autocast(self.device, self.amp):
            codes = self.model.encode(images)
            generated = self.generate(overlord_code(*codes))
            reconstruction = batch.mean(self.loss_fn(generated, images).float())
            adversarial = batch.mean(generator_adversarial_loss(discriminator(generated)))
        latent = batch.mean(self.latent_regression(batch, images, masks, *codes))
        generator_loss = (self.weights["reconstruction"] * reconstruction + self.weights["latent"] * latent
                          + self.weights["adversarial"] * adversarial)
        self.generator_optimizer.zero_grad(set_to_none=True)
        generator_loss.backward()
        self.distributed.sum_gradients(self.generator_side_params)
        self.generator_optimizer.step()
        discriminator.requires_grad_(True)
        if self.ema_beta is not None:
            self.update_ema()
        return {
            # The sum is one number whose finiteness the loop checks for both players.
            "loss": (generator_loss + discriminator_loss).detach(),
            "generator_loss": generator_loss.detach(), "reconstruction": reconstruction.detach(),
            "latent_regression": latent.detach(), "adversarial": adversarial.detach(),
            "discriminator_loss": discriminator_loss.detach(),
            "discriminator_adversarial": discriminator_adversarial.detach(), "r1": r1.detach(),
        }

    @torch.no_grad()
    def update_ema(self):
        torch._foreach_lerp_(list(self.model.generator_ema.parameters()), list(self.model.generator.parameters()),
                             1.0 - self.ema_beta)

    def learning_rates(self):
        return {group["name"]: group["lr"]
                for optimizer in (self.generator_optimizer, self.discriminator_optimizer)
                for group in optimizer.param_groups}

    def state_dict(self):
        return {
            "model": self.model.state_dict(),
            "generator_optimizer": self.generator_optimizer.state_dict(),
            "discriminator_optimizer": self.discriminator_optimizer.state_dict(),
        }

    def load_state_dict(self, state):
        self.model.load_state_dict(state["model"])
        self.generator_optimizer.load_state_dict(state["generator_optimizer"])
        self.discriminator_optimizer.load_state_dict(state["discriminator_optimizer"])

    @torch.no_grad()
    def sample_grid(self):
        """Translations of the sample images by the tuned encoders and the inference generator."""
        return encoded_translation_grid(self, inference_generator(self.model))
