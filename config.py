"""Named configurations: the papers' settings and small CPU presets.

Plain dicts under the original implementation's key names. `python lord.py train --config NAME`
picks one; `--set key.sub=value` overrides any key. The library never imports this file: the CLI
passes the chosen dict in.
"""

import copy

VGG_LAYERS = [2, 7, 12, 21, 30]

# Runtime switches shared by every preset; they change speed, never the method.
RUNTIME = {
    "log_every": 50,  # steps between host synchronisations (progress bar, non-finite check)
    # auto: bf16 autocast on CUDA and on CPUs with native bf16 (AVX512-BF16, AMX), float32 elsewhere;
    # true / false force it on / off. The CPU presets use auto; the paper presets false (PAPER_RUNTIME).
    "mixed_precision": "auto",
    "channels_last": True,  # on CUDA
    "compile": False,  # torch.compile the training step
    "n_samples": 8,  # rows and columns of the translation grids
}

# The paper presets train in float32, as the published code did (TF32 where PyTorch allows it by default),
# until long runs show that bf16 autocast changes nothing: `--set runtime.mixed_precision=true` asks for it.
PAPER_RUNTIME = dict(RUNTIME, mixed_precision="false")

# LORD (ICLR 2020) at 64x64, as published.
LORD = {
    "arch": "lord",
    "content_dim": 128,
    "class_dim": 256,
    "content_std": 1.0,
    "content_decay": 1e-4,
    "n_adain_layers": 4,
    "adain_dim": 256,
    "final_conv_dim": 64,
    "leaky_relu_slope": 0.01,  # PyTorch's default, which the published networks use
    # center_input: the toolkit's addition, encoders fed 2x - 1 instead of the [0, 1] image; off as published.
    "encoder": {"channels": [64, 128, 256, 256, 256], "fc_dim": 256, "center_input": False},
    # normalize: ImageNet mean/std before VGG; the published LORD feeds VGG raw [0, 1] images.
    "perceptual_loss": {"type": "vgg", "layers": VGG_LAYERS, "normalize": False, "weights": None},
    "train": {
        "batch_size": 128,
        "n_epochs": 200,
        "learning_rate": {"generator": 3e-4, "latent": 3e-3, "min": 1e-5},
        # "dense": Adam over the whole embedding tables, as published; "rows": lazy Adam on the
        # rows a batch touches only (step cost independent of the number of images).
        "embedding_update": "dense",
    },
    "train_encoders": {
        "batch_size": 128,
        "n_epochs": 200,
        "learning_rate": {"max": 1e-4, "min": 1e-5},
        "loss_weights": {"reconstruction": 1.0, "content": 10.0, "class": 10.0},
        # The toolkit's addition: the share of each batch replaced by stage 1's translations
        # G(content_i, class_k), k random, regressed onto (content_i, class_k). 0 as published.
        "translated_fraction": 0.0,
    },
    "runtime": PAPER_RUNTIME,
}

# A small CPU preset: the demo's 32x32 synthetic set in minutes on two cores, with a plain pixel loss
# so no weights are needed. Measured on the demo's set (see the README's demo section):
# - each per-image content code is updated once per epoch, and with few epochs codes under noise of
#   std 1 stay below the noise, so the generator reads little from them; with std 0.3 (and the
#   latent rate 3e-2) they carry the pose within the first epochs;
# - batch 16: on a CPU an image costs the same in a batch of 16 as in one of 64, and four times the
#   steps train the generator, the class codes and the encoders faster;
# - encoders fed 2x - 1 (encoder.center_input): on images that are mostly a light background the
#   class encoder otherwise missed its codes by 40% of their variance after stage 2, and translations
#   made with its codes took the class source's class in only 0.36 to 0.43 of held-out pairs;
# - stage 2 partly on stage 1's translations (translated_fraction): the content encoder sees every
#   content under every class;
# - 8-d content codes: room for the demo's content (size, position, lighting).
LORD_TINY = copy.deepcopy(LORD)
LORD_TINY.update(
    {
        "content_dim": 8,
        "class_dim": 32,
        "content_std": 0.3,
        "n_adain_layers": 3,
        "adain_dim": 32,
        "final_conv_dim": 16,
        "encoder": {"channels": [16, 32, 32, 32, 32], "fc_dim": 64, "center_input": True},
        "leaky_relu_slope": 0.2,
        "perceptual_loss": {"type": "l1", "layers": VGG_LAYERS, "normalize": False, "weights": None},
    }
)
LORD_TINY["train"].update(
    {"batch_size": 16, "n_epochs": 100, "learning_rate": {"generator": 2e-3, "latent": 3e-2, "min": 1e-5}}
)
LORD_TINY["train_encoders"].update({"batch_size": 16, "n_epochs": 20, "learning_rate": {"max": 1e-3, "min": 1e-5},
                                    "translated_fraction": 0.5})
LORD_TINY["runtime"] = dict(RUNTIME, log_every=10)

# OverLORD (ICCV 2021), as its published configs and code set it. The generator's code is
# concat(uncorrelated, label, correlated); image size comes from the data (a power of two from 32 to
# 512). Generator and discriminator widths are StyleGAN2's (channels at resolution r: min(channel_base
# // r, channel_max)); the encoders are StarGAN v2's (widths doubling from dim_in up to max_conv_dim).
STYLEGAN_WIDTHS = {"channel_base": 32768, "channel_max": 512}
OVERLORD = {
    "arch": "overlord",
    "labeled_attribute": "classes",  # classes | age | identity | domain | gender
    "correlation": None,  # None | "pose-invariant" | "localized" (needs `masks` in the data)
    "label_dim": 256,
    "correlated_dim": None,  # set when `correlation` is
    "uncorrelated_dim": 256,
    "uncorrelated_std": 0.1,
    # Stage 1's correlated encoder sees a randomly transformed copy of the (masked) image.
    "correlation_augmentation": {"scale": [0.6, 1.0], "flip": True, "rotation": 0.0},  # rotation: max degrees
    "generator": dict(STYLEGAN_WIDTHS),
    "encoder": {"dim_in": 64, "max_conv_dim": 256},
    "discriminator": dict(STYLEGAN_WIDTHS, mbstd_group_size=4),
    "perceptual_loss": {"type": "vgg", "layers": VGG_LAYERS, "normalize": True, "weights": None},
    "disentanglement": {
        "batch_size": 32,
        "n_epochs": 100,
        # latent: label and uncorrelated embeddings; encoder: the correlated encoder; all cosine to min.
        "learning_rate": {"latent": 1e-2, "generator": 1e-3, "encoder": 1e-4, "min": 1e-5},
        "betas": [0.5, 0.999],
        # uncorrelated_decay multiplies the mean over the code's dimensions of its square.
        "loss_weights": {"reconstruction": 1.0, "uncorrelated_decay": 1e-4},
        "embedding_update": "dense",  # as LORD's train.embedding_update
    },
    "amortization": {
        "batch_size": 64,
        "n_epochs": 50,
        "learning_rate": {"max": 1e-4, "min": 1e-5},
        "betas": [0.9, 0.999],  # Adam's defaults, which the published stage 2 uses
        "loss_weights": {"label": 1.0, "uncorrelated": 1.0, "correlated": 1.0},
    },
    "synthesis": {
        "batch_size": 16,
        "n_epochs": 100,
        "learning_rate": {"generator": 1e-4, "discriminator": 1e-4},  # constant; encoders use the generator's
        "betas": [0.5, 0.999],
        # r1 multiplies 0.5 * |grad D(real)|^2, the published penalty's exact form.
        "loss_weights": {"reconstruction": 1.0, "latent": 10.0, "adversarial": 1.0, "r1": 1.0},
        # The toolkit's addition: a moving average of the generator for samples and inference; its
        # weight halves every half_life_images images. Off as published.
        "ema": {"enabled": False, "half_life_images": 10000},
    },
    "runtime": PAPER_RUNTIME,
}


def overlord_preset(attribute, label_dim, uncorrelated_dim, std, decay, epochs, disentanglement_batch=32,
                    correlation=None, correlated_dim=None, scale=(0.6, 1.0), normalize=True):
    """An OverLORD paper preset; `epochs` are (disentanglement, amortization, synthesis)."""
    preset = copy.deepcopy(OVERLORD)
    preset.update({
        "labeled_attribute": attribute, "correlation": correlation, "label_dim": label_dim,
        "correlated_dim": correlated_dim, "uncorrelated_dim": uncorrelated_dim, "uncorrelated_std": std,
    })
    preset["correlation_augmentation"]["scale"] = list(scale)
    preset["perceptual_loss"]["normalize"] = normalize
    preset["disentanglement"]["batch_size"] = disentanglement_batch
    preset["disentanglement"]["loss_weights"]["uncorrelated_decay"] = decay
    for stage, n_epochs in zip(("disentanglement", "amortization", "synthesis"), epochs):
        preset[stage]["n_epochs"] = n_epochs
    return preset


OVERLORD_FFHQ = overlord_preset("age", 256, 256, 0.01, 1e-4, (100, 50, 100))
OVERLORD_CELEBA = overlord_preset("identity", 512, 64, 0.1, 1e-4, (50, 50, 50))
OVERLORD_AFHQ = overlord_preset("domain", 512, 64, 0.1, 0.1, (200, 100, 100), disentanglement_batch=8,
                                correlation="pose-invariant", correlated_dim=64, scale=(0.6, 1.0), normalize=False)
OVERLORD_CELEBAHQ = overlord_preset("gender", 256, 256, 0.1, 1e-5, (100, 100, 100))
OVERLORD_CELEBAHQ_HAIR = overlord_preset("gender", 256, 256, 0.1, 0.1, (100, 100, 100), disentanglement_batch=16,
                                         correlation="localized", correlated_dim=64, scale=(0.8, 1.0))

# Small CPU presets, one per correlation mode: the 32x32 synthetic set (labeled by `classes`, with
# `masks` for the localized mode), pixel loss so no weights are needed, each stage a few minutes.
TINY_WIDTHS = {"channel_base": 512, "channel_max": 32}
OVERLORD_TINY = copy.deepcopy(OVERLORD)
OVERLORD_TINY.update({
    "label_dim": 32,
    "uncorrelated_dim": 32,
    "uncorrelated_std": 0.1,
    "generator": dict(TINY_WIDTHS),
    "encoder": {"dim_in": 16, "max_conv_dim": 32},
    "discriminator": dict(TINY_WIDTHS, mbstd_group_size=4),
    "perceptual_loss": {"type": "l1", "layers": VGG_LAYERS, "normalize": True, "weights": None},
    "runtime": dict(RUNTIME, log_every=10),
})
OVERLORD_TINY["disentanglement"].update({
    "batch_size": 16,
    "n_epochs": 40,
    "learning_rate": {"latent": 1e-2, "generator": 5e-3, "encoder": 1e-3, "min": 1e-5},
})
# Stage 2 at 2e-3: at 1e-2 the label regression of a float32 run blew up in its second epoch (870, from 1.0).
OVERLORD_TINY["amortization"].update({"batch_size": 32, "n_epochs": 10, "learning_rate": {"max": 2e-3, "min": 1e-5}})
OVERLORD_TINY["synthesis"].update({
    "batch_size": 16, "n_epochs": 3, "learning_rate": {"generator": 5e-4, "discriminator": 5e-4},
    "ema": {"enabled": True, "half_life_images": 500},
})
# The pixel loss is an order of magnitude smaller than the perceptual one: a lighter adversarial term.
OVERLORD_TINY["synthesis"]["loss_weights"].update({"adversarial": 0.1})

OVERLORD_TINY_POSE = copy.deepcopy(OVERLORD_TINY)
OVERLORD_TINY_POSE.update({
    "correlation": "pose-invariant", "correlated_dim": 16,
    "correlation_augmentation": {"scale": [0.6, 1.0], "flip": True, "rotation": 15.0},
})
OVERLORD_TINY_LOCALIZED = copy.deepcopy(OVERLORD_TINY)
OVERLORD_TINY_LOCALIZED.update({
    "correlation": "localized", "correlated_dim": 16,
    "correlation_augmentation": {"scale": [0.8, 1.0], "flip": True, "rotation": 0.0},
})

CONFIGS = {
    "lord": LORD,
    "lord-tiny": LORD_TINY,
    "overlord-ffhq": OVERLORD_FFHQ,
    "overlord-celeba": OVERLORD_CELEBA,
    "overlord-afhq": OVERLORD_AFHQ,
    "overlord-celebahq": OVERLORD_CELEBAHQ,
    "overlord-celebahq-hair": OVERLORD_CELEBAHQ_HAIR,
    "overlord-tiny": OVERLORD_TINY,
    "overlord-tiny-pose": OVERLORD_TINY_POSE,
    "overlord-tiny-localized": OVERLORD_TINY_LOCALIZED,
}


# The published OverLORD's config names (its config/<name>.yaml): `train --config NAME` with one of
# them trains all three stages in a row, as the original's `train` does.
OVERLORD_NAMES = {
    "ffhq": "overlord-ffhq",
    "celeba": "overlord-celeba",
    "afhq": "overlord-afhq",
    "celebahq": "overlord-celebahq",
    "celebahq_hair": "overlord-celebahq-hair",
}


def names():
    return sorted(CONFIGS)


def resolve(name):
    """The preset a name stands for (the published OverLORD names stand for their overlord-* presets)."""
    return OVERLORD_NAMES.get(name, name)


def get_config(name):
    """A deep copy of the named configuration."""
    if resolve(name) not in CONFIGS:
        raise KeyError(name)
    return copy.deepcopy(CONFIGS[resolve(name)])


def import_presets():
    """What `import-model` fills in beyond an original config.pkl (the published networks' fixed
    widths and the settings their code hard-codes), per format."""
    return {"lord-pytorch": get_config("lord"), "overlord": copy.deepcopy(OVERLORD)}
