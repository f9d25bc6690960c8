"""Stage 3 of OverLORD (`train-synthesis`): adversarial tuning of the encoders and the generator.

Encoders and generator minimise reconstruction + latent regression (the encoded codes stay close to
the codes stage 1 learned, so the disentanglement survives) + the non-saturating adversarial loss;
the discriminator minimises the logistic loss plus the R1 penalty on real images. Separate Adam
optimizers with StyleGAN2's betas (0, 0.99). An exponential moving average of the generator,
started from stage 2's generator, makes the samples and is the generator used for inference.
"""

import copy

import torch

from lord.model import OverlordSynthesisModel, correlated_input, overlord_code
from lord.networks.gan_losses import discriminator_adversarial_loss, generator_adversarial_loss, r1_penalty
from lord.weights import reconstruction_loss
from lord.training.amortized import mean_squared_error
from lord.training.common import autocast, compiled, sample_set
from lord.training.correlation import overlord_training_data
from lord.training.loop import Stage
from lord.training.optim import adam
from lord.training.overlord_amortized import encoded_translation_grid, submodule_state

GAN_BETAS = (0.0, 0.99)


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
        self.ema_beta = ema_beta(self.batch_size, stage["ema"]["half_life_images"])
        self.sample_seed = seed

        self.loss_fn = reconstruction_loss(config["perceptual_loss"]).to(device)
        self.model = OverlordSynthesisModel(config)
        for name in ("label_encoder", "uncorrelated_encoder", "correlated_encoder", "generator"):
            if getattr(self.model, name) is not None:
                getattr(self.model, name).load_state_dict(submodule_state(amortized_state, name))
        self.model.generator_ema.load_state_dict(self.model.generator.state_dict())
        self.model.generator_ema.requires_grad_(False)
        # The correlated code has no stage-1 embedding to regress onto: its target is stage 2's
        # correlated encoder on the untransformed image.
        self.correlated_target_encoder = None
        if self.model.correlated_encoder is not None:
            self.correlated_target_encoder = copy.deepcopy(self.model.correlated_encoder).requires_grad_(False).eval()
        self.model.to(device)
        if self.correlated_target_encoder is not None:
            self.correlated_target_encoder.to(device)
        if device.type == "cuda" and runtime["channels_last"]:
            for module in (self.model, self.loss_fn, self.correlated_target_encoder):
                if module is not None:
                    module.to(memory_format=torch.channels_last)
        self.label_targets = latent_state["label_embedding.weight"].to(device)
        self.uncorrelated_targets = distributed.shard(latent_state["uncorrelated_embedding.weight"]).to(device)
        self.images, self.masks, self.labels, labels = overlord_training_data(config, dataset, distributed, device,
                                                                              with_masks=True)

        rates = stage["learning_rate"]
        generator_side = [
            module for module in (self.model.label_encoder, self.model.uncorrelated_encoder,
                                  self.model.correlated_encoder, self.model.generator) if module is not None
        ]
        self.generator_side_params = [p for module in generator_side for p in module.parameters()]
        self.generator_optimizer = adam(
            [{"params": self.generator_side_params, "name": "generator",
              "lr": rates["generator"]}],
            betas=GAN_BETAS, device=device,
        )
        self.discriminator_optimizer = adam(
            [{"params": list(self.model.discriminator.parameters()), "name": "discriminator",
              "lr": rates["discriminator"]}],
            betas=GAN_BETAS, device=device,
        )
        self.ema_params = list(self.model.generator_ema.parameters())
        self.generator_params = list(self.model.generator.parameters())
        # The discriminator is not compiled: its R1 penalty takes a double backward.
        self.generate = compiled(self.model.generator, runtime)
        self.loss_fn = compiled(self.loss_fn, runtime)
        self.rng = torch.Generator(device=device).manual_seed(seed)
        self.sample_indices, self.sample_images, self.sample_masks = sample_set(
            dataset, labels, runtime["n_samples"], seed, with_masks=self.masks is not None)

    def latent_regression(self, rows, images, masks, label_code, correlated_code, uncorrelated_code):
        """Per image: the encoded codes' squared distance to their stage-1 targets."""
        loss = mean_squared_error(label_code, self.label_targets[self.labels[rows]])
        loss = loss + mean_squared_error(uncorrelated_code, self.uncorrelated_targets[rows])
        if correlated_code is not None:
            with torch.no_grad(), autocast(self.device, self.amp):
                target = self.correlated_target_encoder(correlated_input(images, masks))
            loss = loss + mean_squared_error(correlated_code, target.float())
        return loss

    def train_step(self, batch, step, total_steps):
        """A generator-side step, then a discriminator step. Gradients are summed across processes
        by hand: the R1 penalty's double backward does not go through DDP's hooks."""
        images = self.images.batch(batch.rows)
        masks = None if self.masks is None else self.masks.batch(batch.rows)
        discriminator = self.model.discriminator

        discriminator.requires_grad_(False)
        with autocast(self.device, self.amp):
            codes = self.model.encode(images, masks)
            generated = self.generate(overlord_code(*codes), noise_generator=self.rng)
            reconstruction = batch.mean(self.loss_fn(generated, images).float())
            adversarial = batch.mean(generator_adversarial_loss(discriminator(generated)))
        latent = batch.mean(self.latent_regression(batch.rows, images, masks, *codes))
        generator_loss = (self.weights["reconstruction"] * reconstruction + self.weights["latent"] * latent
                          + self.weights["adversarial"] * adversarial)
        self.generator_optimizer.zero_grad(set_to_none=True)
        generator_loss.backward()
        self.distributed.sum_gradients(self.generator_side_params)
        self.generator_optimizer.step()
        discriminator.requires_grad_(True)

        real = images.detach().requires_grad_(True)
        with autocast(self.device, self.amp):
            real_logits = discriminator(real)
            fake_logits = discriminator(generated.detach())
        discriminator_adversarial = batch.mean(discriminator_adversarial_loss(real_logits, fake_logits))
        r1 = batch.mean(r1_penalty(real, real_logits))
        discriminator_loss = discriminator_adversarial + self.weights["r1"] * r1
        self.discriminator_optimizer.zero_grad(set_to_none=True)
        discriminator_loss.backward()
        self.distributed.sum_gradients(self.model.discriminator.parameters())
        self.discriminator_optimizer.step()
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
        torch._foreach_lerp_(self.ema_params, self.generator_params, 1.0 - self.ema_beta)

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
        """Translations of the sample images by the tuned encoders and the moving-average generator."""
        return encoded_translation_grid(self, self.model.generator_ema)
