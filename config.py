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
    "mixed_precision": True,  # bf16 autocast on CUDA; the CPU path is always float32
    "channels_last": True,  # on CUDA
    "compile": False,  # torch.compile the training step
    "n_samples": 8,  # rows and columns of the translation grids
}

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
    "encoder": {"channels": [64, 128, 256, 256, 256], "fc_dim": 256},
    "perceptual_loss": {"type": "vgg", "layers": VGG_LAYERS, "weights": None},
    "train": {
        "batch_size": 128,
        "n_epochs": 200,
        "learning_rate": {"generator": 3e-4, "latent": 3e-3, "min": 1e-5},
        # "dense": Adam over the whole embedding tables, as published; "rows": lazy Adam on the
        # rows a batch touches only (step cost independent of the number of images).
        "embedding_update": "dense",
    },
    "train_encoders": {
        "batch_size": 64,
        "n_epochs": 200,
        "learning_rate": {"max": 1e-4, "min": 1e-5},
        "loss_weights": {"reconstruction": 1.0, "content": 10.0, "class": 10.0},
    },
    "runtime": RUNTIME,
}

# A small CPU preset: 32x32 synthetic data in minutes, pixel loss so no weights are needed.
LORD_TINY = copy.deepcopy(LORD)
LORD_TINY.update(
    {
        "content_dim": 32,
        "class_dim": 64,
        "n_adain_layers": 3,
        "adain_dim": 64,
        "final_conv_dim": 32,
        "encoder": {"channels": [32, 64, 64, 64, 64], "fc_dim": 128},
        "perceptual_loss": {"type": "l1", "layers": VGG_LAYERS, "weights": None},
    }
)
LORD_TINY["train"].update({"batch_size": 64, "n_epochs": 12, "learning_rate": {"generator": 1e-3, "latent": 1e-2, "min": 1e-5}})
LORD_TINY["train_encoders"].update({"batch_size": 64, "n_epochs": 6, "learning_rate": {"max": 1e-3, "min": 1e-5}})
LORD_TINY["runtime"] = dict(RUNTIME, log_every=10)

CONFIGS = {
    "lord": LORD,
    "lord-tiny": LORD_TINY,
}


def names():
    return sorted(CONFIGS)


def get_config(name):
    """A deep copy of the named configuration."""
    if name not in CONFIGS:
        raise KeyError(name)
    return copy.deepcopy(CONFIGS[name])
