"""Model directories in the published code's format, built from a seed for the import tests.

The layouts below are the published modules' state dicts written out by hand (key names, shapes,
DataParallel's `module.` segments, StyleGAN2's stored blur filters), so a test that imports them
checks the toolkit's reading against an independent description, not against itself. Values are
drawn from a seeded generator, key by key in sorted order, at scales that keep every layer's output
in a useful range; `tests/data/original/` holds what the published code computed from the same
directories.
"""

import math
import pickle

import torch

OVERLORD_WIDTHS = {4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256, 256: 128, 512: 64}


def blur_filter(gain):
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
    kernel = torch.outer(taps, taps)
    return kernel / kernel.sum() * gain


def overlord_generator_layout(code_dim, img_size):
    """(key, shape) of the published OverLORD generator (rosinality's layers, no noise)."""
    layout = [("input.input", (1, 512, 4, 4))]

    def styled(prefix, cin, cout, upsample):
        layout.extend([(f"{prefix}.conv.weight", (1, cout, cin, 3, 3)), (f"{prefix}.conv.modulation.weight", (cin, code_dim)),
                       (f"{prefix}.conv.modulation.bias", (cin,)), (f"{prefix}.activate.bias", (cout,))])
        if upsample:
            layout.append((f"{prefix}.conv.blur.kernel", (4, 4)))

    def to_rgb(prefix, cin, upsample):
        layout.extend([(f"{prefix}.conv.weight", (1, 3, cin, 1, 1)), (f"{prefix}.conv.modulation.weight", (cin, code_dim)),
                       (f"{prefix}.conv.modulation.bias", (cin,)), (f"{prefix}.bias", (1, 3, 1, 1))])
        if upsample:
            layout.append((f"{prefix}.upsample.kernel", (4, 4)))

    styled("conv1", 512, 512, False)
    to_rgb("to_rgb1", 512, False)
    cin = 512
    for level in range(3, int(math.log2(img_size)) + 1):
        cout = OVERLORD_WIDTHS[2**level]
        styled(f"convs.{2 * (level - 3)}", cin, cout, True)
        styled(f"convs.{2 * (level - 3) + 1}", cout, cout, False)
        to_rgb(f"to_rgbs.{level - 3}", cout, True)
        cin = cout
    return layout


def overlord_encoder_layout(img_size, code_dim):
    """(key, shape) of the published OverLORD encoder (StarGAN v2's residual blocks)."""
    layout = [("main.0.weight", (64, 3, 3, 3)), ("main.0.bias", (64,))]
    blocks = int(math.log2(img_size)) - 2
    width = 64
    for index in range(1, blocks + 1):
        out = min(width * 2, 256)
        layout += [(f"main.{index}.conv1.weight", (width, width, 3, 3)), (f"main.{index}.conv1.bias", (width,)),
                   (f"main.{index}.conv2.weight", (out, width, 3, 3)), (f"main.{index}.conv2.bias", (out,))]
        if out != width:
            layout.append((f"main.{index}.conv1x1.weight", (out, width, 1, 1)))
        width = out
    layout += [(f"main.{blocks + 2}.weight", (width, width, 4, 4)), (f"main.{blocks + 2}.bias", (width,)),
               (f"main.{blocks + 4}.weight", (code_dim, width, 1, 1)), (f"main.{blocks + 4}.bias", (code_dim,))]
    return layout


def overlord_discriminator_layout(img_size):
    """(key, shape) of rosinality's StyleGAN2 discriminator (channel_multiplier 2)."""
    top = OVERLORD_WIDTHS[img_size]
    layout = [("convs.0.0.weight", (top, 3, 1, 1)), ("convs.0.1.bias", (top,))]
    level = int(math.log2(img_size))
    for index, current in enumerate(range(level, 2, -1), start=1):
        cin, cout = OVERLORD_WIDTHS[2**current], OVERLORD_WIDTHS[2 ** (current - 1)]
        layout += [(f"convs.{index}.conv1.0.weight", (cin, cin, 3, 3)), (f"convs.{index}.conv1.1.bias", (cin,)),
                   (f"convs.{index}.conv2.0.kernel", (4, 4)), (f"convs.{index}.conv2.1.weight", (cout, cin, 3, 3)),
                   (f"convs.{index}.conv2.2.bias", (cout,)), (f"convs.{index}.skip.0.kernel", (4, 4)),
                   (f"convs.{index}.skip.1.weight", (cout, cin, 1, 1))]
    layout += [("final_conv.0.weight", (512, 513, 3, 3)), ("final_conv.1.bias", (512,)),
               ("final_linear.0.weight", (512, 512 * 16)), ("final_linear.0.bias", (512,)),
               ("final_linear.1.weight", (1, 512)), ("final_linear.1.bias", (1,))]
    return layout


def lord_generator_layout(config):
    height, width, channels = config["img_shape"]
    size = (height >> config["n_adain_layers"]) * (width >> config["n_adain_layers"]) * config["adain_dim"]
    dim = config["adain_dim"]
    layout = []
    for index in range(config["n_adain_layers"]):
        layout += [(f"modulation.adain_per_layer.{index}.weight", (2 * dim, config["class_dim"])),
                   (f"modulation.adain_per_layer.{index}.bias", (2 * dim,))]
    fc = [(config["content_dim"], size // 8), (size // 8, size // 4), (size // 4, size)]
    for index, (fan_in, fan_out) in zip((0, 2, 4), fc):
        layout += [(f"generator.fc_layers.{index}.weight", (fan_out, fan_in)),
                   (f"generator.fc_layers.{index}.bias", (fan_out,))]
    for index in range(config["n_adain_layers"]):
        layout += [(f"generator.adain_conv_layers.{4 * index + 1}.weight", (dim, dim, 3, 3)),
                   (f"generator.adain_conv_layers.{4 * index + 1}.bias", (dim,))]
    layout += [("generator.last_conv_layers.0.weight", (64, dim, 5, 5)), ("generator.last_conv_layers.0.bias", (64,)),
               ("generator.last_conv_layers.2.weight", (channels, 64, 7, 7)),
               ("generator.last_conv_layers.2.bias", (channels,))]
    return layout


def lord_encoder_layout(prefix, config, code_dim):
    channels = config["img_shape"][2]
    convs = [(64, channels, 7), (128, 64, 4), (256, 128, 4), (256, 256, 4), (256, 256, 4)]
    layout = []
    for index, (out, cin, kernel) in zip((0, 2, 4, 6, 8), convs):
        layout += [(f"{prefix}.conv_layers.{index}.weight", (out, cin, kernel, kernel)),
                   (f"{prefix}.conv_layers.{index}.bias", (out,))]
    for index, (out, cin) in zip((0, 2, 4), [(256, 4096), (256, 256), (code_dim, 256)]):
        layout += [(f"{prefix}.fc_layers.{index}.weight", (out, cin)), (f"{prefix}.fc_layers.{index}.bias", (out,))]
    return layout


def draw(layout, seed):
    """Values for a layout: unit-variance equalized weights, fan-in-scaled plain weights, small biases,
    the exact blur filters, embeddings uniform in +-0.05."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in sorted(layout):
        noise = torch.randn(shape, generator=generator)
        if key.endswith(".kernel"):
            value = blur_filter(1.0 if key.startswith("discriminator") else 4.0)
        elif "embedding" in key:
            value = (torch.rand(shape, generator=generator) - 0.5) * 0.1
        elif key.endswith("modulation.bias"):
            value = 1.0 + 0.2 * noise
        elif key.endswith("to_rgb1.bias"):
            value = 0.5 + 0.05 * noise
        elif ".to_rgb" in key and key.endswith("conv.weight"):
            value = 0.15 * noise
        elif key.endswith("bias"):
            value = 0.1 * noise
        elif ("encoder" in key or key.startswith(("generator.fc", "generator.adain", "generator.last", "modulation"))):
            value = noise / math.sqrt(math.prod(shape[1:]))
        else:
            value = noise
        state[key] = value
    return state


def prefixed(prefix, layout, data_parallel):
    middle = ".module." if data_parallel else "."
    return [(f"{prefix}{middle}{key}", shape) for key, shape in layout]


def overlord_config(img_size=32, correlation=None, n_labels=3, n_imgs=2):
    """An OverLORD config.pkl dict as the published `train` writes it (yaml values plus the data's)."""
    config = {
        "labeled_attribute": "domain", "correlation": correlation, "label_dim": 16, "uncorrelated_dim": 12,
        "uncorrelated_std": 0.1,
        "disentanglement": {"batch_size": 8, "n_epochs": 200, "n_epochs_between_visualizations": 1,
                            "learning_rate": {"latent": 0.01, "generator": 0.001, "min": 1e-05},
                            "loss_weights": {"reconstruction": 1, "uncorrelated_decay": 0.1}},
        "amortization": {"batch_size": 64, "n_epochs": 100, "n_epochs_between_visualizations": 5,
                         "learning_rate": {"max": 0.0001, "min": 1e-05}},
        "synthesis": {"batch_size": 16, "n_epochs": 100, "n_epochs_between_visualizations": 1,
                      "learning_rate": {"generator": 0.0001, "discriminator": 0.0001},
                      "loss_weights": {"reconstruction": 1, "latent": 10, "adversarial": 1}},
        "perceptual_loss": {"layers": [2, 7, 12, 21, 30], "normalize": False},
        "img_shape": (img_size, img_size, 3), "n_imgs": n_imgs, "n_labels": n_labels,
    }
    if correlation is not None:
        config["correlated_dim"] = 8
        config["correlation_augmentation"] = {"scale": [0.8, 1.0], "rotation": 0, "flip_horizontal": True}
        config["disentanglement"]["learning_rate"]["encoder"] = 0.0001
    return config


def overlord_states(config, seed):
    """(latent.pth, amortized.pth) state dicts of the published OverLORD for `config`."""
    size = config["img_shape"][0]
    code_dim = config["label_dim"] + config["uncorrelated_dim"] + (config.get("correlated_dim") or 0)
    latent = prefixed("generator", overlord_generator_layout(code_dim, size), True)
    latent += [("label_embedding.module.weight", (config["n_labels"], config["label_dim"])),
               ("uncorrelated_embedding.module.weight", (config["n_imgs"], config["uncorrelated_dim"]))]
    amortized = prefixed("generator", overlord_generator_layout(code_dim, size), True)
    amortized += prefixed("discriminator", overlord_discriminator_layout(size), True)
    amortized += prefixed("label_encoder", overlord_encoder_layout(size, config["label_dim"]), True)
    amortized += prefixed("uncorrelated_encoder", overlord_encoder_layout(size, config["uncorrelated_dim"]), True)
    if config["correlation"] is not None:
        encoder = overlord_encoder_layout(size, config["correlated_dim"])
        latent += prefixed("correlated_encoder", encoder, True)
        amortized += prefixed("correlated_encoder", encoder, True)
    return draw(latent, seed), draw(amortized, seed + 1)


def lord_pytorch_config(n_classes=4, n_imgs=12):
    """A lord-pytorch config.pkl dict as its `train` writes it (data values plus base_config), small."""
    return {
        "img_shape": (64, 64, 3), "n_imgs": n_imgs, "n_classes": n_classes,
        "content_dim": 16, "class_dim": 12, "content_std": 1, "content_decay": 1e-4, "n_adain_layers": 4,
        "adain_dim": 32, "perceptual_loss": {"layers": [2, 7, 12, 21, 30]},
        "train": {"batch_size": 128, "n_epochs": 200, "learning_rate": {"generator": 3e-4, "latent": 3e-3, "min": 1e-5}},
        "train_encoders": {"batch_size": 128, "n_epochs": 200, "learning_rate": {"max": 1e-4, "min": 1e-5}},
    }


def lord_pytorch_states(config, seed, data_parallel=False):
    """(latent.pth, amortized.pth) state dicts of lord-pytorch for `config`."""
    generator = lord_generator_layout(config)
    latent = generator + [("content_embedding.embedding.weight", (config["n_imgs"], config["content_dim"])),
                          ("class_embedding.weight", (config["n_classes"], config["class_dim"]))]
    amortized = generator + lord_encoder_layout("content_encoder", config, config["content_dim"])
    amortized += lord_encoder_layout("class_encoder", config, config["class_dim"])
    states = draw(latent, seed), draw(amortized, seed + 1)
    if data_parallel:
        states = tuple({f"module.{key}": value for key, value in state.items()} for state in states)
    return states


def write_original_dir(directory, config, latent, amortized=None):
    """config.pkl, latent.pth and amortized.pth as the published `save` writes them."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "config.pkl", "wb") as file:
        pickle.dump(config, file)
    torch.save(latent, directory / "latent.pth")
    if amortized is not None:
        torch.save(amortized, directory / "amortized.pth")
    return directory
